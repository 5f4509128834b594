"""Optimizers that update a model's parameters in place: GD (and SGD: the same rule on a
minibatch gradient) and Adam.

Parameters are chosen by name with fnmatch patterns, so layerwise training (Brutzkus &
Globerson's LW_CNN: first W with a frozen, then a) and "train only W_ℓ" (Allen-Zhu et al.)
are one argument: ``GD(model, lr, trainable=["*.W"])`` or ``frozen=["a"]``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .layers.base import select

# From this many elements a GD update runs in _axpy (one pass); below, NumPy (no call overhead).
AXPY_MIN_SIZE = 4096


@njit(cache=True)
def _axpy(p, a, g):
    """p ← p + a·g over two flat arrays of one size and dtype: one pass, no (P,) temporary.

    No fastmath: the product and the sum are rounded separately, as in NumPy's ``p -= lr * g``, so
    both give the same bits."""
    for i in range(p.size):
        p[i] += a * g[i]


class Optimizer:
    """Base: ``step(grads=None)`` applies one update from ``grads`` (default ``model.gradients()``)."""

    def __init__(self, model, lr, trainable=None, frozen=()):
        self.model = model
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"{type(self).__name__}: lr must be a positive finite number, got {lr}")
        self.lr = float(lr)
        params = model.parameters()
        names = list(params) if trainable is None else select(params, trainable)
        if frozen:
            names = [n for n in names if n not in set(select(params, frozen))]
        if not names:
            raise ValueError(f"{type(self).__name__}: no parameter is trainable "
                             f"(trainable={trainable}, frozen={frozen}); have {sorted(params)}")
        self.names = names
        self.params = {n: params[n] for n in names}

    def step(self, grads: dict | None = None) -> None:
        grads = self.model.gradients() if grads is None else grads
        for n in self.names:
            if n not in grads:
                raise KeyError(f"{type(self).__name__}: no gradient for {n!r}; run backward first")
            self._update(n, self.params[n], grads[n])

    def _update(self, name, p, g):
        raise NotImplementedError


class GD(Optimizer):
    """θ ← θ − η ∇L(θ). With full-batch gradients this is the papers' gradient descent; with
    minibatch gradients it is SGD (the trainer scales a summed loss by n/b, Allen-Zhu et al.)."""

    def _update(self, name, p, g):
        if (p.size >= AXPY_MIN_SIZE and p.dtype == g.dtype and p.shape == g.shape
                and p.flags.c_contiguous and g.flags.c_contiguous):
            _axpy(p.reshape(-1), p.dtype.type(-self.lr), g.reshape(-1))   # −lr in p's dtype, as NumPy would
        else:
            p -= self.lr * g


SGD = GD


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; Brutzkus & Globerson's experiments train
    ConvPool end to end with it."""

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, trainable=None, frozen=()):
        super().__init__(model, lr, trainable, frozen)
        self.b1, self.b2 = betas
        self.eps = eps
        self.t = 0
        self.m = {n: np.zeros_like(p) for n, p in self.params.items()}
        self.v = {n: np.zeros_like(p) for n, p in self.params.items()}

    def step(self, grads=None):
        self.t += 1
        super().step(grads)

    def _update(self, name, p, g):
        m, v = self.m[name], self.v[name]
        m *= self.b1
        m += (1 - self.b1) * g
        v *= self.b2
        v += (1 - self.b2) * g * g
        mhat = m / (1 - self.b1 ** self.t)
        vhat = v / (1 - self.b2 ** self.t)
        p -= self.lr * mhat / (np.sqrt(vhat) + self.eps)
