"""Gaussian expectations (refnets.theory.gaussian): the quadrature against independent references —
ReLU's arc-cosine closed forms (within 1e-10), mpmath integration, tensor Gauss–Hermite and Monte Carlo."""
import numpy as np
import pytest

from refnets.layers.activations import softplus
from refnets.theory import gaussian as G


def _covariances(rng, n=120):
    k11, k22 = rng.uniform(0.05, 3.0, n), rng.uniform(0.05, 3.0, n)
    rho = rng.uniform(-1, 1, n)
    rho[:4] = [1.0, -1.0, 0.0, 0.999999]          # degenerate and nearly degenerate pairs
    return k11, rho * np.sqrt(k11) * np.sqrt(k22), k22


@pytest.mark.parametrize("power", [0, 1])
def test_halfrange_rules_integrate_monomials_exactly(power):
    from math import gamma
    r, w = G.halfrange_rule(20, power)
    assert np.all(r > 0) and np.all(w > 0)
    for k in range(0, 39, 3):
        exact = 2 ** ((k + power - 1) / 2) * gamma((k + power + 1) / 2)
        assert abs(w @ r ** k - exact) <= 1e-11 * exact, k


def test_relu_closed_forms_match_the_quadrature(rng):
    k11, k12, k22 = _covariances(rng)
    np.testing.assert_allclose(G.expect2d("relu", "relu", k11, k12, k22),
                               G.relu_expect_sigma_sigma(k11, k12, k22), rtol=0, atol=1e-10)
    np.testing.assert_allclose(G.expect2d("relu'", "relu'", k11, k12, k22),
                               G.relu_expect_dsigma_dsigma(k11, k12, k22), rtol=0, atol=1e-10)
    np.testing.assert_allclose(G.expect1d("relu", k11), G.relu_expect_sigma(k11), rtol=0, atol=1e-12)
    assert G.c_sigma("relu") == pytest.approx(2.0, abs=1e-12)


def test_closed_forms_at_known_points():
    # ρ = 0: independent halves, E σ(u)σ(v) = (E σ)² = 1/(2π); ρ = 1: E σ(u)² = 1/2; E σ′σ′ = 1/4 and 1/2
    assert G.relu_expect_sigma_sigma(1, 0, 1) == pytest.approx(1 / (2 * np.pi), abs=1e-15)
    assert G.relu_expect_sigma_sigma(1, 1, 1) == pytest.approx(0.5, abs=1e-15)
    assert G.relu_expect_dsigma_dsigma(1, 0, 1) == pytest.approx(0.25, abs=1e-15)
    assert G.relu_expect_dsigma_dsigma(1, 1, 1) == pytest.approx(0.5, abs=1e-15)


def test_c_sigma_softplus_against_mpmath():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30
    e = mp.quad(lambda z: mp.log(1 + mp.e ** z) ** 2 * mp.e ** (-z * z / 2), [-mp.inf, 0, mp.inf]) / mp.sqrt(2 * mp.pi)
    assert G.c_sigma("softplus") == pytest.approx(float(1 / e), rel=1e-12)
    t = mp.quad(lambda z: mp.tanh(z) ** 2 * mp.e ** (-z * z / 2), [-mp.inf, 0, mp.inf]) / mp.sqrt(2 * mp.pi)
    assert G.c_sigma("tanh") == pytest.approx(float(1 / t), rel=1e-10)


@pytest.mark.parametrize("g,h", [("softplus", "softplus"), ("softplus'", "softplus'"), ("logistic", "softplus")])
def test_smooth_expectations_against_tensor_gauss_hermite(rng, g, h):
    """An independent rule for smooth integrands: 100×100 tensor-product Gauss–Hermite on the Cholesky factor."""
    k11, k12, k22 = _covariances(rng, 30)
    z, w = np.polynomial.hermite_e.hermegauss(100)
    w = w / np.sqrt(2 * np.pi)
    fg, fh = G._fn(g), G._fn(h)
    ref = []
    for a, b, c in zip(k11, k12, k22):
        l21 = b / np.sqrt(a)
        l22 = np.sqrt(max(c - l21 ** 2, 0.0))
        u, v = np.sqrt(a) * z[:, None], l21 * z[:, None] + l22 * z[None, :]
        ref.append(np.sum(w[:, None] * w[None, :] * fg(u) * fh(v)))
    np.testing.assert_allclose(G.expect2d(g, h, k11, k12, k22), ref, rtol=0, atol=1e-8)  # default nodes: ~1e-9 worst case


def test_expect2d_against_monte_carlo():
    rng = np.random.default_rng(7)
    z = rng.standard_normal((2, 400_000))
    u, v = 1.3 * z[0], 0.4 * z[0] + 0.9 * z[1]
    mc = softplus(u) * softplus(v)
    exact = G.expect2d("softplus", "softplus", 1.69, 1.3 * 0.4, 0.4 ** 2 + 0.9 ** 2)
    assert abs(mc.mean() - exact) < 4 * mc.std() / np.sqrt(mc.size)


def test_shapes_and_errors():
    out = G.expect2d("tanh", "tanh", np.ones((2, 3)), 0.5, 1.0)
    assert out.shape == (2, 3)
    assert isinstance(G.expect2d("tanh", "tanh", 1.0, 0.5, 1.0), float)
    assert G.expect2d("tanh", lambda v: np.ones_like(v), 1.0, 0.3, 1.0) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="variances"):
        G.expect2d("relu", "relu", -1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        G.c_sigma("nope")
