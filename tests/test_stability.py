"""Numerical stability over z ∈ [−1e4, 1e4] against an mpmath reference (issue 9).

The logistic function, softplus, log(1+e^{−z}), tanh′ and softmax cross-entropy, and the
derivatives the library provides (σ′, σ″, softplus′, softplus″, the losses' gradients), must be
finite and within 1e-12 relative error of the exact value computed by mpmath at 50 digits and
rounded once to float64.

Where the exact value lies below the smallest normal float64 (2.2e-308; e.g. σ(−1e4) = e^{−10000}),
no float64 result can be relatively accurate: there the result must be within 1e-12 · 2.2e-308 of
the reference in absolute terms, so 0 is right for e^{−10000} but 0 for 1e-310 is not.
"""
import mpmath
import numpy as np
import pytest

from refnets.layers.activations import (KERNEL_MIN_SIZE, Logistic, Softplus, Tanh, log1pexp_neg,
                                        logistic, sech2, softplus)
from refnets.losses import logistic_loss, softmax_cross_entropy

mpmath.mp.dps = 50
TOL = 1e-12
TINY = float(np.finfo(np.float64).tiny)


def _grid():
    """z over [−1e4, 1e4]: 0, ±1e-300 … ±1e4 log-spaced, the overflow/underflow edges, integers."""
    mags = np.concatenate([
        np.logspace(-300, 4, 400),
        np.linspace(0.01, 50.0, 300),
        [1e-17, 1e-8, 0.5, 1.0, 2.0, 17.5, 36.7, 37.0, 40.0, 700.0, 708.0, 709.8, 710.0, 745.0,
         745.2, 746.0, 800.0, 1e3, 5e3, 9999.999, 1e4],
    ])
    z = np.concatenate([[0.0], mags, -mags])
    return np.unique(z)


Z = _grid()


def _mp_logistic(z):
    z = mpmath.mpf(z)
    return 1 / (1 + mpmath.exp(-z))


def _mp_softplus(z):
    z = mpmath.mpf(z)
    return mpmath.log1p(mpmath.exp(z)) if z < 0 else z + mpmath.log1p(mpmath.exp(-z))


def _mp_sech2(z):
    return 1 / mpmath.cosh(mpmath.mpf(z)) ** 2


REFERENCES = {
    "logistic": lambda z: _mp_logistic(z),
    "logistic'": lambda z: _mp_logistic(z) * _mp_logistic(-z),
    # σ(−z) − σ(z) = tanh(−z/2), written without cancellation so that 50 digits suffice at z ≈ 1e-300
    "logistic''": lambda z: _mp_logistic(z) * _mp_logistic(-z) * mpmath.tanh(-mpmath.mpf(z) / 2),
    "softplus": _mp_softplus,
    "log1pexp_neg": lambda z: _mp_softplus(-z),
    "sech2": _mp_sech2,
    "tanh''": lambda z: -2 * mpmath.tanh(mpmath.mpf(z)) * _mp_sech2(z),
}

LIBRARY = {
    "logistic": logistic,
    "logistic'": Logistic().deriv,
    "logistic''": Logistic().second_deriv,
    "softplus": softplus,
    "log1pexp_neg": log1pexp_neg,
    "sech2": sech2,
    "tanh''": Tanh().second_deriv,
}


def assert_accurate(got, ref, what):
    """got: float64 array; ref: list of mpf. Relative error <= TOL (absolute TOL·tiny below tiny)."""
    got = np.asarray(got, dtype=np.float64)
    assert np.all(np.isfinite(got)), f"{what}: non-finite output"
    refs = [mpmath.mpf(r) for r in ref]
    bad = []
    for i, (g, r) in enumerate(zip(got.ravel(), refs)):
        err = abs(mpmath.mpf(float(g)) - r)
        if abs(r) >= TINY:
            ok = err <= TOL * abs(r)
        else:
            ok = err <= TOL * TINY
        if not ok:
            bad.append((i, float(g), float(r), float(err / abs(r)) if r != 0 else float(err)))
    assert not bad, f"{what}: {len(bad)} inaccurate values, first (index, got, exact, rel. error): {bad[:3]}"


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_elementwise_function_accurate_over_the_whole_range(name):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = LIBRARY[name](Z.copy())
    assert_accurate(got, [REFERENCES[name](z) for z in Z], name)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_elementwise_function_accurate_on_the_kernel_path(name):
    """The same grid, repeated past KERNEL_MIN_SIZE elements: σ and softplus then run the Numba kernels."""
    reps = -(-KERNEL_MIN_SIZE // Z.size)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = LIBRARY[name](np.tile(Z, reps))
    assert got.size >= KERNEL_MIN_SIZE
    assert_accurate(got[:Z.size], [REFERENCES[name](z) for z in Z], f"{name} (kernel path)")
    np.testing.assert_array_equal(got.reshape(reps, Z.size), np.broadcast_to(got[:Z.size], (reps, Z.size)))


def test_softplus_layer_derivatives_are_the_logistic_ones():
    # Softplus′ = logistic, Softplus″ = logistic′: the layer must use the stable forms.
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert_accurate(Softplus().deriv(Z.copy()), [REFERENCES["logistic"](z) for z in Z], "softplus'")
        assert_accurate(Softplus().second_deriv(Z.copy()), [REFERENCES["logistic'"](z) for z in Z], "softplus''")
        assert_accurate(Softplus().fn(Z.copy()), [REFERENCES["softplus"](z) for z in Z], "Softplus.fn")
        assert_accurate(Logistic().fn(Z.copy()), [REFERENCES["logistic"](z) for z in Z], "Logistic.fn")


def test_elementwise_functions_keep_float32():
    z = Z.astype(np.float32)
    z = z[np.isfinite(z)]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for name, fn in LIBRARY.items():
            out = fn(z)
            assert out.dtype == np.float32 and np.all(np.isfinite(out)), name


def test_logistic_loss_value_and_gradient_accurate():
    # L = Σ log(1+e^{−y p}); dL/dp = −y σ(−y p). Both signs of the label.
    p = Z.copy()
    for label in (1.0, -1.0):
        y = np.full_like(p, label)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            _, d = logistic_loss(p, y, reduction="sum")
        assert_accurate(d.ravel(), [-label * _mp_logistic(-label * z) for z in p], f"dlogistic_loss (y={label})")
        for z in p[::7]:  # the value per sample (sum of one term)
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                v, _ = logistic_loss(np.array([z]), np.array([label]), reduction="sum")
            assert_accurate([v], [_mp_softplus(-label * z)], f"logistic_loss(y={label}, p={z})")


def _mp_ce(row, label):
    # L = log Σ_j e^{z_j − z_y} = log1p(Σ_{j≠y} e^{z_j − z_y}) and p_y − 1 = −Σ_{j≠y} p_j: written
    # so that 50 digits suffice even when L is far below 1e-50.
    row = [mpmath.mpf(float(v)) for v in row]
    rest = mpmath.fsum(mpmath.exp(v - row[label]) for j, v in enumerate(row) if j != label)
    loss = mpmath.log1p(rest)
    p = [mpmath.exp(v - row[label] - loss) for v in row]
    grad = [pj for pj in p]
    grad[label] = -mpmath.fsum(pj for j, pj in enumerate(p) if j != label)
    return loss, grad


def _ce_cases():
    rng = np.random.default_rng(9)
    cases = [
        (np.array([[50.0, 0.0]]), [0]),            # confident and right: L ≈ 2e-22
        (np.array([[1e4, -1e4]]), [0]),            # L = e^{−2e4}, below every float
        (np.array([[1e4, -1e4, 0.0]]), [1]),       # confident and wrong: L = 2e4
        (np.array([[-1e4, -1e4 + 1e-3]]), [1]),    # far from zero, close to each other
        (np.array([[0.0, 0.0, 0.0]]), [2]),        # uniform: log 3
        (np.array([[709.0, 710.0, 745.0]]), [2]),  # around exp's overflow and underflow
        (np.array([[3.0]]), [0]),                  # one class: L = 0 exactly
    ]
    for _ in range(40):
        k = int(rng.integers(2, 6))
        scale = 10.0 ** rng.uniform(-3, 4)
        row = np.clip(rng.uniform(-1, 1, size=(1, k)) * scale, -1e4, 1e4)
        cases.append((row, [int(rng.integers(0, k))]))
        cases.append((row, [int(np.argmax(row))]))  # the confident-and-right tail
    return cases


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_softmax_cross_entropy_value_and_gradient_accurate(reduction):
    for logits, labels in _ce_cases():
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            v, d = softmax_cross_entropy(logits, np.array(labels), reduction=reduction)
        ref_v, ref_g = _mp_ce(logits[0], labels[0])
        assert_accurate([v], [ref_v], f"softmax_cross_entropy{logits.tolist()} label {labels}")
        assert_accurate(d.ravel(), ref_g, f"d softmax_cross_entropy{logits.tolist()} label {labels}")


def test_softmax_cross_entropy_batch_mean_is_the_mean_of_rows():
    cases = _ce_cases()[:20]
    logits = np.concatenate([c[0] for c in cases if c[0].shape[1] == 2])
    labels = np.array([c[1][0] for c in cases if c[0].shape[1] == 2])
    v, d = softmax_cross_entropy(logits, labels)
    refs = [_mp_ce(r, l) for r, l in zip(logits, labels)]
    assert_accurate([v], [mpmath.fsum(r[0] for r in refs) / len(refs)], "mean cross-entropy")
    assert_accurate(d.ravel(), [g / len(refs) for r in refs for g in r[1]], "mean cross-entropy gradient")
