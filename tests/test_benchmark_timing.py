"""The benchmarks' shared timing helpers (benchmarks/_timing.py) and the suites' common interface.

No timing is asserted here (the machine is noisy; benchmarks print ratios, tests never time):
only that the helpers count, alternate and report what they say."""
import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
import _timing  # noqa: E402


def test_alternating_medians_alternates_warms_up_and_counts_repeats():
    calls = []
    r, t, tr, tt = _timing.alternating_medians(lambda: calls.append("r"), lambda: calls.append("t"), 4)
    assert calls == ["r", "t"] + ["r", "t"] * 4           # one warm-up each, then strictly alternating
    assert len(tr) == len(tt) == 4 and r >= 0 and t >= 0


def test_alternating_medians_can_skip_the_torch_warm_up_and_batch_short_calls():
    calls = []
    _timing.alternating_medians(lambda: calls.append("r"), lambda: calls.append("t"), 2, warm_torch=False)
    assert calls == ["r"] + ["r", "t"] * 2                 # no warm-up call of the slow side
    n = []
    _timing.alternating_medians(lambda: n.append(1), lambda: None, 3, min_time=1e-3)
    assert len(n) > 1 + 3                                  # a fast call is repeated within each timing


def test_table_marks_records_without_a_torch_time():
    text = _timing.table([{"name": "a", "dtype": "float64", "refnets_s": 0.5, "torch_s": 1.0, "ratio": 2.0},
                          {"name": "b", "dtype": "float64", "refnets_s": 0.1, "torch_s": None, "ratio": None}])
    rows = text.splitlines()
    assert "2.00" in rows[1] and "500.00ms" in rows[1]
    assert rows[2].split()[-2:] == ["-", "-"]


def test_cli_writes_the_records_as_json(tmp_path, capsys):
    recs = [{"name": "x", "dtype": "float64", "refnets_s": 1.0, "torch_s": 2.0, "ratio": 2.0}]
    seen = {}

    def run(quick=False):
        seen["quick"] = quick
        return recs
    assert _timing.cli(run, "d", ["--quick", "--json", str(tmp_path / "r.json")]) == 0
    assert seen["quick"] is True and json.loads((tmp_path / "r.json").read_text()) == recs
    assert "x" in capsys.readouterr().out


@pytest.mark.parametrize("suite", ["conv", "ntk", "train_step", "kohler_step", "startup"])
def test_every_suite_run_py_lists_has_a_run_function(suite):
    run_py = (BENCH / "run.py").read_text()
    assert f'"{suite}"' in run_py
    assert callable(importlib.import_module(suite).run)
