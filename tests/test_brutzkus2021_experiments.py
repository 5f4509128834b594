"""Brutzkus & Globerson 2021 experiments: the registered figures and one tiny (size × repeat) job."""
import json

import numpy as np
import pytest

from refnets.experiments import brutzkus2021 as E
from refnets.experiments.common import REGISTRY


def test_the_four_figures_are_registered():
    assert {"brutzkus2021.fig3a", "brutzkus2021.fig3b", "brutzkus2021.fig4", "brutzkus2021.fig3c"} <= set(REGISTRY)
    full = E.config(quick=False)
    assert (full["d"], full["n"], full["k"], full["test_size"], full["repeats"]) == (20, 10, 500, 1000, 5)


def test_a_tiny_job_is_json_and_summarised():
    pytest.importorskip("sklearn")
    kw = dict(d=5, l=5, n=3, k=20, rho=0.0, test_size=60, lr=1e-2, max_epochs=100, stop_loss=1e-2, r=1.0, alpha=0.01)
    res = [E.compare_job("patterns", m, seed, **kw) for m in (10, 30) for seed in (0, 1)]
    res = json.loads(json.dumps(res))
    assert res[0]["ConvPool_params"] == 5 * 20 + 20
    assert abs(res[0]["MLP_params"] - res[0]["ConvPool_params"]) <= (3 * 5 + 1) / 2
    assert all(0 <= r[f"{m}_test"] <= 1 for r in res for m in E.MODELS)
    rows = E.summarize(res, "m")
    assert [r["m"] for r in rows] == [10, 30] and rows[0]["repeats"] == 2
    vals = [r["ConvPool_test"] for r in res if r["m"] == 10]
    assert rows[0]["ConvPool_mean"] == pytest.approx(np.mean(vals))
    assert "ConvPool" in E.format_table(rows, "m", "t")


def test_a_tiny_digits_job():
    pytest.importorskip("sklearn")
    r = E.compare_job("digits", 20, 0, d=0, l=0, n=4, k=10, rho=0.0, test_size=40, lr=1e-2, max_epochs=20,
                      stop_loss=1e-2, r=1.0, alpha=0.01)
    assert r["d"] == 64 and 0 <= r["ConvPool_test"] <= 1
