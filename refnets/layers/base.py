"""The layer protocol every refnets building block follows.

A layer is a pair of pure functions, ``<name>_forward(x, ...) -> (out, cache)`` and
``<name>_backward(dout, cache) -> (dx, grads)``, wrapped in a small class that holds the
parameters, keeps the cache of the last forward, and checks every array that comes in.
The pure functions carry the mathematics (read them to learn the layer); the class does
the bookkeeping (use it to build networks).

Conventions
-----------
* Arrays are NCHW for images, (N, C, L) for sequences, (N, D) for vectors; float64 by default.
* ``layer.params`` maps a parameter name ("W", "b", ...) to its array. Optimizers update
  these arrays **in place**, so references stay valid.
* ``layer.backward(dout)`` **overwrites** ``layer.grads``; gradients never accumulate across
  calls (the trap micrograd users fall into).
* ``layer.gram()``, after a backward whose ``dout`` holds, for each sample i, the sensitivity
  ∂u_i/∂out_i of a scalar per-sample output u_i, returns each parameter's exact share of the
  empirical neural tangent kernel, G_ij = ⟨∂u_i/∂θ, ∂u_j/∂θ⟩ (Du et al. 2019, Sec. 4), as an
  (N, N) array per parameter name. Because samples never interact inside a refnets network,
  one backward with ``dout = ones`` at the output yields every sample's sensitivities at once.
* ``layer.jvp(dx, dparams)`` is forward mode: the directional derivative of the output of
  the last forward in the direction (dx, dparams). Used by linearised models (Allen-Zhu et al.).
"""
from __future__ import annotations

import fnmatch
from contextlib import contextmanager

import numpy as np

from .._validate import check_dout, check_input


def as_rng(rng) -> np.random.Generator:
    """``None`` -> ``default_rng(0)`` (same seed, same bits), int -> a new Generator, Generator -> itself."""
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


_PARAM_GRADS = [True]


@contextmanager
def sensitivities_only():
    """Inside the block, backward computes dx (the sensitivities ∂u/∂(layer input)) but no parameter
    gradients: Dense, Conv2d and Conv1d skip dW and db and leave ``grads`` empty, and the models
    that rename their sub-layers' gradients (Allen-Zhu's networks, ConvPool) leave theirs empty too.
    Models with a hand-written whole-model backward (the Kohler CNN) still compute them.

    What :func:`refnets.ntk.empirical_ntk` needs: each layer's Gram share is built from its cache and
    the dout it received, so the gradients (as large as θ, the dominant memory of a wide network)
    are never formed, and a convolution skips its dW pass.
    """
    _PARAM_GRADS.append(False)
    try:
        yield
    finally:
        _PARAM_GRADS.pop()


def param_grads_enabled() -> bool:
    """False inside :func:`sensitivities_only`."""
    return _PARAM_GRADS[-1]


def weight_grads(dW, db) -> dict:
    """A weight layer's gradients under its parameter names: {"W": dW}, plus "b": db when it has a bias."""
    if dW is None:                          # inside sensitivities_only()
        return {}
    return {"W": dW} if db is None else {"W": dW, "b": db}


class Layer:
    """Base class. Subclasses implement ``_forward``/``_backward`` (and ``_gram``, ``_jvp``).

    Class attributes
    ----------------
    ndim : int or None
        Expected input ndim; None accepts any.
    layout : str
        How the input axes read, for error messages, e.g. "(N, C, H, W)".
    """

    ndim: int | None = None
    layout: str = ""

    def __init__(self, name: str | None = None, dtype=None):
        self.name = name or type(self).__name__
        self.dtype = None if dtype is None else np.dtype(dtype)
        if self.dtype is not None and self.dtype.type not in (np.float32, np.float64):
            raise TypeError(f"{self.name}: dtype must be float32 or float64, got {self.dtype}")
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.cache = None
        self._out_shape: tuple | None = None
        self._out_dtype = None
        self._dout: np.ndarray | None = None

    # ------------------------------------------------------------------ checks
    def check_input(self, x) -> None:
        """Type, dtype, ndim, finiteness; subclasses extend with shape checks."""
        check_input(self.name, x, self.ndim, self.layout, self.dtype)

    def _need_forward(self, what: str = "backward") -> None:
        if self.cache is None:
            raise RuntimeError(f"{self.name}: {what} called before forward; call forward(x) first")

    # ------------------------------------------------------------- the pair
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.check_input(x)
        out, cache = self._forward(x)
        self.cache = cache
        self._out_shape = out.shape
        self._out_dtype = out.dtype
        self._dout = None
        return out

    __call__ = forward

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self._need_forward()
        check_dout(self.name, dout, self._out_shape, self._out_dtype)
        dx, grads = self._backward(dout, self.cache)
        self.grads = grads
        self._dout = dout if self.params else None     # only gram() reads it: keep no other layer's alive
        return dx

    def gram(self) -> dict[str, np.ndarray]:
        """Per-parameter (N, N) shares of the empirical NTK from the last forward/backward."""
        if not self.params:
            return {}
        self._need_forward("gram")
        if self._dout is None:
            raise RuntimeError(f"{self.name}: gram called before backward; run backward(dout) first")
        return self._gram(self._dout, self.cache)

    def jvp(self, dx: np.ndarray | None, dparams: dict | None = None) -> np.ndarray:
        """Directional derivative of the last forward's output along (dx, dparams); None means zero."""
        self._need_forward("jvp")
        return self._jvp(dx, dparams or {}, self.cache)

    # ------------------------------------------------------ to be provided
    def _forward(self, x):
        raise NotImplementedError

    def _backward(self, dout, cache):
        raise NotImplementedError

    def _gram(self, dout, cache):
        raise NotImplementedError(f"{self.name} has no Gram contribution")

    def _jvp(self, dx, dparams, cache):
        raise NotImplementedError(f"{self.name} has no jvp")

    # ------------------------------------------------------ tree utilities
    def children(self) -> dict[str, "Layer"]:
        """Sub-layers by name (containers override)."""
        return {}

    def parameters(self) -> dict[str, np.ndarray]:
        """All parameters of this layer and its children, by dotted name ("0.W", "branch.1.b")."""
        out = dict(self.params)
        for cname, child in self.children().items():
            for pname, p in child.parameters().items():
                out[f"{cname}.{pname}"] = p
        return out

    def gradients(self) -> dict[str, np.ndarray]:
        """Gradients of the last backward, named as in :meth:`parameters`."""
        out = dict(self.grads)
        for cname, child in self.children().items():
            for pname, g in child.gradients().items():
                out[f"{cname}.{pname}"] = g
        return out

    def set_parameters(self, values: dict[str, np.ndarray]) -> None:
        """Copy arrays into the named parameters, in place; names and shapes must match."""
        own = self.parameters()
        for k, v in values.items():
            if k not in own:
                raise KeyError(f"{self.name}: no parameter named {k!r}; have {sorted(own)}")
            v = np.asarray(v)
            if v.shape != own[k].shape:
                raise ValueError(f"{self.name}: parameter {k!r} has shape {own[k].shape}, got {v.shape}")
            own[k][...] = v

    def n_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters().values()))

    def __repr__(self) -> str:
        extra = self.extra_repr()
        return f"{type(self).__name__}({extra})" if extra else f"{type(self).__name__}()"

    def extra_repr(self) -> str:
        return ""


def select(names, patterns) -> list[str]:
    """Names matching any of the fnmatch ``patterns`` ("*.W", "blocks.*", "a")."""
    if isinstance(patterns, str):
        patterns = [patterns]
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
