"""Losses (values, gradients, stability), optimizers (freezing by name), the training loop
(GD, SGD scaling, divergence handling, determinism)."""
import numpy as np
import pytest

import refnets as rn
from refnets import init
from refnets.losses import (L2Penalty, HalfSquaredSum, LogisticLoss, MeanSquared, SoftmaxCrossEntropy,
                            half_squared_sum, logistic_loss, mean_squared, softmax_cross_entropy)
from refnets.optim import GD, SGD, Adam
from refnets.train import TrainingDiverged, train

from conftest import numeric_grad, rel_error


@pytest.mark.parametrize("fn,make_y", [
    (half_squared_sum, lambda r, p: r.standard_normal(p.shape)),
    (mean_squared, lambda r, p: r.standard_normal(p.shape)),
    (logistic_loss, lambda r, p: r.choice([-1.0, 1.0], size=p.shape[0])),
    (lambda p, y: logistic_loss(p, y, "sum"), lambda r, p: r.choice([-1.0, 1.0], size=p.shape[0])),
])
def test_loss_gradients(fn, make_y, rng):
    pred = rng.standard_normal((7, 1))
    y = make_y(rng, pred)
    _, d = fn(pred, y)
    assert rel_error(numeric_grad(lambda: fn(pred, y)[0], pred), d) < 1e-8


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_softmax_cross_entropy_gradient(reduction, rng):
    logits = rng.standard_normal((5, 4))
    labels = rng.integers(0, 4, size=5)
    _, d = softmax_cross_entropy(logits, labels, reduction)
    num = numeric_grad(lambda: softmax_cross_entropy(logits, labels, reduction)[0], logits)
    assert rel_error(num, d) < 1e-8


def test_losses_stable_for_huge_margins():
    z = np.array([-1e4, -800.0, 0.0, 800.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        v, d = logistic_loss(z, np.ones(5), "sum")
        assert np.isfinite(v) and np.isclose(v, 1e4 + 800 + np.log(2.0))
        assert np.allclose(d.ravel(), [-1, -1, -0.5, 0, 0])
        v2, d2 = softmax_cross_entropy(np.array([[1e4, -1e4, 0.0]]), np.array([1]))
        assert np.isclose(v2, 2e4) and np.all(np.isfinite(d2))


def test_loss_bad_inputs():
    with pytest.raises(ValueError, match="labels must be -1 or \\+1"):
        logistic_loss(np.zeros(3), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"targets must have the shape of pred \(3, 1\), got \(2, 1\)"):
        half_squared_sum(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="pred contains non-finite"):
        mean_squared(np.array([np.nan]), np.zeros(1))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        HalfSquaredSum().backward()
    with pytest.raises(ValueError, match="reduction must be"):
        LogisticLoss("avg").forward(np.zeros(2), np.ones(2))


def test_l2_penalty_selects_by_name():
    net = rn.Sequential({"inner": rn.Dense(2, 3, rng=0), "out": rn.Dense(3, 1, rng=1)})
    pen = L2Penalty("out.*", c=0.5)
    p = net.parameters()
    assert np.isclose(pen.value(p), 0.5 * np.sum(p["out.W"] ** 2))
    assert set(pen.grads(p)) == {"out.W"}
    with pytest.raises(ValueError, match="no parameter matches"):
        L2Penalty("nothing*", 1.0).value(p)


def small_problem(seed=0, n=8, d=4, m=32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.standard_normal(n)
    net = rn.Sequential({"W1": rn.Dense(d, m, init=init.normal(1.0), rng=seed), "s": rn.Softplus(),
                         "a": rn.Dense(m, 1, scale=1 / np.sqrt(m), init=init.normal(1.0), rng=seed + 1)})
    return net, x, y


def test_gd_decreases_loss_and_frozen_parameters_stay():
    net, x, y = small_problem()
    W1 = net.parameters()["W1.W"].copy()
    opt = GD(net, lr=0.2, frozen=["W1.*"])
    tr = train(net, HalfSquaredSum(), x, y[:, None], opt, steps=200)
    assert tr["loss"][-1] < 0.2 * tr["loss"][0]
    assert np.array_equal(net.parameters()["W1.W"], W1)
    assert tr["step"][0] == 0 and len(tr["loss"]) == 201


def test_adam_and_sgd_run_and_are_deterministic():
    results = []
    for _ in range(2):
        net, x, y = small_problem(3)
        tr = train(net, HalfSquaredSum(), x, y[:, None], Adam(net, lr=0.01), steps=30, batch_size=4, rng=7)
        results.append((tr["loss"], net.parameters()["a.W"].copy()))
    assert results[0][0] == results[1][0]
    assert np.array_equal(results[0][1], results[1][1])
    assert results[0][0][-1] < results[0][0][0]


def test_sgd_scales_summed_loss_by_n_over_b():
    net, x, y = small_problem(1)
    seen = {}

    class Spy(SGD):
        def step(self, grads=None):
            seen.setdefault("g", grads["a.W"].copy())
            super().step(grads)
    full = {}
    net2, _, _ = small_problem(1)
    rn.train.train(net2, HalfSquaredSum(), x[:4], y[:4, None], GD(net2, 1e-9), steps=0)
    idx = np.random.default_rng(5).choice(8, size=4, replace=False)
    net3, _, _ = small_problem(1)
    out = net3.forward(x[idx])
    l = HalfSquaredSum()
    l.forward(out, y[idx, None])
    net3.backward(l.backward())
    full["g"] = net3.gradients()["a.W"] * 2.0  # n/b = 8/4
    train(net, HalfSquaredSum(), x, y[:, None], Spy(net, lr=1e-3), steps=1, batch_size=4, rng=5)
    assert np.allclose(seen["g"], full["g"], rtol=1e-14)


def test_divergence_stops_with_iteration_hint_and_trace():
    net, x, y = small_problem()
    with pytest.raises(TrainingDiverged) as e:
        train(net, HalfSquaredSum(), x, 1e3 * y[:, None], GD(net, lr=1e3), steps=500, step_bound=0.05)
    err = e.value
    assert err.iteration > 0 and np.isfinite(err.last_finite_loss)
    assert "step size 1e+03 is probably too large (the theorem's bound is 0.05)" in str(err)
    assert len(err.trace["loss"]) == err.iteration
    assert all(np.isfinite(err.trace["loss"]))
    assert all(np.all(np.isfinite(p)) for p in net.parameters().values())
    # the parameters kept are those whose loss was the last finite one
    assert HalfSquaredSum().forward(net.forward(x), 1e3 * y[:, None]) == err.last_finite_loss


def test_optimizer_bad_arguments():
    net, _, _ = small_problem()
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        GD(net, lr=-1)
    with pytest.raises(ValueError, match="no parameter is trainable"):
        GD(net, lr=0.1, trainable=["nothing"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gd_update_kernel_gives_numpys_bits(dtype):
    """Large parameters take the one-pass Numba update (optim._axpy); small ones NumPy's p -= lr·g.
    Both round the product and the difference separately: the same bits as NumPy, in either dtype."""
    from refnets.optim import AXPY_MIN_SIZE

    model = rn.Dense(96, 64, bias=True, rng=0, dtype=dtype)     # W: 6144 ≥ AXPY_MIN_SIZE entries, b: 64
    assert model.params["W"].size >= AXPY_MIN_SIZE > model.params["b"].size
    rng = np.random.default_rng(1)
    grads = {n: rng.standard_normal(p.shape).astype(dtype) for n, p in model.parameters().items()}
    want = {n: p.copy() for n, p in model.parameters().items()}
    for n in want:
        want[n] -= 0.03 * grads[n]
    GD(model, 0.03).step(grads)
    for n, p in model.parameters().items():
        assert p.dtype == dtype
        np.testing.assert_array_equal(p, want[n])
