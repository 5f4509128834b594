"""Divergence handling of refnets.train (issue 9).

A NaN or inf in the loss or in the parameters stops training with TrainingDiverged naming the
iteration, the last finite loss and a hint (the step size against the theorem's bound when the
caller gives one); the trace up to that point travels with the exception and the parameters are
those of the last iteration whose loss was finite.
"""
import numpy as np
import pytest

import refnets.layers as rn
from refnets import init
from refnets.losses import HalfSquaredSum, LogisticLoss, MeanSquared, SoftmaxCrossEntropy
from refnets.optim import GD, Adam, Optimizer
from refnets.train import TrainingDiverged, train


def problem(seed=0, n=6, d=3, m=16):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.standard_normal((n, 1))
    net = rn.Sequential({"W1": rn.Dense(d, m, init=init.normal(1.0), rng=seed), "s": rn.Softplus(),
                         "a": rn.Dense(m, 1, scale=1 / np.sqrt(m), init=init.normal(1.0), rng=seed + 1)})
    return net, x, y


def diverge(lr=50.0, steps=2000, step_bound=None, callback=None, loss=None, opt=GD, y_scale=100.0, seed=0):
    net, x, y = problem(seed)
    with pytest.raises(TrainingDiverged) as e:
        train(net, loss or HalfSquaredSum(), x, y_scale * y, opt(net, lr=lr), steps=steps,
              step_bound=step_bound, callback=callback)
    return net, x, y_scale * y, e.value


def test_diverged_names_iteration_last_finite_loss_and_keeps_the_trace():
    net, x, y, err = diverge()
    k = err.iteration
    assert k >= 1
    assert f"training diverged at iteration {k} " in str(err)
    # the trace holds exactly the iterations before k, all finite; the last is the last finite loss
    assert err.trace["step"] == list(range(k))
    assert np.all(np.isfinite(err.trace["loss"]))
    assert err.trace["loss"][-1] == err.last_finite_loss
    assert f"last finite loss {err.last_finite_loss:.6g}" in str(err)
    # the parameters are those of iteration k - 1: they reproduce the last finite loss bit for bit
    assert all(np.all(np.isfinite(p)) for p in net.parameters().values())
    assert HalfSquaredSum().forward(net.forward(x), y) == err.last_finite_loss
    assert f"the parameters are those of iteration {k - 1}" in err.hint


def test_hint_compares_the_step_size_with_the_theorem_bound():
    _, _, _, err = diverge(lr=50.0, step_bound=0.25)
    assert "the step size 50 is probably too large (the theorem's bound is 0.25)" in err.hint
    assert "200x the bound" in err.hint
    assert err.hint in str(err)


def test_hint_when_the_step_is_within_the_bound_blames_another_assumption():
    # A caller's bound that the (divergent) step respects: the hint must not call the step too large.
    _, _, _, err = diverge(lr=50.0, step_bound=100.0)
    assert "within the theorem's bound 100 (0.5x the bound)" in err.hint
    assert "too large" not in err.hint


def test_hint_without_a_bound_still_names_the_step_size():
    _, _, _, err = diverge(lr=50.0)
    assert "the step size 50 is probably too large; try a smaller one" in err.hint
    assert "bound" not in err.hint


def test_callback_values_recorded_before_divergence_are_kept():
    def cb(k, model, trace):
        trace.record(norm=float(np.linalg.norm(model.parameters()["W1.W"])))

    _, _, _, err = diverge(callback=cb)
    assert len(err.trace["norm"]) == err.iteration
    assert np.all(np.isfinite(err.trace["norm"]))


class PoisonAt(Optimizer):
    """GD that writes a NaN (or inf) into one parameter at a chosen update."""

    def __init__(self, model, lr, at, value=np.nan):
        super().__init__(model, lr)
        self.at, self.value, self.count = at, value, 0

    def step(self, grads=None):
        self.count += 1
        super().step(grads)

    def _update(self, name, p, g):
        p -= self.lr * g
        if self.count == self.at and name == "a.W":
            p.flat[0] = self.value


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_parameter_after_an_update_stops_at_that_iteration(value):
    net, x, y = problem()
    opt = PoisonAt(net, lr=1e-2, at=3, value=value)
    with pytest.raises(TrainingDiverged) as e:
        train(net, HalfSquaredSum(), x, y, opt, steps=10, step_bound=0.5)
    err = e.value
    # updates 1, 2 are fine; update 3 (from iteration 2 to 3) poisons a parameter
    assert err.iteration == 3
    assert err.trace["step"] == [0, 1, 2]
    assert err.last_finite_loss == err.trace["loss"][-1]
    assert "within the theorem's bound 0.5" in err.hint
    # restored to the parameters of iteration 2, whose loss is the last finite one
    assert all(np.all(np.isfinite(p)) for p in net.parameters().values())
    assert HalfSquaredSum().forward(net.forward(x), y) == err.last_finite_loss


def test_non_finite_loss_at_the_initial_point_is_iteration_zero():
    net, x, y = problem()
    huge = np.full_like(y, 1e200)  # (pred − y)² overflows: the very first loss is inf
    with pytest.raises(TrainingDiverged) as e:
        train(net, HalfSquaredSum(), x, huge, GD(net, lr=1e-3), steps=5)
    err = e.value
    assert err.iteration == 0 and np.isnan(err.last_finite_loss)
    assert "no finite loss before it" in str(err)
    assert "the trace is empty" in err.hint and "iteration -1" not in str(err)
    assert err.trace.get("loss", []) == []


def test_nan_in_the_data_is_a_value_error_not_a_divergence():
    net, x, y = problem()
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"train: the training data x contains non-finite values \(first at index \(2, 1\)"):
        train(net, HalfSquaredSum(), x, y, GD(net, lr=1e-3), steps=2)
    net, x, y = problem()
    y[4, 0] = np.inf
    with pytest.raises(ValueError, match="training data y contains non-finite"):
        train(net, HalfSquaredSum(), x, y, GD(net, lr=1e-3), steps=2)


def test_adam_divergence_is_caught_too():
    # Adam's steps are bounded by lr, so a huge lr blows the parameters up in one update.
    net, x, y = problem()
    with pytest.raises(TrainingDiverged) as e:
        train(net, MeanSquared(), x, y, Adam(net, lr=1e300), steps=50, step_bound=1e-3)
    err = e.value
    assert err.iteration >= 1 and np.isfinite(err.last_finite_loss)
    assert "1e+300 is probably too large (the theorem's bound is 0.001)" in err.hint


def test_classification_losses_diverge_cleanly():
    net, x, _ = problem()
    labels = np.where(np.arange(x.shape[0]) % 2 == 0, 1.0, -1.0)
    with pytest.raises(TrainingDiverged) as e:
        train(net, LogisticLoss(), x, labels, GD(net, lr=1e305), steps=50)
    assert np.all(np.isfinite(e.value.trace["loss"]))
    rng = np.random.default_rng(0)
    net2 = rn.Sequential(rn.Dense(3, 16, rng=1), rn.ReLU(), rn.Dense(16, 4, rng=2))
    x2 = rng.standard_normal((8, 3))
    with pytest.raises(TrainingDiverged) as e:
        train(net2, SoftmaxCrossEntropy(), x2, rng.integers(0, 4, 8), GD(net2, lr=1e300), steps=50)
    assert e.value.iteration >= 1 and np.isfinite(e.value.last_finite_loss)


def test_a_stable_run_does_not_raise_and_matches_an_unchecked_loop():
    # The divergence checks must not change a finite run: same losses as a hand-written loop.
    net, x, y = problem()
    trace = train(net, HalfSquaredSum(), x, y, GD(net, lr=0.1), steps=20, step_bound=0.5)
    net2, _, _ = problem()
    opt, losses = GD(net2, lr=0.1), []
    for k in range(21):
        loss = HalfSquaredSum()
        losses.append(loss.forward(net2.forward(x), y))
        net2.backward(loss.backward())
        if k < 20:
            opt.step()
    assert trace["loss"] == losses and trace["final_loss"] == losses[-1]
