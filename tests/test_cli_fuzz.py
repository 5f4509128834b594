"""Fuzzing the command line (issue 9): invalid arguments give a usage error, exit code 2, no traceback.

Hypothesis draws argv lists from the commands, options and values ``refnets`` knows and from
wrong ones (unknown options and names, non-numbers, negative or zero counts, NaN steps, a file
given as the output folder), and calls :func:`refnets.cli.main` in-process. The expensive parts
are replaced by recorders (running experiments, the gradient checks, contacting a Dask scheduler),
so every draw exercises only the argument handling. Each draw must return 0 (a valid command) or 2
(a usage error with a message on stderr), or exit 0 for ``--help``; never raise, never print a
traceback. A few cases also run as a real subprocess.
"""
import contextlib
import io
import subprocess
import sys
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from refnets import cli

EXPERIMENTS = ["allenzhu2019.semismooth", "allenzhu2019.radius", "allenzhu2019.semismoth", "nope", "du2019"]
PAPERS = ["allenzhu2019", "all", "du2019", "du2020", "ALL"]
NUMBERS = ["0", "1", "2", "-1", "3", "10000000000000000000000", "1.5", "nan", "inf", "-inf", "1e-6", "0x10", "abc", ""]
OPTIONS = ["--quick", "--full", "--seed", "--out", "--jobs", "--dask", "--fresh", "-q", "--quiet", "--bogus", "-x",
           "--", "--see", "--jo"]
GRADCHECK = ["--layers", "--seed", "--step", "--tol", "--fast", "--directions", "--entries", "--max-redraws",
             "--no-jvp", "--list", "-v", "--verbose", "--bogus"]
LAYERS = ["Dense", "Conv2d", "MaxPool*", "NoSuchLayer", "[", "*"]
WEIRD = ["λ", "a b", "-", "--=", "=1", "\t", "--seed=abc", "--jobs=0", "--seed=-5", "run", "list"]
HELP = ["--help", "-h"]


class Recorder:
    """Stands in for the expensive calls; remembers what the command line asked for."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.calls = []

    def run_experiments(self, names, out, quick=True, seed=0, jobs=1, quiet=False, dask=None, fresh=False):
        self.calls.append(dict(names=list(names), out=out, quick=quick, seed=seed, jobs=jobs, dask=dask))
        from refnets import experiments
        cli._resolve(names, experiments.load_all())  # unknown names are the real usage error
        return [], (self.tmp / "report.md", self.tmp / "report.html")

    def check_dask(self, address, timeout=10):
        if "://" not in address and ":" not in address:
            return REAL_CHECK_DASK(address, timeout)  # refused before any connection is tried
        raise cli.UsageError(f"cannot reach a Dask scheduler at {address!r}: (not contacted in tests)")


REAL_CHECK_DASK = cli.check_dask


def call(argv, rec):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(cli, "run_experiments", rec.run_experiments))
        stack.enter_context(mock.patch.object(cli, "check_dask", rec.check_dask))
        stack.enter_context(mock.patch("gradcheck.registry.run", lambda **kw: []))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            code = cli.main(argv)
            exited = False
        except SystemExit as e:  # argparse's --help
            code, exited = e.code, True
    return code, exited, out.getvalue(), err.getvalue()


def argv_strategy(tmp):
    afile = str(Path(tmp) / "a_file")
    folder = str(Path(tmp) / "out")
    value = st.sampled_from(EXPERIMENTS + PAPERS + NUMBERS + LAYERS + WEIRD + [afile, folder, "tcp://127.0.0.1:1",
                                                                              "nohost"])
    token = st.one_of(value, st.sampled_from(OPTIONS + GRADCHECK), st.text(max_size=6))
    command = st.sampled_from(["run", "reproduce", "list", "gradcheck", "frobnicate", "", "-q", "--seed"])
    option = st.one_of(
        st.sampled_from([["--quick"], ["--full"], ["-q"], ["--fresh"], ["--quiet"]]),
        st.tuples(st.just("--seed"), st.sampled_from(["0", "3", "-1", "x", "1e3"])).map(list),
        st.tuples(st.just("--jobs"), st.sampled_from(["1", "2", "0", "-2"])).map(list),
        st.tuples(st.just("--out"), st.sampled_from([folder, afile])).map(list),
        st.tuples(st.just("--dask"), st.sampled_from(["nohost", "tcp://127.0.0.1:1"])).map(list),
    )
    nearly_valid = st.builds(lambda c, n, opts: [c, n] + [t for o in opts for t in o],
                             st.sampled_from(["run", "reproduce"]), st.sampled_from(EXPERIMENTS + PAPERS),
                             st.lists(option, max_size=4))
    return st.one_of(
        nearly_valid,  # a command and its options, some of them wrong
        st.builds(lambda c, rest: [c] + rest, command, st.lists(token, max_size=6)),  # anything after a command
        st.lists(st.one_of(token, st.sampled_from(HELP)), max_size=4),  # anything, --help included
    )


TMP = Path(__import__("tempfile").mkdtemp(prefix="refnets_cli_fuzz_"))
(TMP / "a_file").write_text("not a folder")


@settings(max_examples=500, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(argv=argv_strategy(TMP))
def test_fuzz_argv_gives_exit_0_or_a_usage_error_never_a_traceback(argv):
    rec = Recorder(TMP)
    code, exited, out, err = call(argv, rec)
    event(f"exit {code}{' (help)' if exited else ''}")
    assert "Traceback" not in out + err
    if exited:
        assert code == 0 and any(h in argv for h in HELP) and "usage:" in out
        return
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert err.strip() or "usage:" in out, f"exit 2 without a message: {argv}"
        assert "error" in err or "usage" in (err + out).lower()
    if argv[:1] != ["gradcheck"] and "--bogus" in argv and "--" not in argv and not any(h in argv for h in HELP):
        assert code == 2, f"unknown option accepted: {argv}"
    for c in rec.calls:  # what reached the runner is valid
        assert c["seed"] >= 0 and c["jobs"] >= 1 and not Path(c["out"]).is_file()
        assert c["names"]
    if code == 0 and argv[:1] in (["run"], ["reproduce"]):
        assert rec.calls, f"exit 0 but nothing was run: {argv}"


def test_specific_invalid_arguments_are_usage_errors():
    rec = Recorder(TMP)
    cases = {
        ("run", "allenzhu2019.semismooth", "--seed", "-1"): "--seed must be a nonnegative integer",
        ("run", "allenzhu2019.semismooth", "--out", str(TMP / "a_file")): "is a file, not a folder",
        ("run", "allenzhu2019.semismooth", "--jobs", "-3"): "--jobs must be a positive integer",
        ("run",): "the following arguments are required",
        ("reproduce", "du2020"): "unknown paper 'du2020'",
        ("run", "allenzhu2019.semismooth", "--dask", "nohost"): "--dask expects a scheduler address",
        ("gradcheck", "--step", "nan"): "--step and --tol must be positive and finite",
        ("gradcheck", "--tol", "inf"): "--step and --tol must be positive and finite",
        ("gradcheck", "--max-redraws", "-1"): "--max-redraws >= 0",
        ("gradcheck", "--layers", "NoSuchLayer"): "NoSuchLayer",
        ("gradcheck", "--directions", "x"): "invalid int value",
    }
    for argv, message in cases.items():
        code, exited, out, err = call(list(argv), rec)
        assert (code, exited) == (2, False), (argv, code, err)
        assert message in err and "Traceback" not in err, (argv, err)
    assert rec.calls == []


def test_valid_arguments_reach_the_runner():
    rec = Recorder(TMP)
    code, _, out, err = call(["run", "allenzhu2019.semismooth", "--seed", "7", "--jobs", "2", "-q",
                              "--out", str(TMP / "out")], rec)
    assert code == 0, err
    assert rec.calls == [dict(names=["allenzhu2019.semismooth"], out=str(TMP / "out"), quick=True, seed=7, jobs=2,
                              dask=None)]


def test_usage_errors_in_a_real_process():
    for argv, code in ((["run"], 2), (["run", "x", "--seed", "-1"], 2), (["gradcheck", "--step", "nan"], 2),
                       (["--bogus"], 2), ([], 2), (["--help"], 0)):
        p = subprocess.run([sys.executable, "-m", "refnets", *argv], capture_output=True, text=True, timeout=120)
        assert p.returncode == code, (argv, p.returncode, p.stderr)
        assert "Traceback" not in p.stderr + p.stdout, (argv, p.stderr)
        assert (p.stderr + p.stdout).strip(), argv  # a message (no command at all: the help)
