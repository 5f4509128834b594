"""Elementwise activations: σ, σ′ and σ″, each stable over the whole float range.

Each activation is a layer (forward caches its input z; backward returns dout · σ′(z)) and also
a plain description of σ that the theory uses: ``act.fn(z)``, ``act.deriv(z)``,
``act.second_deriv(z)`` are vectorised NumPy functions (c_σ, Gaussian expectations and the
limit kernels of Du et al. 2019 call them).

Kinks follow PyTorch, so the cross-checks agree bit for bit in meaning:
ReLU′(0) = 0, LeakyReLU′(0) = α.
"""
from __future__ import annotations

import numpy as np

from ..kernels.activation_numba import logistic_inplace, softplus_and_logistic, softplus_inplace
from .base import Layer


def activation_forward(z, fn):
    """out = σ(z); cache = (z, fn owner, None). Shapes: z (any) -> out (same).

    (An activation that gets σ′(z) for free with σ(z) caches (None, owner, σ′(z)) instead: Softplus.)"""
    return fn.fn(z), (z, fn, None)


def _deriv(cache):
    """σ′(z) of the cached forward, and whether it is a new array (not the cache's own)."""
    z, act, d = cache
    return (act.deriv(z), True) if d is None else (d, False)


def activation_backward(dout, cache):
    """dz = dout ⊙ σ′(z)."""
    d, new = _deriv(cache)
    if new and d.shape == dout.shape and d.dtype == np.result_type(d, dout):
        d *= dout                                   # σ′(z) is a new array: no second one
        return d
    return dout * d


class Activation(Layer):
    """Base of the elementwise activations; any input shape, float32 or float64.

    Subclasses define ``fn``, ``deriv`` and ``second_deriv`` (vectorised, stable) and
    ``kinks``: the points where σ is not differentiable (gradcheck reports a finite-difference
    step that straddles one as KINK instead of a failure).
    """

    kinks: tuple = ()
    smooth = True

    def fn(self, z):
        raise NotImplementedError

    def deriv(self, z):
        raise NotImplementedError

    def second_deriv(self, z):
        raise NotImplementedError(f"{self.name} has no second derivative")

    def _forward(self, z):
        return activation_forward(z, self)

    def _backward(self, dout, cache):
        return activation_backward(dout, cache), {}

    def _jvp(self, dx, dparams, cache):
        d, _ = _deriv(cache)
        return np.zeros_like(d) if dx is None else dx * d


class Identity(Activation):
    """σ(z) = z."""

    def fn(self, z):
        return z.copy()

    def deriv(self, z):
        return np.ones_like(z)

    def second_deriv(self, z):
        return np.zeros_like(z)


class ReLU(Activation):
    """σ(z) = max(z, 0); σ′(z) = 1{z > 0} (σ′(0) = 0, as PyTorch); σ″ = 0 away from 0."""

    kinks = (0.0,)
    smooth = False

    def fn(self, z):
        return np.maximum(z, 0)

    def deriv(self, z):
        return (z > 0).astype(z.dtype)

    def second_deriv(self, z):
        return np.zeros_like(z)


class LeakyReLU(Activation):
    """ψ(z) = max(αz, z) for 0 ≤ α < 1 (Brutzkus & Globerson 2021, MLP baseline); ψ′(0) = α."""

    kinks = (0.0,)
    smooth = False

    def __init__(self, alpha=0.01, name=None):
        super().__init__(name)
        if not (0.0 <= alpha < 1.0):
            raise ValueError(f"{self.name}: alpha must be in [0, 1), got {alpha}")
        self.alpha = float(alpha)

    def fn(self, z):
        return np.where(z > 0, z, self.alpha * z)

    def deriv(self, z):
        return np.where(z > 0, 1.0, self.alpha).astype(z.dtype)

    def second_deriv(self, z):
        return np.zeros_like(z)

    def extra_repr(self):
        return f"alpha={self.alpha:g}"


# From this many elements on, the logistic σ and softplus run in the Numba kernels
# (kernels/activation_numba.py, ≤ 4e-15 and ≤ 1e-15 relative, ~4× NumPy on one thread); below, NumPy's
# ufuncs: the theory calls them on scalars and short grids.
KERNEL_MIN_SIZE = 4096


def _takes_kernel(z):
    """Whether σ or softplus of z runs in the Numba kernel (into a new array, z stays cached);
    on all threads or the calling one: :func:`_parallel_ok`."""
    return z.size >= KERNEL_MIN_SIZE and z.dtype in (np.float32, np.float64)


PARALLEL_MIN_NDIM = 3


def _parallel_ok(z):
    """Whether the kernel may run on all threads: for feature maps (ndim ≥ PARALLEL_MIN_NDIM).

    A Numba parallel region leaves its OpenMP workers spinning for a few ms. Feature maps sit
    between refnets' Numba convolution kernels, which put those workers straight back to work; an
    (N, features) matrix sits between dense layers' OpenBLAS products, which would share the cores
    with them (a GD step of Du's ResNet took 1.6× longer with parallel kernels, A/B in one process)."""
    return z.ndim >= PARALLEL_MIN_NDIM


def _kernel(inplace, z):
    """A new array: the kernel from z into it (C-contiguous z), or on a C-ordered copy of z."""
    if z.flags.c_contiguous:
        return inplace(z, parallel=_parallel_ok(z), out=np.empty(z.shape, dtype=z.dtype))
    return inplace(np.array(z, order="C"), parallel=_parallel_ok(z))


def logistic(z):
    """1/(1+e^{−z}) without overflow: e^{−|z|} never exceeds 1. Exact to rounding (NumPy) for small arrays,
    ≤ 4e-15 relative (the Numba kernel) from KERNEL_MIN_SIZE float elements on."""
    z = np.asarray(z)
    if _takes_kernel(z):
        return _kernel(logistic_inplace, z)
    with np.errstate(under="ignore"):  # e^{-|z|} underflowing to 0 is the exact limit
        e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def softplus(z):
    """log(1+e^z) = max(z, 0) + log1p(e^{−|z|}), stable for any z. Exact to rounding (NumPy) for small
    arrays, ≤ 1e-15 relative (the Numba kernel) from KERNEL_MIN_SIZE float elements on."""
    z = np.asarray(z)
    if _takes_kernel(z):
        return _kernel(softplus_inplace, z)
    with np.errstate(under="ignore"):
        return (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))).astype(z.dtype, copy=False)


def log1pexp_neg(z):
    """ℓ(z) = log(1+e^{−z}) = softplus(−z), the logistic loss (Brutzkus & Globerson 2021)."""
    return softplus(-z)


class Logistic(Activation):
    """The logistic squasher σ(z) = 1/(1+e^{−z}) (Kohler et al. 2024).

    σ′ = σ(z)σ(−z) (accurate in both tails, unlike σ(1−σ)); σ″ = σ′ (σ(−z) − σ(z)).
    """

    def fn(self, z):
        return logistic(z)

    def deriv(self, z):
        return logistic(z) * logistic(-z)

    def second_deriv(self, z):
        # σ(−z) − σ(z) = tanh(−z/2): the difference of two numbers near ½ would cancel for small z.
        s, t = logistic(z), logistic(-z)
        return s * t * np.tanh(-0.5 * z)


class Softplus(Activation):
    """σ(z) = log(1+e^z), Du et al. 2019's smooth activation; σ′ = logistic, σ″ = logistic′.

    On arrays that take the kernels the forward computes σ′(z) with σ(z), from the same e^{−|z|}
    (:func:`refnets.kernels.activation_numba.softplus_and_logistic`, the same bits as ``deriv``), and
    caches it in place of z: the backward is one product (a GD step of Du's ResNet: 2 % faster, A/B).
    """

    def _forward(self, z):
        if _takes_kernel(z):
            out, d = softplus_and_logistic(z, parallel=_parallel_ok(z))
            return out, (None, self, d)
        return activation_forward(z, self)

    def fn(self, z):
        return softplus(z)

    def deriv(self, z):
        return logistic(z)

    def second_deriv(self, z):
        return logistic(z) * logistic(-z)


def sech2(z):
    """sech² z = 1 − tanh² z = 4e^{−2|z|}/(1+e^{−2|z|})², accurate in the tails where 1 − tanh² cancels."""
    with np.errstate(under="ignore"):
        e = np.exp(-2.0 * np.abs(z))
        return (4.0 * e / (1.0 + e) ** 2).astype(z.dtype, copy=False)


class Tanh(Activation):
    """σ(z) = tanh z; σ′ = sech² z; σ″ = −2 tanh z · sech² z."""

    def fn(self, z):
        return np.tanh(z)

    def deriv(self, z):
        return sech2(z)

    def second_deriv(self, z):
        return -2.0 * np.tanh(z) * sech2(z)


ACTIVATIONS = {
    "identity": Identity, "relu": ReLU, "leaky_relu": LeakyReLU,
    "logistic": Logistic, "softplus": Softplus, "tanh": Tanh,
}


def get_activation(name_or_act) -> Activation:
    """An Activation from a name ("softplus", "relu", ...) or an instance (returned as is)."""
    if isinstance(name_or_act, Activation):
        return name_or_act
    try:
        return ACTIVATIONS[str(name_or_act).lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {name_or_act!r}; choose from {sorted(ACTIVATIONS)}") from None
