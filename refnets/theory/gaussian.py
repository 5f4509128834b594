"""Gaussian expectations of activations: c_σ, E[g(u)], E[g(u)h(v)] for any σ, and the ReLU closed forms.

Du, Lee, Li, Wang, Zhai (2019), arXiv 1811.03804, need three kinds of Gaussian integrals:

* c_σ = 1 / E_{z~N(0,1)}[σ(z)²] (the normalisation in Eq. (1)–(3)), :func:`c_sigma`;
* E_{u~N(0,k)}[g(u)] (the mean vectors b⁽ʰ⁾ of Def. 6.1 / 7.1), :func:`expect1d`;
* E_{(u,v)~N(0,A)}[g(u)h(v)] with A = [[k₁₁, k₁₂], [k₁₂, k₂₂]] (every K⁽ʰ⁾ recursion), :func:`expect2d`.

How they are computed (why this way)
------------------------------------
Plain tensor-product Gauss–Hermite converges exponentially for smooth σ but only algebraically when
σ or σ′ has a kink (ReLU, LeakyReLU, ReLU′ is a step), and the ReLU closed forms are the independent
check of the quadrature. So both rules are written in a form in which the kink at 0 falls on the
boundary of an integration piece:

* 1-D: **half-range Gauss–Hermite** (weight e^{−r²/2} on [0, ∞)), E g(√k z) = (2π)^{-1/2} Σ_k w_k
  [g(√k r_k) + g(−√k r_k)]. Exact for piecewise polynomials with their breaks at 0, exponentially
  convergent for analytic σ.
* 2-D: **polar coordinates**. With u = √k₁₁ z₁, v = √k₂₂ (ρ z₁ + √(1−ρ²) z₂), (z₁, z₂) = r(cos θ, sin θ),

      E[g(u)h(v)] = (1/2π) ∫₀^{2π} dθ ∫₀^∞ r e^{−r²/2} g(r A(θ)) h(r B(θ)) dr.

  The angle is split at the four angles where A(θ) = 0 or B(θ) = 0 (where any kink at 0 of g or h
  lies) and each arc gets Gauss–Legendre nodes; the radius gets the Gauss rule of the weight
  r e^{−r²/2} on [0, ∞). For ReLU the radial integrand is a polynomial in r on each arc and the
  angular one is analytic, so the quadrature meets the arc-cosine closed forms to ~1e-15.

The non-classical Gauss rules (weights r^s e^{−r²/2} on [0, ∞)) are built once from their moments
2^{(k+s−1)/2} Γ((k+s+1)/2) by Chebyshev's algorithm in high precision (the standard library's decimal), then Golub–Welsch
in float64, and cached.

ReLU closed forms (Cho & Saul 2009, arc-cosine kernels), for (u, v) ~ N(0, A), ρ = cos θ:
E[σ(u)σ(v)] = √(k₁₁k₂₂) (sin θ + (π−θ) cos θ)/(2π), E[σ′(u)σ′(v)] = (π−θ)/(2π), E σ(u) = √(k₁₁/(2π)).
"""
from __future__ import annotations

import decimal
import functools

import numpy as np

from ..layers.activations import Activation, get_activation

#: default quadrature sizes: angular nodes per arc, radial nodes, 1-D half-range nodes
N_THETA, N_R, N_1D = 12, 24, 48


# ----------------------------------------------------------------------------- rules
D = decimal.Decimal


def _pi():
    """π to the current decimal precision (Machin: π = 16 atan(1/5) − 4 atan(1/239))."""
    def atan_inv(x):
        x = D(x)
        term = total = 1 / x
        x2, k, sign = x * x, 1, 1
        eps = D(10) ** (-(decimal.getcontext().prec + 2))
        while abs(term) > eps:
            term /= x2
            k += 2
            sign = -sign
            total += sign * term / k
        return total
    return 16 * atan_inv(5) - 4 * atan_inv(239)


def _moment(j):
    """∫₀^∞ r^j e^{−r²/2} dr = 2^{(j−1)/2} Γ((j+1)/2), exactly in decimal (Γ of integers and half-integers)."""
    from math import factorial
    if j % 2:                            # (j+1)/2 = i integer: Γ(i) = (i−1)!
        i = (j + 1) // 2
        return D(2) ** ((j - 1) // 2) * D(factorial(i - 1))
    i = j // 2                           # Γ(i + 1/2) = (2i)! √π / (4^i i!)
    gamma = D(factorial(2 * i)) / (D(4) ** i * D(factorial(i))) * _pi().sqrt()
    return D(2).sqrt() ** (j - 1) * gamma


@functools.lru_cache(maxsize=None)
def halfrange_rule(n: int, power: int = 0):
    """Gauss rule for ∫₀^∞ f(r) r^power e^{−r²/2} dr: nodes (n,) and weights (n,), float64.

    ``power=0`` is half-range Gauss–Hermite (1-D expectations), ``power=1`` the radial rule of the
    polar form (2-D expectations). Exact for polynomials of degree ≤ 2n−1.
    """
    n, power = int(n), int(power)
    if n < 1 or power < 0:
        raise ValueError(f"halfrange_rule: need n >= 1 and power >= 0, got n={n}, power={power}")
    with decimal.localcontext() as ctx:
        ctx.prec = 3 * n + 30          # Chebyshev's algorithm loses ~ n digits: carry them
        mom = [_moment(k + power) for k in range(2 * n)]
        alpha, beta = [mom[1] / mom[0]], [mom[0]]
        prev, cur = [D(0)] * (2 * n), list(mom)
        for k in range(1, n):
            new = [D(0)] * (2 * n)
            for l in range(k, 2 * n - k):
                new[l] = cur[l + 1] - alpha[k - 1] * cur[l] - beta[k - 1] * prev[l]
            alpha.append(new[k + 1] / new[k] - cur[k] / cur[k - 1])
            beta.append(new[k] / cur[k - 1])
            prev, cur = cur, new
        a = np.array([float(v) for v in alpha])
        b = np.array([float(v) for v in beta])
    J = np.diag(a) + np.diag(np.sqrt(b[1:]), 1) + np.diag(np.sqrt(b[1:]), -1)
    x, V = np.linalg.eigh(J)
    return x, b[0] * V[0] ** 2


@functools.lru_cache(maxsize=None)
def _legendre01(n: int):
    x, w = np.polynomial.legendre.leggauss(int(n))
    return 0.5 * (x + 1.0), 0.5 * w


def _fn(g):
    """An activation name/instance -> σ; "name'" or "name''" -> σ′, σ″; a callable stays itself."""
    if callable(g) and not isinstance(g, (str, Activation)):
        return g
    if isinstance(g, str) and g.endswith("''"):
        return get_activation(g[:-2]).second_deriv
    if isinstance(g, str) and g.endswith("'"):
        return get_activation(g[:-1]).deriv
    return get_activation(g).fn


# ----------------------------------------------------------------------------- 1-D
def expect1d(g, k=1.0, n=N_1D):
    """E_{u~N(0,k)}[g(u)] by half-range Gauss–Hermite, vectorised over the variances ``k``.

    Parameters
    ----------
    g : activation name/instance (σ), "softplus'" (σ′), or a vectorised callable.
    k : variance(s), any shape, ≥ 0.
    n : number of half-range nodes.

    Returns an array of k's shape (a float for scalar k).
    """
    g = _fn(g)
    k = np.asarray(k, dtype=float)
    if np.any(k < 0):
        raise ValueError("expect1d: variances must be >= 0")
    r, w = halfrange_rule(n, 0)
    s = np.sqrt(k)[..., None] * r
    val = (g(s) + g(-s)) @ w / np.sqrt(2 * np.pi)
    return float(val) if val.ndim == 0 else val


def c_sigma(act="softplus", n=N_1D) -> float:
    """c_σ = 1 / E_{z~N(0,1)}[σ(z)²] (Du et al. 2019, Eq. (1); ReLU: 2), by half-range Gauss–Hermite."""
    f = _fn(act)
    return 1.0 / expect1d(lambda z: f(z) ** 2, 1.0, n)


# ----------------------------------------------------------------------------- 2-D
def expect2d(g, h, k11, k12, k22, n_theta=N_THETA, n_r=N_R):
    """E_{(u,v)~N(0, [[k11, k12], [k12, k22]])}[g(u) h(v)] for any g, h, vectorised over the entries.

    Parameters
    ----------
    g, h : activation names/instances (σ), "name'" (σ′), or vectorised callables.
    k11, k12, k22 : broadcastable arrays of covariance entries (k11, k22 ≥ 0, |k12| ≤ √(k11 k22)).
    n_theta : Gauss–Legendre nodes per angular arc (5 arcs); n_r : radial nodes.

    Returns an array of the broadcast shape (a float for scalars). See the module docstring for the
    polar rule; kinks at 0 of g or h are integrated exactly.
    """
    g, h = _fn(g), _fn(h)
    k11, k12, k22 = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (k11, k12, k22)))
    shape = k11.shape
    k11, k12, k22 = (a.reshape(-1) for a in (k11, k12, k22))
    if np.any(k11 < 0) or np.any(k22 < 0):
        raise ValueError("expect2d: variances must be >= 0")
    s1, s2 = np.sqrt(k11), np.sqrt(k22)
    den = s1 * s2
    rho = np.clip(np.divide(k12, den, out=np.zeros_like(k12), where=den > 0), -1.0, 1.0)
    c = np.sqrt(1.0 - rho * rho)
    r, wr = halfrange_rule(n_r, 1)
    t, wt = _legendre01(n_theta)
    val = np.empty(rho.size)
    # chunks of pairs so that the (pairs, angles, radii) blocks stay in cache (~2^18 values)
    step = max(1, (1 << 18) // (5 * n_theta * n_r))
    for a in range(0, rho.size, step):
        sl = slice(a, a + step)
        val[sl] = _polar(g, h, s1[sl], s2[sl], rho[sl], c[sl], t, wt, r, wr)
    val = val.reshape(shape)
    return float(val) if val.ndim == 0 else val


def _polar(g, h, s1, s2, rho, c, t, wt, r, wr):
    """The polar rule on a block of P pairs (see the module docstring); returns (P,)."""
    # arcs of [0, 2π) between the zeros of A(θ) = s1 cos θ and B(θ) = s2 (ρ cos θ + c sin θ)
    phi0 = np.arctan2(c, rho)
    cuts = np.stack([np.full_like(rho, np.pi / 2), np.full_like(rho, 1.5 * np.pi),
                     np.mod(phi0 + np.pi / 2, 2 * np.pi), np.mod(phi0 + 1.5 * np.pi, 2 * np.pi)], axis=1)
    P = rho.size
    edges = np.concatenate([np.zeros((P, 1)), np.sort(cuts, axis=1), np.full((P, 1), 2 * np.pi)], 1)
    lo, width = edges[:, :-1, None], np.diff(edges, axis=1)[:, :, None]
    theta = (lo + width * t).reshape(P, -1)                       # (P, 5·n_theta)
    wtheta = (width * wt).reshape(P, -1)
    A = s1[:, None] * np.cos(theta)
    B = s2[:, None] * (rho[:, None] * np.cos(theta) + c[:, None] * np.sin(theta))
    GA = g(A[:, :, None] * r)
    GA *= h(B[:, :, None] * r)
    return (GA @ wr * wtheta).sum(axis=1) / (2 * np.pi)


# ----------------------------------------------------------------------------- ReLU
def _theta(k11, k12, k22):
    # the same rounding as expect2d (√k11·√k22), so that both see the same ρ near ±1, where arccos
    # turns a rounding of ρ into an O(√eps) change of θ
    den = np.sqrt(np.asarray(k11, float)) * np.sqrt(np.asarray(k22, float))
    rho = np.clip(np.divide(k12, den, out=np.zeros(np.broadcast(k11, k12, k22).shape), where=den > 0), -1, 1)
    return np.arccos(rho), den


def relu_expect_sigma_sigma(k11, k12, k22):
    """E[ReLU(u) ReLU(v)] = √(k11 k22)(sin θ + (π − θ) cos θ)/(2π), cos θ = k12/√(k11 k22) (arc-cosine kernel, degree 1)."""
    th, den = _theta(k11, k12, k22)
    return den * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi)


def relu_expect_dsigma_dsigma(k11, k12, k22):
    """E[ReLU′(u) ReLU′(v)] = (π − θ)/(2π) (arc-cosine kernel, degree 0)."""
    th, _ = _theta(k11, k12, k22)
    return (np.pi - th) / (2 * np.pi)


def relu_expect_sigma(k):
    """E_{u~N(0,k)}[ReLU(u)] = √(k/(2π))."""
    return np.sqrt(np.asarray(k, float) / (2 * np.pi))
