"""Initialization schemes, as callables ``init(rng, shape, dtype) -> ndarray``.

The papers each fix their own initialization; the names here say which:

* :func:`normal` — iid N(0, std²). Du et al. 2019 use std = 1 with an explicit
  √(c_σ/m) multiplier in the layer (the NTK parametrisation); Allen-Zhu et al. 2019 use
  std² = 2/m.
* :func:`uniform` — iid U[−a, a]. Kohler et al. 2024, inner weights and biases.
* :func:`sphere` — each output unit's weight vector uniform on the sphere of radius r
  (Brutzkus & Globerson 2021, ConvPool filters).
* :func:`rademacher` — iid uniform on {±1} (ConvPool's output weights a).
* :func:`zeros` — Kohler et al.'s output weights w⁽ᴸ⁺¹⁾ = 0.
* :func:`lecun_normal` — N(0, 1/fan_in), the default of a plain refnets layer.
"""
from __future__ import annotations

import numpy as np


def _fan_in(shape) -> int:
    return int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])


def normal(std: float = 1.0):
    def init(rng, shape, dtype=np.float64):
        return (std * rng.standard_normal(shape)).astype(dtype, copy=False)
    init.__doc__ = f"N(0, {std}^2)"
    return init


def lecun_normal():
    def init(rng, shape, dtype=np.float64):
        return (rng.standard_normal(shape) / np.sqrt(_fan_in(shape))).astype(dtype, copy=False)
    return init


def uniform(a: float = 1.0):
    def init(rng, shape, dtype=np.float64):
        return rng.uniform(-a, a, size=shape).astype(dtype, copy=False)
    return init


def sphere(radius: float = 1.0):
    """Rows (axis 0 = output units) uniform on the sphere of ``radius`` in R^{fan_in}."""
    def init(rng, shape, dtype=np.float64):
        w = rng.standard_normal(shape).reshape(shape[0], -1)
        w *= radius / np.linalg.norm(w, axis=1, keepdims=True)
        return w.reshape(shape).astype(dtype, copy=False)
    return init


def rademacher():
    def init(rng, shape, dtype=np.float64):
        return rng.choice(np.array([-1.0, 1.0]), size=shape).astype(dtype, copy=False)
    return init


def zeros():
    def init(rng, shape, dtype=np.float64):
        return np.zeros(shape, dtype=dtype)
    return init
