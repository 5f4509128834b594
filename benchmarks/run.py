"""All benchmarks in one run: refnets against PyTorch CPU, the two measured in the same process.

    python benchmarks/run.py [--quick] [--json FILE] [--readme README.md] [--only conv kohler_step ...]
                             [--in-process]

Every record is {name, dtype, refnets_s, torch_s, ratio} with ratio = torch time / refnets time
(> 1 means refnets is faster); medians of repeated runs on both threads. The machine is small
and noisy: read the ratios, not the seconds.

Each suite runs in a fresh Python process (``benchmarks/<suite>.py --json``), as a user would run
it: what one suite leaves behind (a minute of torch.func's multi-GB Jacobians, the allocator's
state, idle threads) would otherwise tilt the next one's timings, for either library (the Du
ResNet GD step read 0.99× after the NTK suite, 1.09–1.14× on its own). ``--in-process`` runs them
all in this process instead.
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import refnets  # noqa: F401,E402  (before any suite imports numpy: it sets OpenBLAS's idle spin)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import markdown_table, splice_readme, table  # noqa: E402

SUITES = ["conv", "ntk", "train_step", "kohler_step", "startup"]
HERE = Path(__file__).resolve().parent


def run_suite(name, quick=False, where=HERE) -> list[dict]:
    """The records of ``where/<name>.py --json`` run in a new Python process (its table is not shown)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "records.json"
        cmd = [sys.executable, str(Path(where) / f"{name}.py"), "--json", str(out)] + (["--quick"] if quick else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--json", help="write the records here")
    ap.add_argument("--only", nargs="+", choices=SUITES, help="run only these suites")
    ap.add_argument("--readme", help="write the table, with the targets, into this README's Performance section")
    ap.add_argument("--in-process", action="store_true", help="run every suite in this process, not one process each")
    a = ap.parse_args(argv)
    records = []
    for name in a.only or SUITES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            print(f"skipping {name}: {e}", file=sys.stderr)
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        records += mod.run(quick=a.quick) if a.in_process else run_suite(name, a.quick)
    print(table(records))
    if a.json:
        Path(a.json).write_text(json.dumps(records, indent=1))
    if a.readme:
        splice_readme(a.readme, markdown_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
