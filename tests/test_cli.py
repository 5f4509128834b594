"""The refnets command line: listing, running into a report, usage errors with exit code 2."""
import json
import subprocess
import sys

import numpy as np
import pytest

from refnets import cli
from refnets.experiments import common


@pytest.fixture
def toy_experiment():
    @common.experiment("du2019.toy_for_tests", "du2019", "a toy rate plot", quick_seconds=1, full_seconds=2)
    def toy(ctx):
        x = np.array([10.0, 100.0, 1000.0])
        y = 3.0 * x ** -0.5 * (1 + 0.01 * ctx.rng.standard_normal(3))
        fig, ax = common.new_figure()
        slope = common.plot_rate(ax, x, y, "measured")
        common.reference_slope(ax, x, -0.5, y[0], "m^-1/2")
        common.finish(ax, "width m", "deviation")
        ctx.figure(fig, "rate", "deviation against width")
        ctx.table("rate", [{"m": a, "dev": b} for a, b in zip(x, y)])
        ctx.claim("deviation decays like m^-1/2", f"fitted slope {slope:.3f}", abs(slope + 0.5) < 0.05)
    yield "du2019.toy_for_tests"
    del common.REGISTRY["du2019.toy_for_tests"]


def test_run_writes_figures_numbers_config_and_report(tmp_path, toy_experiment, capsys):
    code = cli.main(["run", toy_experiment, "--quick", "--out", str(tmp_path), "--seed", "3"])
    assert code == 0
    d = tmp_path / toy_experiment
    for f in ["rate.png", "rate.svg", "rate.csv", "rate.json", "summary.json"]:
        assert (d / f).exists(), f
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["config"]["seed"] == 3 and "numpy" in cfg["environment"]
    md = (tmp_path / "report.md").read_text()
    assert "deviation decays like m^-1/2" in md and "| yes |" in md
    html = (tmp_path / "report.html").read_text()
    assert f"src='{toy_experiment}/rate.png'" in html
    out = capsys.readouterr()
    assert "Open the report" in out.out and "report.html" in out.out
    assert "[1/1]" in out.err


def test_same_seed_same_numbers(tmp_path, toy_experiment):
    for sub in ("a", "b"):
        assert cli.main(["run", toy_experiment, "--out", str(tmp_path / sub), "-q"]) == 0
    assert (tmp_path / "a" / toy_experiment / "rate.csv").read_bytes() == \
        (tmp_path / "b" / toy_experiment / "rate.csv").read_bytes()


@pytest.mark.parametrize("argv,message", [
    (["run", "du2019.toy_for_test"], "did you mean du2019.toy_for_tests"),
    (["reproduce", "du2020"], "unknown paper 'du2020'"),
    (["run", "x", "--seed", "abc"], "invalid int value"),
    (["run", "x", "--jobs", "0"], "--jobs must be a positive integer"),
    (["frobnicate"], "invalid choice"),
    (["run", "x", "--quick", "--full"], "not allowed with argument"),
])
def test_usage_errors_exit_2_without_traceback(argv, message, toy_experiment, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_list_and_module_entry_point(toy_experiment, capsys):
    assert cli.main(["list"]) == 0
    assert "du2019.toy_for_tests" in capsys.readouterr().out
    p = subprocess.run([sys.executable, "-m", "refnets", "run", "nope"], capture_output=True, text=True)
    assert p.returncode == 2 and "unknown experiment 'nope'" in p.stderr and "Traceback" not in p.stderr
