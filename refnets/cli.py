"""The ``refnets`` command line.

    refnets list                          the experiments, with quick/full time estimates
    refnets run NAME… [--quick|--full]    run experiments, write figures, numbers and a report
        [--seed S] [--out DIR] [--jobs N] [--dask ADDRESS] [--fresh] [-q]
    refnets reproduce PAPER|all           all experiments of one paper (or of all four)
    refnets gradcheck [ARGS…]             the same as ``python -m gradcheck``

Every run writes into ``--out`` (default ``refnets_out``): one folder per experiment (PNG and
SVG figures, CSV and JSON numbers), ``config.json`` (the exact configuration and package
versions), ``results.json``, ``report.md`` and ``report.html``; each sweep job's result is saved
under ``DIR/<experiment>/jobs/`` so that a rerun skips finished jobs. ``--jobs N`` runs the sweeps'
jobs in N local processes (joblib), ``--dask ADDRESS`` on a Dask cluster; the numbers are
identical. Bad arguments give a one-line error and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import difflib
import sys
import time
from pathlib import Path


class UsageError(Exception):
    """A bad command line: printed as one line, exit code 2, no traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser():
    p = _Parser(prog="refnets", description="Reproduce the papers' figures and check their claims.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("list", help="list the experiments")

    def common(sp):
        mode = sp.add_mutually_exclusive_group()
        mode.add_argument("--quick", dest="quick", action="store_true", default=True,
                          help="fast mode: seconds per experiment (default)")
        mode.add_argument("--full", dest="quick", action="store_false", help="the papers' sizes")
        sp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sp.add_argument("--out", default="refnets_out", help="output folder (default refnets_out)")
        sp.add_argument("--jobs", type=int, default=1,
                        help="worker processes for the experiments' sweeps (joblib; default 1: no extra process)")
        sp.add_argument("--dask", metavar="ADDRESS", default=None,
                        help="run the sweeps on the Dask cluster at ADDRESS (e.g. tcp://127.0.0.1:8786; "
                             "needs the 'dask' extra)")
        sp.add_argument("--fresh", action="store_true",
                        help="recompute sweep jobs already finished in --out (default: a rerun skips them)")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    r = sub.add_parser("run", help="run experiments by name")
    r.add_argument("names", nargs="+", metavar="NAME")
    common(r)
    rp = sub.add_parser("reproduce", help="run all experiments of a paper, or 'all'")
    rp.add_argument("paper", metavar="PAPER")
    common(rp)
    g = sub.add_parser("gradcheck", help="finite-difference gradient checks (python -m gradcheck)", add_help=False)
    g.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _suggest(name, choices):
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.4)
    return f"; did you mean {', '.join(close)}?" if close else f"; choose from {', '.join(sorted(choices))}"


def _resolve(names, registry):
    for n in names:
        if n not in registry:
            raise UsageError(f"unknown experiment {n!r}" + _suggest(n, registry))
    return list(names)


def _fmt(seconds):
    return f"{seconds:5.0f}s" if seconds < 120 else f"{seconds / 60:5.1f}m"


class Progress:
    """One line per experiment on stderr with elapsed time and an ETA from the registered estimates."""

    def __init__(self, names, registry, quick, quiet):
        self.est = [registry[n].quick_seconds if quick else registry[n].full_seconds for n in names]
        self.total, self.quiet, self.t0, self.done = len(names), quiet, time.perf_counter(), 0

    def start(self, name):
        """Announce experiment ``name`` with the ETA of what is left."""
        if not self.quiet:
            left = sum(self.est[self.done:])
            print(f"[{self.done + 1}/{self.total}] {name} … (ETA {_fmt(left).strip()})", file=sys.stderr, flush=True)

    def finish(self, record):
        """Report a finished experiment: its time, its claims, the bar and the elapsed time."""
        self.done += 1
        if not self.quiet:
            held = sum(c["holds"] for c in record["claims"])
            bar = "#" * int(30 * self.done / self.total)
            print(f"    done in {record['seconds']:.1f}s, {held}/{len(record['claims'])} claims hold "
                  f"[{bar:<30}] {self.done}/{self.total}, elapsed {_fmt(time.perf_counter() - self.t0).strip()}",
                  file=sys.stderr, flush=True)


def _sweep_progress(quiet):
    """A ``progress(done, total)`` callback for the sweeps: a line at every tenth of the jobs, with an ETA."""
    if quiet:
        return None
    state = {"shown": -1, "t0": None, "n0": 0}

    def show(done, total):
        if state["t0"] is None:  # the first call counts the jobs a previous run already finished
            state["t0"], state["n0"] = time.perf_counter(), done
        step = max(1, total // 10)
        if done == total or done // step != state["shown"] // step:
            state["shown"] = done
            ran, elapsed = done - state["n0"], time.perf_counter() - state["t0"]
            eta = f", ETA {_fmt(elapsed / ran * (total - done)).strip()}" if 0 < ran and done < total else ""
            resumed = f" ({state['n0']} from a previous run)" if state["n0"] else ""
            print(f"    sweep: {done}/{total} jobs{resumed}{eta}", file=sys.stderr, flush=True)
        if done == total:
            state.update(shown=-1, t0=None, n0=0)
    return show


def check_dask(address, timeout=10):
    """Fail early, as a usage error, when the ``dask`` extra is missing or no scheduler answers at ``address``."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise UsageError("--dask needs dask.distributed: pip install 'refnets[dask]'") from None
    if "://" not in address and ":" not in address:
        raise UsageError(f"--dask expects a scheduler address like tcp://HOST:PORT, got {address!r}")
    try:
        with Client(address, timeout=timeout, set_as_default=False):
            pass
    except (OSError, TimeoutError, ValueError) as e:
        raise UsageError(f"cannot reach a Dask scheduler at {address!r}: {e}") from None


def run_experiments(names, out, quick=True, seed=0, jobs=1, quiet=False, dask=None, fresh=False):
    """Run experiments one after another, write the report, return (records, report paths).

    ``jobs`` and ``dask`` go to each experiment's sweeps (:meth:`refnets.experiments.common.Context.map`):
    the independent jobs inside an experiment are where the time goes.
    """
    from . import experiments
    from .experiments.report import write_config, write_report
    registry = experiments.load_all()
    names = _resolve(names, registry)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, {"experiments": names, "mode": "quick" if quick else "full", "seed": seed, "jobs": jobs,
                       "dask": dask, "fresh": fresh})
    progress = Progress(names, registry, quick, quiet)
    records = []
    for n in names:
        progress.start(n)
        rec = experiments.run(n, out, quick=quick, seed=seed, jobs=jobs, dask=dask, fresh=fresh,
                              progress=_sweep_progress(quiet))
        progress.finish(rec)
        records.append(rec)
    return records, write_report(records, out)


def main(argv=None) -> int:
    """The ``refnets`` console script; returns the exit code (0 ok, 2 usage error, 130 interrupted)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["gradcheck"]:
            from gradcheck.__main__ import main as gc_main
            return int(gc_main(argv[1:]) or 0)
        args = _parser().parse_args(argv)
        if args.command is None:
            _parser().print_help()
            return 2
        if args.command == "list":
            from . import experiments
            reg = experiments.load_all()
            w = max(len(n) for n in reg) if reg else 10
            print(f"{'experiment':<{w}}  {'quick':>6}  {'full':>6}  description")
            for n, e in sorted(reg.items(), key=lambda kv: (kv[1].paper, kv[0])):
                print(f"{n:<{w}}  {_fmt(e.quick_seconds)}  {_fmt(e.full_seconds)}  {e.description}")
            return 0
        if args.jobs < 1:
            raise UsageError(f"--jobs must be a positive integer, got {args.jobs}")
        if args.seed < 0:  # numpy's generators take only nonnegative seeds
            raise UsageError(f"--seed must be a nonnegative integer, got {args.seed}")
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise UsageError(f"--out {args.out!r} is a file, not a folder")
        if args.jobs > 1 and args.dask is None:
            try:
                import joblib  # noqa: F401
            except ImportError:
                raise UsageError("--jobs > 1 needs joblib: pip install 'refnets[parallel]'") from None
        if args.dask is not None:
            check_dask(args.dask)
        from . import experiments
        reg = experiments.load_all()
        if args.command == "reproduce":
            papers = sorted({e.paper for e in reg.values()})
            if args.paper != "all" and args.paper not in papers:
                raise UsageError(f"unknown paper {args.paper!r}" + _suggest(args.paper, papers + ["all"]))
            names = [n for n, e in reg.items() if args.paper == "all" or e.paper == args.paper]
        else:
            names = args.names
        records, (md, html_path) = run_experiments(names, args.out, args.quick, args.seed, args.jobs, args.quiet,
                                                   dask=args.dask, fresh=args.fresh)
        from .experiments.report import summary_counts
        held, total = summary_counts(records)
        print(f"{len(records)} experiments, {held}/{total} claims hold. Open the report: {html_path} (or {md})")
        return 0
    except UsageError as e:
        print(f"refnets: error: {e}", file=sys.stderr)
        print("usage: refnets {list,run,reproduce,gradcheck} ... (refnets --help)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("refnets: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
