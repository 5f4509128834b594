"""The benchmarks' shared timing helpers (benchmarks/_timing.py) and the suites' common interface.

No timing is asserted here (the machine is noisy; benchmarks print ratios, tests never time):
only that the helpers count, alternate and report what they say."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
import _timing  # noqa: E402


def test_alternating_medians_alternates_warms_up_and_counts_repeats():
    calls = []
    r, t, tr, tt = _timing.alternating_medians(lambda: calls.append("r"), lambda: calls.append("t"), 4)
    # one warm-up each, then alternating, each timed call led in by an untimed one of the same library
    assert calls == ["r", "t"] + ["r", "r", "t", "t"] * 4
    assert len(tr) == len(tt) == 4 and r >= 0 and t >= 0
    calls.clear()
    _timing.alternating_medians(lambda: calls.append("r"), lambda: calls.append("t"), 3, lead_in=False)
    assert calls == ["r", "t"] + ["r", "t"] * 3           # strictly alternating


def test_alternating_medians_can_skip_the_torch_warm_up_and_batch_short_calls():
    calls = []
    _timing.alternating_medians(lambda: calls.append("r"), lambda: calls.append("t"), 2, warm_torch=False,
                                lead_in=False)
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


def test_targets_follow_the_performance_issue():
    rec = lambda name, dtype="float64", ratio=None, s=0.1: {"name": name, "dtype": dtype, "refnets_s": s,
                                                             "torch_s": None, "ratio": ratio}
    assert _timing.target(rec("conv fwd+bwd N256 G128 1->4 16x16 k3 (Kohler K_n)", ratio=2.9)) == ("≥ 3", False)
    assert _timing.target(rec("conv fwd+bwd N32 C16->32 32x32 k3", ratio=1.1)) == ("≥ 1", True)
    assert _timing.target(rec("conv fwd+bwd N32 C16->32 32x32 k3", "float32", ratio=0.4)) == ("≥ 0.5", False)
    assert _timing.target(rec("NTK peak memory / (x + θ + n×n) Du ResNet", ratio=1.5)) == ("≤ 2", True)
    assert _timing.target(rec("startup warm (Numba cache filled)", s=1.2)) == ("≤ 1 s", False)
    assert _timing.target(rec("float64 GEMM rate: numpy 2048^2 matmul")) == (None, None)


def test_markdown_table_is_spliced_between_the_readme_markers(tmp_path):
    recs = [{"name": "kohler GD step", "dtype": "float64", "refnets_s": 2.0, "torch_s": 5.0, "ratio": 2.5},
            {"name": "startup warm", "dtype": "float64", "refnets_s": 0.5, "torch_s": None, "ratio": None}]
    md = _timing.markdown_table(recs)
    assert "| kohler GD step | float64 | 2.00 s | 5.00 s | 2.50 | ≥ 2 | yes | – |" in md
    assert "| startup warm | float64 | 500.00 ms | – | – | ≤ 1 s | yes | – |" in md
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Performance\n\n<!-- performance-table -->\nold\n<!-- /performance-table -->\n\n## Next\n")
    _timing.splice_readme(readme, md)
    _timing.splice_readme(readme, md)                   # idempotent: regenerating replaces, never appends
    text = readme.read_text()
    assert text.count("kohler GD step") == 1 and "old" not in text and text.endswith("## Next\n")
    with pytest.raises(ValueError, match="marker"):
        _timing.splice_readme(tmp_path / "README.md", md, begin="<!-- nothing -->")


def test_run_suite_runs_a_suite_in_its_own_process(tmp_path):
    """run.py's run_suite: a new interpreter runs <suite>.py --json FILE [--quick]; the records come back."""
    import os
    import run
    (tmp_path / "fake.py").write_text(
        "import json, os, sys\n"
        "recs = [{'name': 'pid', 'dtype': 'float64', 'refnets_s': float(os.getpid()), 'torch_s': None,\n"
        "         'ratio': None, 'quick': '--quick' in sys.argv}]\n"
        "json.dump(recs, open(sys.argv[sys.argv.index('--json') + 1], 'w'))\n")
    recs = run.run_suite("fake", quick=True, where=tmp_path)
    assert recs[0]["quick"] is True and recs[0]["refnets_s"] != float(os.getpid())
    (tmp_path / "broken.py").write_text("raise SystemExit(3)\n")
    with pytest.raises(subprocess.CalledProcessError):
        run.run_suite("broken", where=tmp_path)


@pytest.mark.parametrize("cache_bytes", [0, 1 << 30])
def test_torch_ntk_baseline_is_refnets_ntk_kept_or_pairwise(cache_bytes):
    """The NTK benchmark's torch.func baseline gives refnets' G, whether it keeps every chunk's
    Jacobian (the conv ResNet's mode) or contracts chunks pairwise (the ResNet's); chunks of 3
    samples over 7 leave a short last chunk."""
    torch = pytest.importorskip("torch")
    import numpy as np
    from refnets.ntk import empirical_ntk
    ntk = importlib.import_module("ntk")
    model, x = ntk.du_conv_resnet(n=7, p=5, m=6, H=3, d=2)
    f, params = ntk.torch_twin(model)
    Gt = ntk.torch_ntk(f, params, torch.from_numpy(x), chunk=3, cache_bytes=cache_bytes).numpy()
    G = empirical_ntk(model, x)
    assert np.max(np.abs(Gt - G)) <= 1e-12 * np.max(np.abs(G))


def test_startup_time_ends_at_the_first_call_not_at_the_interpreters_exit():
    startup = importlib.import_module("startup")
    slow_exit = 'print("first call done", flush=True)\nimport time\ntime.sleep(0.5)\n'
    first, whole = startup._time(None, slow_exit)
    assert 0 < first and whole - first >= 0.45              # the 0.5 s after the signal is not counted
    with pytest.raises(RuntimeError, match="snippet failed"):
        startup._time(None, "raise SystemExit(2)\n")
