"""The pattern-detection distribution 𝒟 of Brutzkus & Globerson (2021), Sec. 3.

O = {o₁, …, o_l} ⊂ ℝᵈ orthonormal, 3 ≤ l ≤ d; o₁ is the positive pattern, o₂ the negative one,
o₃ … o_l the spurious ones (the index set 𝒮 = {3, …, l}). An input x = (x[1], …, x[n]) ∈ ℝ^{nd}
holds n patterns, x[j] ∈ ℝᵈ stored at coordinates j·d … (j+1)·d − 1 of the flat vector (C order).
A sample (x, y) ~ 𝒟 (Sec. 3, properties 1–3):

1. y = ±1 with probability ½ each;
2. y = +1: a uniform position j₊ gets o₁, every other position an independent uniform spurious
   pattern o_{i_j}, i_j ∈ 𝒮;
3. y = −1: the same with o₂.

Variants of the paper's experiments (Sec. 7): independent noise v added to every pattern,
‖v‖ ≤ ρ (Fig. 3b and 4 use ρ = 1; "uniform in the ball" is our reading, (R) in PAPERS.md, and
``noise="sphere"`` puts v on the sphere ‖v‖ = ρ instead), and n varied (Fig. 4).

Shapes: O (l, d); x (m, n·d); y (m,) of ±1 (float64).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..layers.base import as_rng

BASES = ("random", "standard")
NOISES = ("ball", "sphere")


def orthonormal_patterns(l: int, d: int, basis: str = "random", rng=None) -> np.ndarray:
    """The patterns o₁ … o_l as the rows of an (l, d) array with orthonormal rows.

    ``basis="random"``: the first l rows of a uniformly (Haar) distributed orthogonal matrix, as
    in the paper's experiments (Sec. 7: "uniformly sampled from the rows of a uniformly sampled
    orthogonal matrix"); drawn as Q from the QR factorisation of a Gaussian matrix with the signs
    of R's diagonal moved into Q, which makes Q exactly Haar (Mezzadri 2007).
    ``basis="standard"``: o_i = e_i.
    """
    if not (isinstance(l, (int, np.integer)) and isinstance(d, (int, np.integer))):
        raise TypeError(f"orthonormal_patterns: l and d must be integers, got {l!r}, {d!r}")
    if not 3 <= l <= d:
        raise ValueError(f"orthonormal_patterns: need 3 <= l <= d (a positive, a negative and at least one "
                         f"spurious pattern, all orthogonal in R^d), got l={l}, d={d}")
    if basis == "standard":
        return np.eye(d)[:l].copy()
    if basis != "random":
        raise ValueError(f"orthonormal_patterns: basis must be one of {BASES}, got {basis!r}")
    g = as_rng(rng).standard_normal((d, d))
    q, r = np.linalg.qr(g)
    q = q * np.sign(np.diag(r))[None, :]
    return q.T[:l].copy()


def ball_noise(shape, d: int, rho: float, rng=None, noise: str = "ball") -> np.ndarray:
    """Independent vectors v ∈ ℝᵈ with ‖v‖ ≤ ρ, uniform in the ball (or on the sphere ‖v‖ = ρ).

    Uniform in the ball: v = ρ U^{1/d} g/‖g‖ with g Gaussian, U uniform on [0, 1].
    Shapes: ``shape`` is the leading shape; returns (*shape, d).
    """
    rng = as_rng(rng)
    if noise not in NOISES:
        raise ValueError(f"ball_noise: noise must be one of {NOISES}, got {noise!r}")
    if not (np.isfinite(rho) and rho >= 0):
        raise ValueError(f"ball_noise: rho must be a nonnegative number, got {rho}")
    shape = tuple(np.atleast_1d(shape)) if not isinstance(shape, tuple) else shape
    g = rng.standard_normal(shape + (d,))
    g /= np.linalg.norm(g, axis=-1, keepdims=True)
    radius = rho if noise == "sphere" else rho * rng.uniform(size=shape + (1,)) ** (1.0 / d)
    return g * radius


def sample_indices(m: int, n: int, l: int, rng=None):
    """The discrete part of m draws from 𝒟: labels and which pattern sits where.

    Returns (y, idx): y (m,) of ±1 (float64); idx (m, n) int, idx[s, j] ∈ {0, …, l−1} is the
    0-based index of the pattern at position j (0 ↔ o₁, 1 ↔ o₂, 2 … l−1 ↔ spurious).
    """
    rng = as_rng(rng)
    if m < 0 or n < 1:
        raise ValueError(f"sample_indices: need m >= 0 and n >= 1, got m={m}, n={n}")
    y = rng.choice(np.array([-1.0, 1.0]), size=m)
    idx = rng.integers(2, l, size=(m, n))
    pos = rng.integers(0, n, size=m)
    idx[np.arange(m), pos] = np.where(y > 0, 0, 1)
    return y, idx


def compose(O: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x[s] = (o_{idx[s,0]}, …, o_{idx[s,n−1]}) flattened: (m, n) indices -> (m, n·d)."""
    m, n = idx.shape
    return O[idx].reshape(m, n * O.shape[1])


def sample(m: int, n: int, O: np.ndarray, rho: float = 0.0, rng=None, noise: str = "ball",
           return_indices: bool = False):
    """m IID samples from 𝒟 (Brutzkus & Globerson 2021, Sec. 3), optionally with pattern noise.

    Parameters
    ----------
    m : number of samples; n : patterns per input; O : (l, d) orthonormal patterns.
    rho : noise radius ρ (0: the noiseless 𝒟 of the analysis; 1: Fig. 3b and 4).
    noise : "ball" (uniform in ‖v‖ ≤ ρ, default, (R)) or "sphere" (‖v‖ = ρ).
    return_indices : also return the (m, n) pattern indices (see :func:`sample_indices`).

    Returns
    -------
    x : (m, n·d); y : (m,) of ±1; [idx : (m, n)].
    """
    O = np.asarray(O, dtype=np.float64)
    if O.ndim != 2 or O.shape[0] < 3:
        raise ValueError(f"sample: O must be an (l, d) array of l >= 3 patterns, got shape {O.shape}")
    rng = as_rng(rng)
    y, idx = sample_indices(m, n, O.shape[0], rng)
    x = compose(O, idx)
    if rho > 0:
        x = x + ball_noise((m, n), O.shape[1], rho, rng, noise).reshape(m, -1)
    return (x, y, idx) if return_indices else (x, y)


def support(O: np.ndarray, n: int):
    """Every point of the support 𝒳 of 𝒟: 2 · n · (l−2)^{n−1} inputs (keep n and l small).

    Returns (x, y): x (M, n·d), y (M,). Used by Proposition 6.1's min-norm separator.
    """
    O = np.asarray(O, dtype=np.float64)
    l = O.shape[0]
    rows, ys = [], []
    for label, cls in ((1.0, 0), (-1.0, 1)):
        for pos in range(n):
            for spur in itertools.product(range(2, l), repeat=n - 1):
                idx = list(spur[:pos]) + [cls] + list(spur[pos:])
                rows.append(idx)
                ys.append(label)
    return compose(O, np.array(rows, dtype=int)), np.array(ys)


def patches(x: np.ndarray, d: int) -> np.ndarray:
    """(m, n·d) -> (m, n, d): the patterns x[j] of every input (a view when possible)."""
    if x.ndim != 2 or x.shape[1] % d:
        raise ValueError(f"patches: x must be (m, n*d) with d={d} dividing the length, got shape {x.shape}")
    return x.reshape(x.shape[0], x.shape[1] // d, d)


@dataclass
class PatternDistribution:
    """𝒟 with its parameters fixed: l patterns in ℝᵈ, n per input, noise radius ρ.

    ``PatternDistribution(l=20, d=20, n=10, rho=1.0, seed=0)`` is the setting of Fig. 3b; the
    patterns are drawn once from ``seed`` (basis "random") and kept, so train and test samples
    share them. ``sample(m, rng)`` returns (x (m, n·d), y (m,)).
    """

    l: int
    d: int
    n: int
    rho: float = 0.0
    basis: str = "random"
    noise: str = "ball"
    seed: int = 0

    def __post_init__(self):
        self.O = orthonormal_patterns(self.l, self.d, self.basis, np.random.default_rng(self.seed))

    def sample(self, m: int, rng=None, return_indices: bool = False):
        return sample(m, self.n, self.O, self.rho, rng, self.noise, return_indices)
