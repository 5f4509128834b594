"""Command line: ``python -m gradcheck`` (also ``refnets gradcheck``).

    python -m gradcheck [--layers NAME ...] [--seed S] [--step H] [--fast] [--entries K] [--list]

Checks every registered layer/config (or those named: exact name, base name such as ``Conv2d``
for all its configs, or an fnmatch pattern such as ``'MaxPool*'``) and prints one row per
(layer/config, tensor): the largest relative error over the smooth entries, where it is, the
numerical and analytic values there, and PASS / FAIL / KINK. Per config it adds one row for
the forward-mode (jvp) checks, one for the dot-product identity ⟨Ju, v⟩ = ⟨u, Jᵀv⟩ and one
for the protocol checks (reentrant, intact, linear, overwrite); ``--verbose`` prints every
row separately, with notes. Exit status: 0 if nothing FAILs (KINK is not a failure), 1 if
anything FAILs, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

from . import core, registry

PROTOCOL = ("reentrant", "intact", "linear", "overwrite", "error")


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m gradcheck",
        description="Central finite-difference checks (float64) of every refnets layer, loss and "
                    "penalty: gradients wrt input and parameters, jvp, and the backward protocol. "
                    "Max ties and ReLU kinks are reported as KINK (and the input redrawn), not FAIL.")
    p.add_argument("--layers", nargs="+", metavar="NAME",
                   help="entries to check: names, base names (all configs) or fnmatch patterns")
    p.add_argument("--seed", type=int, default=0, help="seed of the random configurations and points (default 0)")
    p.add_argument("--step", type=float, default=core.DEFAULT_STEP,
                   help=f"h relative to max(1, rms of the tensor) (default {core.DEFAULT_STEP:g})")
    p.add_argument("--tol", type=float, default=core.PASS_TOL,
                   help=f"PASS threshold on the relative error of smooth entries (default {core.PASS_TOL:g})")
    p.add_argument("--fast", action="store_true",
                   help="random directions u, v: v^T(J_num u) vs (v^T J)u instead of every entry")
    p.add_argument("--directions", type=int, default=3, metavar="K",
                   help="directions per tensor with --fast (default 3)")
    p.add_argument("--entries", type=int, default=None, metavar="K",
                   help="check K random entries per tensor instead of all (full mode)")
    p.add_argument("--max-redraws", type=int, default=3, metavar="R",
                   help="new random points to try after a KINK (default 3)")
    p.add_argument("--no-jvp", action="store_true", help="skip the forward-mode checks")
    p.add_argument("--list", action="store_true", help="list the registered entries and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="every check as its own row, with notes")
    return p


def _fmt(v, spec=".3e"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _merge(name, label, rows):
    """One row standing for several: worst status; the worst row's numbers; failed checks in the note."""
    worst = max(rows, key=lambda r: (core._ORDER[r.status], -1 if math.isnan(r.max_rel) else r.max_rel))
    bad = [f"{r.label}: {r.note}" if r.note else r.label for r in rows if r.status not in (core.PASS, core.SKIP)]
    skip = [r for r in rows if r.status == core.SKIP]
    note = "; ".join(bad) if bad else (skip[0].note if skip and len(skip) == len(rows) else "")
    status = worst.status if not (skip and len(skip) == len(rows)) else core.SKIP
    idx = f"{worst.tensor}:{worst.index}" if worst.tensor and worst.index else worst.index
    return core.Row(name, label, "summary", status, worst.max_rel, idx, worst.numerical, worst.analytic, note)


def condense(result) -> list:
    """The rows printed without --verbose: gradient rows as they are, then jvp, dot, protocol."""
    rows = [r for r in result.rows if r.check == "grad"]
    for label, checks in (("(jvp)", ("jvp",)), ("(dot)", ("dot",)), ("(protocol)", PROTOCOL)):
        group = [r for r in result.rows if r.check in checks or (label == "(jvp)" and r.status == core.SKIP
                                                                  and r.check == "jvp")]
        if label == "(dot)":
            group = [r for r in group if r.status != core.SKIP]
        if group:
            rows.append(_merge(result.name, label, group))
    return rows


def format_table(rows, verbose=False) -> str:
    head = ("layer/config", "tensor", "max rel err", "worst index", "numerical", "analytic", "status")
    body = [(r.name, r.label if r.check != "summary" else r.tensor, _fmt(r.max_rel), r.index or "-",
             _fmt(r.numerical, ".6g"), _fmt(r.analytic, ".6g"), r.status) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    right = {2, 4, 5}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(head), line(["-" * w for w in widths])]
    for r, b in zip(rows, body):
        out.append(line(b))
        if r.note and (verbose or r.status not in (core.PASS,)):
            out.append(" " * 4 + "note: " + r.note)
    return "\n".join(out)


def _list() -> int:
    entries = list(registry.REGISTRY.values())
    w = max(len(e.name) for e in entries)
    print(f"{'name':<{w}}  {'kind':<7}  {'class':<14}  available")
    for e in entries:
        missing = e.missing()
        avail = "yes" if not missing else "no (missing " + ", ".join(missing) + ")"
        print(f"{e.name:<{w}}  {e.kind:<7}  {e.cls or '-':<14}  {avail}"
              + (f"  {e.description}" if e.description else ""))
    covered = registry.covered_classes()
    uncovered = sorted(set(registry.public_layer_classes()) - set(covered))
    print(f"\n{len(entries)} entries ({sum(e.available for e in entries)} available); "
          f"public Layer classes without an entry: {', '.join(uncovered) if uncovered else 'none'}")
    return 0


def main(argv=None) -> int:
    """Run the checks; returns the exit status (0 all PASS/KINK, 1 any FAIL, 2 usage error)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and on errors; report its code instead
        return int(e.code or 0)
    if args.list:
        return _list()
    if (not (math.isfinite(args.step) and args.step > 0) or not (math.isfinite(args.tol) and args.tol > 0)
            or (args.entries is not None and args.entries < 1) or args.directions < 1 or args.max_redraws < 0):
        print("python -m gradcheck: --step and --tol must be positive and finite, --entries and --directions "
              ">= 1, --max-redraws >= 0", file=sys.stderr)
        return 2
    try:
        entries = registry.select(args.layers)
    except KeyError as e:
        print(f"python -m gradcheck: {e.args[0]}", file=sys.stderr)
        return 2
    unavailable = [e.name for e in registry.select(args.layers, available_only=False) if not e.available]
    t0 = time.perf_counter()
    results = registry.run(selected=entries, seed=args.seed, step=args.step,
                           tol=args.tol, fast=args.fast, entries=args.entries, directions=args.directions,
                           jvp=not args.no_jvp, max_redraws=args.max_redraws)
    seconds = time.perf_counter() - t0
    rows = [r for res in results for r in (res.rows if args.verbose else condense(res))]
    print(format_table(rows, verbose=args.verbose))

    counts = {s: sum(r.status == s for r in rows) for s in (core.PASS, core.FAIL, core.KINK, core.SKIP)}
    redrawn = [f"{res.name} ({res.attempts - 1}x)" for res in results if res.attempts > 1]
    mode = f"fast ({args.directions} directions/tensor)" if args.fast else (
        f"full ({args.entries} entries/tensor)" if args.entries else "full (every entry)")
    print(f"\ngradcheck: {len(results)} layers/configs, {len(rows)} rows, mode {mode}, seed {args.seed}, "
          f"step {args.step:g}, tol {args.tol:g}, {seconds:.1f} s")
    print("  " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if redrawn:
        print("  redrawn after KINK: " + ", ".join(redrawn))
    kinked = [res.name for res in results if res.status == core.KINK]
    if kinked:
        print("  still KINK after the last redraw (not a failure): " + ", ".join(kinked))
    if unavailable:
        print("  not available yet (skipped): " + ", ".join(unavailable))
    failed = [res for res in results if not res.ok]
    if failed:
        print("FAIL: " + "; ".join(f"{res.name} [{', '.join(r.label for r in res.failures())}]" for res in failed))
        return 1
    print("OK: no FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
