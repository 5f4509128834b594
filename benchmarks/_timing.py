"""What every benchmark shares: thread settings, medians of alternating calls, the table and the CLI.

The machine is small and noisy, so a benchmark never trusts one timing: refnets and PyTorch calls
alternate (both see the same background load), each is repeated, and the medians are compared.
Records are dicts ``{name, dtype, refnets_s, torch_s, ratio}`` with ratio = torch time / refnets
time (> 1: refnets is faster); a suite may add keys.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

THREADS = 2


def set_threads(threads: int = THREADS) -> None:
    """Both libraries (and numpy's BLAS, when threadpoolctl is there) on the same number of threads."""
    import numba
    import torch
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:
        pass


def median_time(f, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of f()."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def alternating_medians(f_ref, f_torch, repeats: int, min_time: float = 0.0, warm_torch: bool = True):
    """(median refnets seconds, median torch seconds, all refnets, all torch) per call.

    The two calls alternate. With ``min_time`` > 0 each repeat runs a call enough times to last
    about that long (short calls are timed in batches); with 0 each repeat is one call. Both are
    called once first (Numba compilation, allocators) unless ``warm_torch`` is False (a torch call
    that takes minutes).
    """
    f_ref()
    if warm_torch:
        f_torch()

    def calls_for(f):
        if min_time <= 0:
            return 1
        t0 = time.perf_counter()
        f()
        return max(1, int(min_time / max(time.perf_counter() - t0, 1e-9)))

    n_ref, n_torch = calls_for(f_ref), calls_for(f_torch) if warm_torch else 1
    tr, tt = [], []
    for _ in range(repeats):
        for f, n, ts in ((f_ref, n_ref, tr), (f_torch, n_torch, tt)):
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            ts.append((time.perf_counter() - t0) / n)
    return statistics.median(tr), statistics.median(tt), tr, tt


def table(records) -> str:
    """The records as a fixed-width table (times in ms; '-' where a record has no torch time)."""
    lines = [f"{'benchmark':<62} {'dtype':>7} {'refnets':>10} {'torch':>10} {'ratio':>7}"]
    for r in records:
        ts = f"{r['torch_s'] * 1e3:8.2f}ms" if r.get("torch_s") else f"{'-':>10}"
        ratio = f"{r['ratio']:7.2f}" if r.get("ratio") is not None else f"{'-':>7}"
        lines.append(f"{r['name'][:62]:<62} {r['dtype']:>7} {r['refnets_s'] * 1e3:8.2f}ms {ts} {ratio}")
    return "\n".join(lines)


def cli(run, description: str, argv=None, show=table) -> int:
    """``[--quick] [--json FILE]``: run the suite, print ``show(records)``, write the records as JSON."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="fewer repeats / smaller sizes")
    ap.add_argument("--json", help="write the records here")
    a = ap.parse_args(argv)
    records = run(quick=a.quick)
    print(show(records))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(records, f, indent=1)
    return 0
