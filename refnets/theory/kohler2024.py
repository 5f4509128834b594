"""The quantities of Kohler, Krzyżak & Walter (2024), Theorem 1 (arXiv 2405.07619), as functions.

With a known posterior η(x) = P(Y = 1 | X = x) (the average-pooling model of
:mod:`refnets.data.avgpool_images` gives it exactly for every image), the risks of a classifier f
are conditional expectations over X, so on a test sample X₁..X_N they are exact sample means of
known functions — no label noise enters:

* Bayes risk        R* = E min(η(X), 1 − η(X))                         (f* = 1{η ≥ ½})
* risk of f         R(f) = E[η(X) 1{f(X) = 0} + (1 − η(X)) 1{f(X) = 1}]
* excess risk       R(f) − R* = E[|2η(X) − 1| · 1{f(X) ≠ f*(X)}]
* L2 error          ∫ |η̂ − η|² dP_X ≈ (1/N) Σᵢ (η̂(Xᵢ) − η(Xᵢ))²

Theorem 1: E∫|η̂_n − η|² dP_X ≤ c₇ n^{−1/(κ²+1)+ε} and, by the plug-in inequality
R(1{η̂ ≥ ½}) − R* ≤ 2 (∫|η̂ − η|² dP_X)^{1/2}, the excess risk is ≤ c₆ n^{−1/(2κ²+2)+ε}. Both
exponents depend on κ (the side of the subimages), not on the image size d₁×d₂: dimension
reduction. Stone's minimax exponent for a (p, C)-smooth function of d variables is −2p/(2p+d);
with p = ½ and d = κ² it equals −1/(κ²+1).
"""
from __future__ import annotations

import numpy as np


def _eta(eta):
    eta = np.asarray(eta, dtype=np.float64)
    if eta.ndim != 1:
        raise ValueError(f"eta must be a 1-D array (N,), got shape {eta.shape}")
    if np.any(eta < 0) or np.any(eta > 1):
        raise ValueError("eta must lie in [0, 1]")
    return eta


def _labels(pred, n):
    pred = np.asarray(pred)
    if pred.shape != (n,):
        raise ValueError(f"predictions must have shape ({n},), got {pred.shape}")
    if not np.all((pred == 0) | (pred == 1)):
        raise ValueError("predictions must be 0 or 1")
    return pred.astype(bool)


def bayes_classifier(eta) -> np.ndarray:
    """f*(x) = 1{η(x) ≥ ½}, (N,) int."""
    return (_eta(eta) >= 0.5).astype(np.int64)


def bayes_risk(eta) -> float:
    """R* = (1/N) Σᵢ min(η(Xᵢ), 1 − η(Xᵢ)) on a test sample; eta (N,)."""
    eta = _eta(eta)
    return float(np.mean(np.minimum(eta, 1.0 - eta)))


def risk(pred, eta) -> float:
    """R(f) = (1/N) Σᵢ [η(Xᵢ) 1{f(Xᵢ) = 0} + (1 − η(Xᵢ)) 1{f(Xᵢ) = 1}]; pred (N,) in {0, 1}, eta (N,)."""
    eta = _eta(eta)
    p = _labels(pred, eta.size)
    return float(np.mean(np.where(p, 1.0 - eta, eta)))


def excess_risk(pred, eta) -> float:
    """R(f) − R* = (1/N) Σᵢ |2η(Xᵢ) − 1| 1{f(Xᵢ) ≠ f*(Xᵢ)} ≥ 0 (exact given η; ties η = ½ cost 0)."""
    eta = _eta(eta)
    p = _labels(pred, eta.size)
    return float(np.mean(np.abs(2.0 * eta - 1.0) * (p != (eta >= 0.5))))


def l2_error(eta_hat, eta) -> float:
    """∫|η̂ − η|² dP_X estimated by (1/N) Σᵢ (η̂(Xᵢ) − η(Xᵢ))² on a test sample; both (N,)."""
    eta = _eta(eta)
    eta_hat = np.asarray(eta_hat, dtype=np.float64)
    if eta_hat.shape != eta.shape:
        raise ValueError(f"eta_hat must have shape {eta.shape}, got {eta_hat.shape}")
    return float(np.mean((eta_hat - eta) ** 2))


def plugin_bound(l2) -> float:
    """The plug-in inequality's bound on the excess risk of 1{η̂ ≥ ½}: 2 (∫|η̂ − η|² dP_X)^{1/2}."""
    return 2.0 * float(np.sqrt(l2))


def l2_rate_exponent(kappa, eps=0.0) -> float:
    """Theorem 1: E∫|η̂_n − η|² ≤ c₇ n^{e} with e = −1/(κ² + 1) + ε."""
    return -1.0 / (kappa * kappa + 1.0) + eps


def excess_rate_exponent(kappa, eps=0.0) -> float:
    """Theorem 1: excess misclassification risk ≤ c₆ n^{e} with e = −1/(2κ² + 2) + ε."""
    return -1.0 / (2.0 * kappa * kappa + 2.0) + eps


def stone_exponent(p, d) -> float:
    """Stone (1982): the minimax exponent −2p/(2p + d) of the L2 error for (p, C)-smooth functions of d variables."""
    return -2.0 * p / (2.0 * p + d)
