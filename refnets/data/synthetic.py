"""Input normalisation, δ-separation and synthetic data sets (Allen-Zhu, Li & Song 2019, Sec. 2).

The paper assumes every input lies on the unit sphere with a constant last coordinate, and that
the inputs are δ-separated:

    ‖xᵢ‖ = 1,   (xᵢ)_d = 1/√2,   ‖xᵢ − xⱼ‖ ≥ δ for i ≠ j.

The constant last coordinate plays the role of a bias (the network itself has none). The paper
says this holds without loss of generality "by padding one coordinate and renormalising"; how
exactly is not in the seed (only the abstract), so :func:`normalize_inputs` implements two
readings and marks the choice **(R)**:

* ``method="sphere"`` (default): x̄ ↦ (√(1 − c²) · x̄/‖x̄‖, c). Exact: ‖x‖ = 1 and x_d = c for every
  sample; the norm of x̄ is discarded.
* ``method="pad_renormalise"``: x̄ ↦ (x̄, c·s)/‖(x̄, c·s)‖ with s = the median ‖x̄‖ of the set.
  Keeps the relative norms of the raw inputs; the last coordinate is c only for inputs of
  median norm.

Everything returns float64 arrays of shape (n, d) with d = d̄ + 1 (one padded coordinate).
"""
from __future__ import annotations

import numpy as np

from ..layers.base import as_rng

LAST_COORD = 1.0 / np.sqrt(2.0)


def normalize_inputs(x, last=LAST_COORD, method="sphere"):
    """Pad one coordinate and put every row on the unit sphere (Allen-Zhu et al. 2019, Sec. 2, (R)).

    Parameters
    ----------
    x : (n, d̄) raw inputs, no row zero (for ``method="sphere"``).
    last : float in (0, 1), the value c of the padded last coordinate (paper: 1/√2).
    method : "sphere" (exact, default) or "pad_renormalise" (see the module docstring).

    Returns
    -------
    (n, d̄ + 1) float64 with unit rows.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"normalize_inputs: x must have shape (n, d), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("normalize_inputs: x contains non-finite values")
    if not (0.0 < last < 1.0):
        raise ValueError(f"normalize_inputs: last must lie in (0, 1), got {last}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if method == "sphere":
        if np.any(norms == 0):
            raise ValueError(f"normalize_inputs: row {int(np.argmin(norms))} is zero; it has no direction")
        body = np.sqrt(1.0 - last * last) * x / norms
        return np.concatenate([body, np.full((x.shape[0], 1), last)], axis=1)
    if method == "pad_renormalise":
        s = float(np.median(norms)) or 1.0
        # Pad p = c·s/√(1−c²): a row of norm s then ends at p/√(s²+p²) = c exactly.
        pad = last * s / np.sqrt(1.0 - last * last)
        z = np.concatenate([x, np.full((x.shape[0], 1), pad)], axis=1)
        return z / np.linalg.norm(z, axis=1, keepdims=True)
    raise ValueError(f"normalize_inputs: method must be 'sphere' or 'pad_renormalise', got {method!r}")


def pairwise_distances(x):
    """(n, n) Euclidean distances ‖xᵢ − xⱼ‖, computed from the Gram matrix (clamped at 0)."""
    x = np.asarray(x, dtype=np.float64)
    sq = np.sum(x * x, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


def separation(x, return_pair=False):
    """δ = min_{i≠j} ‖xᵢ − xⱼ‖, the data's separation (Allen-Zhu et al. 2019, Assumption 2.1).

    Returns δ (and the pair (i, j) attaining it with ``return_pair``). n < 2 -> δ = inf.
    Exact duplicates give δ = 0, which the theorems exclude.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return (np.inf, None) if return_pair else np.inf
    D = pairwise_distances(x)
    np.fill_diagonal(D, np.inf)
    k = int(np.argmin(D))
    i, j = divmod(k, n)
    delta = float(D[i, j])
    if delta < 1e-6:  # the Gram-matrix formula loses digits for near-duplicates: recompute directly
        delta = float(np.linalg.norm(x[i] - x[j]))
    return (delta, (min(i, j), max(i, j))) if return_pair else delta


def random_targets(n, d_out, rng=None, norm=1.0):
    """Targets yᵢ* ∈ ℝ^{d_out} with ‖yᵢ*‖ = ``norm`` (the paper's ‖yᵢ*‖ = O(1)), uniform directions."""
    rng = as_rng(rng)
    y = rng.standard_normal((n, d_out))
    return norm * y / np.linalg.norm(y, axis=1, keepdims=True)


def sphere_regression(n, d, d_out=1, rng=None, last=LAST_COORD, target_norm=1.0):
    """Random inputs on the paper's sphere and random targets: the memorisation problem.

    Raw inputs x̄ ~ N(0, I_{d−1}), then :func:`normalize_inputs`; targets from :func:`random_targets`
    (independent of x, so nothing but over-parameterisation makes them fittable).

    Returns x (n, d), y (n, d_out), δ.
    """
    rng = as_rng(rng)
    if d < 2:
        raise ValueError(f"sphere_regression: d must be >= 2 (one coordinate is the bias), got {d}")
    x = normalize_inputs(rng.standard_normal((n, d - 1)), last)
    y = random_targets(n, d_out, rng, target_norm)
    return x, y, separation(x)


def controlled_separation(n, d, delta, d_out=1, rng=None, last=LAST_COORD, target_norm=1.0):
    """A data set whose separation is exactly δ: ⌈n/2⌉ random points and, for ⌊n/2⌋ of them, a twin at
    distance δ, with independent targets for the twins (the hardest pairs the theorems allow).

    The twin of x = (r u, c) (u a unit vector, r = √(1 − c²)) is (r u′, c) with u′ = cos θ u + sin θ v,
    v ⊥ u a random unit vector and 2 r sin(θ/2) = δ, so the twin also satisfies the normalisation.
    Valid for 0 < δ < 2r and as long as the random points stay farther apart than δ (checked).

    Returns x (n, d), y (n, d_out), δ_measured (== δ up to rounding).
    """
    rng = as_rng(rng)
    r = np.sqrt(1.0 - last * last)
    if not (0.0 < delta < 2 * r):
        raise ValueError(f"controlled_separation: delta must lie in (0, {2 * r:.4g}), got {delta}")
    if d < 3:
        raise ValueError(f"controlled_separation: d must be >= 3, got {d}")
    n_base = (n + 1) // 2
    n_twin = n - n_base
    theta = 2.0 * np.arcsin(delta / (2.0 * r))
    for _ in range(200):
        u = rng.standard_normal((n_base, d - 1))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        v = rng.standard_normal((n_twin, d - 1))
        v -= np.sum(v * u[:n_twin], axis=1, keepdims=True) * u[:n_twin]
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        u_twin = np.cos(theta) * u[:n_twin] + np.sin(theta) * v
        body = r * np.concatenate([u, u_twin], axis=0)
        x = np.concatenate([body, np.full((n, 1), last)], axis=1)
        # every pair other than the twins must stay farther apart than δ
        D = pairwise_distances(x)
        idx = np.arange(n_twin)
        D[idx, n_base + idx] = D[n_base + idx, idx] = np.inf
        np.fill_diagonal(D, np.inf)
        if n < 2 or D.min() > delta:
            break
    else:
        raise ValueError(f"controlled_separation: cannot place {n} points in d={d} with separation exactly "
                         f"delta={delta}; lower delta or raise d")
    y = random_targets(n, d_out, rng, target_norm)
    return x, y, separation(x)


def gaussian_classes(n, d, k, rng=None, spread=1.0, last=LAST_COORD, random_labels=False):
    """A k-class problem on the sphere: class means μ_c ~ N(0, I), xᵢ = μ_{yᵢ} + spread · ξᵢ, normalised.

    ``random_labels=True`` draws the labels independently of the inputs (pure memorisation: 100%
    training accuracy is then a statement about over-parameterisation only).

    Returns x (n, d), labels (n,) int in [0, k), δ.
    """
    rng = as_rng(rng)
    if k < 2:
        raise ValueError(f"gaussian_classes: k must be >= 2, got {k}")
    labels = np.arange(n) % k
    rng.shuffle(labels)
    means = rng.standard_normal((k, d - 1))
    raw = means[labels] + spread * rng.standard_normal((n, d - 1))
    if random_labels:
        labels = rng.integers(0, k, size=n)
    x = normalize_inputs(raw, last)
    return x, labels.astype(np.int64), separation(x)


def one_hot(labels, k=None):
    """(n,) int labels -> (n, k) float64 one-hot rows."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if k is None else int(k)
    out = np.zeros((labels.shape[0], k))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out
