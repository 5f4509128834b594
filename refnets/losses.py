"""Losses, each a pure function ``loss(pred, y) -> (value, dpred)`` and a small class.

| function | value | used by |
|---|---|---|
| :func:`half_squared_sum` | ½ Σᵢ ‖predᵢ − yᵢ‖² | Du et al. 2019 (L(θ)); Allen-Zhu et al. 2019 (F = Σ Fᵢ) |
| :func:`mean_squared` | (1/n) Σᵢ ‖yᵢ − predᵢ‖² | Kohler et al. 2024 (F_n, without the penalty) |
| :func:`logistic_loss` | (1/n) Σᵢ ℓ(yᵢ predᵢ), ℓ(z) = log(1+e^{−z}) | Brutzkus & Globerson 2021 |
| :func:`softmax_cross_entropy` | (1/n) Σᵢ −log softmax(predᵢ)[yᵢ] | Allen-Zhu et al. 2019, classification |

``reduction="sum"`` drops the 1/n of the last two. :class:`L2Penalty` adds c Σ θ² over chosen
parameters (Kohler et al.'s c_n Σ_k (w_k⁽ᴸ⁺¹⁾)²). All are finite for any finite input.
"""
from __future__ import annotations

import numpy as np

from ._validate import check_input
from .layers.activations import logistic, softplus
from .layers.base import select


def _as_2d(where, pred, y):
    check_input(where, pred, name="pred")
    y = np.asarray(y)
    if pred.ndim == 1:
        pred = pred[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if pred.ndim != 2:
        raise ValueError(f"{where}: pred must have shape (N,) or (N, K), got {pred.shape}")
    if y.shape != pred.shape:
        raise ValueError(f"{where}: targets must have the shape of pred {pred.shape}, got {y.shape}")
    return pred, y


def _reduce(where, reduction, n):
    if reduction == "mean":
        return 1.0 / n
    if reduction == "sum":
        return 1.0
    raise ValueError(f"{where}: reduction must be 'mean' or 'sum', got {reduction!r}")


def half_squared_sum(pred, y):
    """L = ½ Σᵢ ‖predᵢ − yᵢ‖²; dL/dpred = pred − y.

    Shapes: pred (N,) or (N, K); y the same. Returns (float, dpred of pred's shape).
    """
    p2, y2 = _as_2d("half_squared_sum", pred, y)
    r = p2 - y2
    return 0.5 * float(np.sum(r * r)), r.reshape(pred.shape).astype(pred.dtype, copy=False)


def mean_squared(pred, y):
    """L = (1/n) Σᵢ ‖yᵢ − predᵢ‖²; dL/dpred = (2/n)(pred − y). Kohler et al. 2024, F_n."""
    p2, y2 = _as_2d("mean_squared", pred, y)
    r = p2 - y2
    n = p2.shape[0]
    return float(np.sum(r * r)) / n, (2.0 / n * r).reshape(pred.shape).astype(pred.dtype, copy=False)


def logistic_loss(pred, y, reduction="mean"):
    """L = (1/n) Σᵢ log(1 + e^{−yᵢ predᵢ}) for labels yᵢ ∈ {−1, +1} (Brutzkus & Globerson 2021, Sec. 3).

    Stable for any margin: ℓ(z) = softplus(−z); dℓ/dz = −σ(−z) with σ the logistic function.
    Shapes: pred (N,) or (N, 1); y (N,) of ±1.
    """
    p2, y2 = _as_2d("logistic_loss", pred, y)
    if p2.shape[1] != 1:
        raise ValueError(f"logistic_loss: pred must be one score per sample, got shape {pred.shape}")
    if not np.all(np.abs(y2) == 1):
        raise ValueError(f"logistic_loss: labels must be -1 or +1, got values {np.unique(y2)[:5]}")
    y2 = y2.astype(p2.dtype)
    z = y2 * p2
    c = _reduce("logistic_loss", reduction, p2.shape[0])
    value = c * float(np.sum(softplus(-z)))
    d = c * (-y2 * logistic(-z))
    return value, d.reshape(pred.shape)


def softmax_cross_entropy(logits, labels, reduction="mean"):
    """L = (1/n) Σᵢ [logsumexp(logitsᵢ) − logitsᵢ[yᵢ]]; dL/dlogits = (softmax − onehot)/n.

    Shapes: logits (N, K); labels (N,) integers in [0, K). Stable: logits are shifted by their max.
    """
    check_input("softmax_cross_entropy", logits, ndim=2, layout="(N, classes)", name="logits")
    labels = np.asarray(labels)
    n, k = logits.shape
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"softmax_cross_entropy: labels must be ({n},) integers, got {labels.shape} {labels.dtype}")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= k:
        raise ValueError(f"softmax_cross_entropy: labels must lie in [0, {k}), got range "
                         f"[{labels.min()}, {labels.max()}]")
    # With m the row max (first argmax j*), Lᵢ = (m − zᵢ[yᵢ]) + log1p(Σ_{j≠j*} e^{z_j − m}): two
    # nonnegative terms, so Lᵢ keeps full relative accuracy even when it is tiny (a confident right
    # answer: log(1 + 1e-20) would round to 0). Likewise ∂L/∂zᵢ[yᵢ] = pᵢ[yᵢ] − 1 is taken as
    # −Σ_{j≠yᵢ} pᵢ[j], which does not cancel.
    rows = np.arange(n)
    top = np.argmax(logits, axis=1)
    z = logits - logits[rows, top][:, None]
    with np.errstate(under="ignore"):  # e^{z} underflowing to 0 is the exact limit
        e = np.exp(z)
    e[rows, top] = 0.0
    s = np.sum(e, axis=1)
    c = _reduce("softmax_cross_entropy", reduction, n)
    value = c * float(np.sum(-z[rows, labels] + np.log1p(s)))
    p = e / (1.0 + s)[:, None]
    p[rows, top] = 1.0 / (1.0 + s)
    p[rows, labels] = 0.0
    p[rows, labels] = -np.sum(p, axis=1)
    return value, (c * p).astype(logits.dtype, copy=False)


class Loss:
    """A loss as an object: ``value = loss.forward(pred, y)``, then ``dpred = loss.backward()``."""

    fn = None
    reduction = "sum"

    def __init__(self, reduction=None):
        if reduction is not None:
            self.reduction = reduction
        self._d = None

    def _call(self, pred, y):
        return type(self).fn(pred, y)

    def forward(self, pred, y) -> float:
        value, self._d = self._call(pred, y)
        return value

    __call__ = forward

    def backward(self) -> np.ndarray:
        if self._d is None:
            raise RuntimeError(f"{type(self).__name__}: backward called before forward")
        return self._d


class HalfSquaredSum(Loss):
    fn = staticmethod(half_squared_sum)


class MeanSquared(Loss):
    fn = staticmethod(mean_squared)
    reduction = "mean"


class LogisticLoss(Loss):
    reduction = "mean"

    def _call(self, pred, y):
        return logistic_loss(pred, y, self.reduction)


class SoftmaxCrossEntropy(Loss):
    reduction = "mean"

    def _call(self, pred, y):
        return softmax_cross_entropy(pred, y, self.reduction)


class L2Penalty:
    """R(θ) = c Σ_{p ∈ chosen} ‖p‖²; ∇R = 2c p. ``patterns`` are fnmatch patterns on parameter
    names (see :meth:`refnets.layers.Layer.parameters`), e.g. Kohler et al.'s output weights."""

    def __init__(self, patterns, c):
        self.patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        self.c = float(c)

    def names(self, params: dict) -> list[str]:
        names = select(params, self.patterns)
        if not names:
            raise ValueError(f"L2Penalty: no parameter matches {self.patterns}; have {sorted(params)}")
        return names

    def value(self, params: dict) -> float:
        return self.c * float(sum(np.sum(params[k] ** 2) for k in self.names(params)))

    def grads(self, params: dict) -> dict:
        return {k: 2.0 * self.c * params[k] for k in self.names(params)}
