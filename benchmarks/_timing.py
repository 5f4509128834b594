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
from pathlib import Path

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


def alternating_medians(f_ref, f_torch, repeats: int, min_time: float = 0.0, warm_torch: bool = True,
                        lead_in: bool = True):
    """(median refnets seconds, median torch seconds, all refnets, all torch) per call.

    The two calls alternate. With ``min_time`` > 0 each repeat runs a call enough times to last
    about that long (short calls are timed in batches); with 0 each repeat is one call. Both are
    called once first (Numba compilation, allocators) unless ``warm_torch`` is False (a torch call
    that takes minutes).

    ``lead_in`` (single calls only): each timed call follows an untimed call of the same library,
    as in a training loop, step after step. Without it every timed call follows the other library's,
    and inherits its idle threads: PyTorch's OpenMP workers spin for a few ms after its ops and take
    a core from the OpenBLAS products that follow (a Du ResNet GD step of refnets: 85 ms after its
    own step, 89–91 ms after PyTorch's; PyTorch's is not slowed by refnets').
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
            if lead_in and n == 1:
                f()
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


# (name prefix, dtype or None, kind, bound) — the performance issue's targets. kind "ratio≥": the record's
# ratio must reach the bound; "ratio≤": stay below it; "s≤": refnets seconds at most the bound.
TARGETS = [
    ("conv fwd+bwd N256 G128", "float64", "ratio≥", 3.0),
    ("conv fwd+bwd", "float64", "ratio≥", 1.0),
    ("conv fwd+bwd", "float32", "ratio≥", 0.5),
    ("conv GEMM fraction", None, "ratio≥", 0.5),
    ("empirical NTK", None, "ratio≥", 5.0),
    ("NTK peak memory", None, "ratio≤", 2.0),
    ("GD step Du ResNet", None, "ratio≥", 1.0),
    ("kohler GD step", None, "ratio≥", 2.0),
    ("startup cold", None, "s≤", 15.0),
    ("startup warm", None, "s≤", 1.0),
]


def target(record):
    """(text, met) of the first target that applies to the record, or (None, None)."""
    for prefix, dtype, kind, bound in TARGETS:
        if record["name"].startswith(prefix) and dtype in (None, record["dtype"]):
            if kind == "s≤":
                return f"≤ {bound:g} s", record["refnets_s"] <= bound
            value = record.get("ratio")
            if value is None:
                return None, None
            return (f"≥ {bound:g}", value >= bound) if kind == "ratio≥" else (f"≤ {bound:g}", value <= bound)
    return None, None


def markdown_table(records) -> str:
    """The records as a Markdown table with each target and whether it is met (the README's table)."""
    def fmt(s):
        return "–" if s is None else (f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.2f} ms")
    def gf(r):
        a, b = r.get("gflops"), r.get("torch_gflops")
        return "–" if a is None else (f"{a:.0f}" if b is None else f"{a:.0f} / {b:.0f}")
    lines = ["| benchmark | dtype | refnets | PyTorch | ratio | target | met | GFLOP/s (refnets / PyTorch) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        text, met = target(r)
        ratio = "–" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['name']} | {r['dtype']} | {fmt(r['refnets_s'])} | {fmt(r.get('torch_s'))} | {ratio} | "
                     f"{text or '–'} | {'–' if met is None else ('yes' if met else '**no**')} | {gf(r)} |")
    return "\n".join(lines)


def splice_readme(path, text, begin="<!-- performance-table -->", end="<!-- /performance-table -->") -> None:
    """Replace what stands between the two markers of ``path`` (or after ``begin``, if ``end`` is missing)."""
    path = Path(path)
    src = path.read_text(encoding="utf-8")
    if begin not in src:
        raise ValueError(f"{path}: no {begin} marker")
    head, rest = src.split(begin, 1)
    tail = rest.split(end, 1)[1] if end in rest else "\n"
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}", encoding="utf-8")
