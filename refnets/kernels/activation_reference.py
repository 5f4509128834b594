"""Plain NumPy reference kernels of the logistic squasher σ(z) = 1/(1 + e^{−z}) and its derivative
applied to an upstream gradient, in place (the Numba twins are in :mod:`refnets.kernels.activation_numba`).

Used by the K_n parallel CNNs of Kohler, Krzyżak & Walter (2024) (:mod:`refnets.models.kohler2024`),
where one σ per activation is the costliest elementwise step.
"""
from __future__ import annotations

import numpy as np


def logistic_inplace(z: np.ndarray) -> np.ndarray:
    """z ← σ(z) in place, stable for every z (e^{−|z|} ≤ 1); returns z. Any shape, float32/float64."""
    with np.errstate(under="ignore"):      # e^{−|z|} underflowing to 0 is the exact limit
        e = np.exp(-np.abs(z))
    pos = z >= 0
    np.divide(1.0, 1.0 + e, out=z, where=pos)
    np.divide(e, 1.0 + e, out=z, where=~pos)
    return z


def softplus_inplace(z: np.ndarray) -> np.ndarray:
    """z ← log(1 + e^{z}) = max(z, 0) + log1p(e^{−|z|}) in place, stable for every z; returns z."""
    with np.errstate(under="ignore"):
        e = np.log1p(np.exp(-np.abs(z)))
    np.maximum(z, 0, out=z)
    z += e
    return z


def times_dlogistic_inplace(g: np.ndarray, o: np.ndarray) -> np.ndarray:
    """g ← g · σ'(z) = g · o(1 − o) in place, with o = σ(z) (same shape as g); returns g."""
    g *= o * (1.0 - o)
    return g
