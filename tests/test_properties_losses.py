"""Property-based checks of the losses and the L2 penalty (issue 9).

Hypothesis draws the loss, the reduction, the shapes ((N,) or (N, K); one sample, one class
included), the scale of the predictions (up to 1e3: far into the saturated tails) and a fraction
of invalid inputs (targets of the wrong shape, labels out of range or not ±1, a NaN, an unknown
reduction, integer predictions). A valid draw must give a finite value equal to a plain NumPy
formula written here and pass :func:`gradcheck.check`; an invalid one must raise ValueError or
TypeError naming the loss.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradcheck import core as gc
from refnets.losses import L2Penalty, half_squared_sum, logistic_loss, mean_squared, softmax_cross_entropy

SETTINGS = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
CHECK = dict(fast=True, directions=1, jvp=False, extras=False, max_redraws=3)
LOSSES = ["half_squared_sum", "mean_squared", "logistic_loss", "softmax_cross_entropy"]


def _logsumexp(z):
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def _targets(name, rng, N, K, vector):
    if name == "logistic_loss":
        y = rng.choice([-1.0, 1.0], size=N)
        return y if vector else y[:, None]
    if name == "softmax_cross_entropy":
        return rng.integers(0, K, N)
    shape = (N,) if vector else (N, K)
    return rng.standard_normal(shape)


def _pred_shape(name, N, K, vector):
    if name == "logistic_loss":
        return (N,) if vector else (N, 1)
    if name == "softmax_cross_entropy":
        return (N, K)
    return (N,) if vector else (N, K)


def _reference(name, pred, y, reduction):
    """The value by the textbook formula (moderate inputs: no stability tricks needed in float64)."""
    if name == "half_squared_sum":
        return 0.5 * np.sum((pred - y) ** 2)
    if name == "mean_squared":
        return np.sum((pred - y) ** 2) / pred.shape[0]
    c = 1.0 if reduction == "sum" else 1.0 / pred.shape[0]
    if name == "logistic_loss":
        z = y.ravel() * pred.ravel()
        return c * np.sum(np.logaddexp(0.0, -z))
    return c * np.sum(_logsumexp(pred) - pred[np.arange(pred.shape[0]), y])


def _fn(name, reduction):
    f = {"half_squared_sum": half_squared_sum, "mean_squared": mean_squared, "logistic_loss": logistic_loss,
         "softmax_cross_entropy": softmax_cross_entropy}[name]
    if name in ("logistic_loss", "softmax_cross_entropy"):
        def loss(pred, y):
            return f(pred, y, reduction)
    else:
        def loss(pred, y):
            return f(pred, y)
    loss.__name__ = name
    return loss


BREAKS = [None] * 10 + ["yshape", "labels", "nan", "reduction", "intpred", "ndim"]


@SETTINGS
@given(name=st.sampled_from(LOSSES), reduction=st.sampled_from(["mean", "sum"]), N=st.integers(1, 5),
       K=st.integers(1, 4), vector=st.booleans(), scale=st.sampled_from([0.01, 1.0, 10.0, 1e3]),
       brk=st.sampled_from(BREAKS), seed=st.integers(0, 2 ** 20))
def test_losses(name, reduction, N, K, vector, scale, brk, seed):
    rng = np.random.default_rng(seed)
    fn = _fn(name, reduction)
    pred = scale * rng.standard_normal(_pred_shape(name, N, K, vector))
    y = _targets(name, rng, N, K, vector)
    if brk is not None:
        if brk == "yshape":
            y = np.concatenate([y, y[:1]])
        elif brk == "labels":
            if name == "logistic_loss":
                y = y * 0.5
            elif name == "softmax_cross_entropy":
                y = y.copy()
                y[rng.integers(N)] = K if rng.integers(2) else -1
            else:
                return  # regression targets are any real numbers
        elif brk == "nan":
            pred.flat[rng.integers(pred.size)] = np.nan
        elif brk == "reduction":
            if name not in ("logistic_loss", "softmax_cross_entropy"):
                return
            fn = _fn(name, "avg")
        elif brk == "intpred":
            pred = np.round(pred).astype(np.int64)
        elif brk == "ndim":
            pred = pred.reshape(pred.shape + (1, 1))
        with pytest.raises((ValueError, TypeError)) as e:
            fn(pred, y)
        assert name in str(e.value), str(e.value)
        return

    value, grad = fn(pred, y)
    assert isinstance(value, float) and np.isfinite(value)
    assert grad.shape == pred.shape and grad.dtype == pred.dtype and np.all(np.isfinite(grad))
    ref = _reference(name, pred, y, reduction)
    assert abs(value - ref) <= 1e-12 * max(1.0, abs(ref)), (value, ref)
    # float32 predictions give a float32 gradient and a close value
    v32, g32 = fn(pred.astype(np.float32), y)
    assert g32.dtype == np.float32 and np.isfinite(v32)

    def factory(r):
        p = scale * r.standard_normal(_pred_shape(name, N, K, vector))
        return fn, (p, _targets(name, r, N, K, vector))
    res = gc.check(factory, name=name, seed=seed, **CHECK)
    assert res.status == gc.PASS, [(r.label, r.status, r.max_rel, r.note) for r in res.rows]


@SETTINGS
@given(c=st.sampled_from([0.0, 1e-3, 1.0, 7.5]), shapes=st.lists(st.lists(st.integers(1, 3), max_size=3),
                                                               min_size=1, max_size=4),
       pattern=st.sampled_from(["*", "p0", "p*", "*1", "nomatch"]), seed=st.integers(0, 2 ** 20))
def test_l2_penalty(c, shapes, pattern, seed):
    rng = np.random.default_rng(seed)
    names = [f"p{i}" for i in range(len(shapes))]

    def params(r):
        return {n: r.standard_normal(tuple(s)) for n, s in zip(names, shapes)}

    pen = L2Penalty(pattern, c)
    p = params(rng)
    chosen = [n for n in names if pattern == "*" or n == pattern or (pattern == "p*") or
              (pattern == "*1" and n.endswith("1"))]
    if not chosen:
        with pytest.raises(ValueError, match="L2Penalty: no parameter matches"):
            pen.value(p)
        return
    assert np.isclose(pen.value(p), c * sum(np.sum(p[n] ** 2) for n in chosen), rtol=1e-13, atol=0)
    assert sorted(pen.grads(p)) == sorted(chosen)
    res = gc.check(lambda r: (pen, params(r)), name="L2Penalty", seed=seed, **CHECK)
    assert res.status == gc.PASS, [(r.label, r.status, r.max_rel, r.note) for r in res.rows]
