"""Combinators: build networks from layers (in the spirit of neural-tangents' serial/parallel).

* :class:`Sequential` — f = f_L ∘ … ∘ f_1.
* :class:`Residual`   — x + s · F(x), the skip of Du et al. 2019 Eq. (2)/(3) (s = c_res/(H√m)).
* :class:`Parallel`   — Σ_k w_k f_k(x): K sub-networks on the same input, summed or linearly
  combined with fixed or trained weights (Kohler et al. 2024's f_w = Σ_k w_k⁽ᴸ⁺¹⁾ f_{w,k}).
* :class:`Flatten`, :class:`Reshape` — move between (N, C, H, W) and (N, D).

Containers pass ``forward``, ``backward``, ``gram`` and ``jvp`` through their children; their
parameters are named "<child>.<param>" (children of Sequential are named "0", "1", ... unless
given names).
"""
from __future__ import annotations

import numpy as np

from .. import init as _init
from .._validate import check_dout, check_input
from .base import Layer, as_rng


def _prefixed(children: dict, per_child) -> dict:
    out = {}
    for cname, child in children.items():
        for k, v in per_child(child).items():
            out[f"{cname}.{k}"] = v
    return out


def _split_dparams(dparams: dict, cname: str) -> dict:
    p = cname + "."
    return {k[len(p):]: v for k, v in dparams.items() if k.startswith(p)}


class Sequential(Layer):
    """f(x) = f_L(… f_1(x)). Layers given positionally are named "0", "1", …; pass a dict
    (name -> layer) to name them.

    Shapes: whatever the first layer takes -> whatever the last returns.
    """

    def __init__(self, *layers, name=None):
        super().__init__(name)
        if len(layers) == 1 and isinstance(layers[0], dict):
            named = dict(layers[0])
        else:
            named = {str(i): l for i, l in enumerate(layers)}
        if not named:
            raise ValueError(f"{self.name}: needs at least one layer")
        for k, l in named.items():
            if not isinstance(l, Layer):
                raise TypeError(f"{self.name}: element {k!r} is a {type(l).__name__}, not a refnets Layer")
        self.layers = named

    def children(self):
        return self.layers

    def __getitem__(self, key):
        if isinstance(key, int):
            return list(self.layers.values())[key]
        return self.layers[key]

    def __len__(self):
        return len(self.layers)

    def check_input(self, x):
        check_input(self.name, x)  # children check the details

    def _forward(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x, True

    def backward(self, dout):
        self._need_forward()
        check_dout(self.name, dout, self._out_shape, self._out_dtype)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        self._dout = True
        return dout

    def gram(self):
        return _prefixed(self.layers, lambda c: c.gram())

    def jvp(self, dx, dparams=None):
        self._need_forward("jvp")
        dparams = dparams or {}
        t = dx
        for cname, layer in self.layers.items():
            t = layer.jvp(t, _split_dparams(dparams, cname))
        return t

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.layers.items())


class Residual(Layer):
    """out = x + s · F(x) (Du et al. 2019, Eq. (2): s = c_res/(H√m); Allen-Zhu et al.: s = τ).

    The branch F must map its input to the same shape. ``scale`` s is fixed, not trained.
    Backward: dx = dout + s · F′(x)ᵀ dout.
    """

    def __init__(self, branch: Layer, scale=1.0, name=None):
        super().__init__(name)
        if not isinstance(branch, Layer):
            raise TypeError(f"{self.name}: branch must be a refnets Layer, got {type(branch).__name__}")
        self.branch = branch
        self.scale = float(scale)

    def children(self):
        return {"branch": self.branch}

    def check_input(self, x):
        check_input(self.name, x)

    def _forward(self, x):
        fx = self.branch.forward(x)
        if fx.shape != x.shape:
            raise ValueError(f"{self.name}: the branch maps shape {x.shape} to {fx.shape}; "
                             f"a residual block needs the same shape")
        out = self.scale * fx              # a new array: x is added in place, no second temporary
        out += x
        return out, True

    def backward(self, dout):
        self._need_forward()
        check_dout(self.name, dout, self._out_shape, self._out_dtype)
        dx = dout + self.branch.backward(self.scale * dout)
        self._dout = True
        return dx

    def gram(self):
        return _prefixed(self.children(), lambda c: c.gram())

    def jvp(self, dx, dparams=None):
        self._need_forward("jvp")
        t = self.branch.jvp(dx, _split_dparams(dparams or {}, "branch"))
        return t * self.scale if dx is None else dx + self.scale * t

    def extra_repr(self):
        return f"{self.branch!r}, scale={self.scale:g}"


class Parallel(Layer):
    """out = Σ_k w_k f_k(x): K branches on the same input, combined linearly.

    Parameters
    ----------
    branches : Layers with equal output shapes.
    weights : None (plain sum, w_k = 1), an array of K fixed weights, or "learned"
        (a trained parameter "w" of shape (K,), initialised by ``init``; Kohler et al. 2024 use
        zeros: ``init=refnets.init.zeros()``).

    Shapes: x -> out of the branches' common shape; w (K,).
    For the K_n networks of Kohler et al. prefer one grouped convolution (one kernel call per
    layer); this container is the readable, general form.
    """

    def __init__(self, *branches, weights=None, init=None, rng=None, dtype=np.float64, name=None):
        super().__init__(name, None)
        if len(branches) == 1 and isinstance(branches[0], (list, tuple)):
            branches = tuple(branches[0])
        if not branches:
            raise ValueError(f"{self.name}: needs at least one branch")
        self.branches = {str(i): b for i, b in enumerate(branches)}
        K = len(branches)
        self.learned = isinstance(weights, str)
        if self.learned:
            if weights != "learned":
                raise ValueError(f"{self.name}: weights must be None, an array or 'learned', got {weights!r}")
            self.params["w"] = (init or _init.normal(1.0))(as_rng(rng), (K,), np.dtype(dtype))
            self.dtype = np.dtype(dtype)
            self.fixed = None
        else:
            self.fixed = np.ones(K) if weights is None else np.asarray(weights, dtype=float)
            if self.fixed.shape != (K,):
                raise ValueError(f"{self.name}: weights must have shape ({K},), got {self.fixed.shape}")

    def children(self):
        return self.branches

    def _w(self):
        return self.params["w"] if self.learned else self.fixed

    def check_input(self, x):
        check_input(self.name, x, dtype=self.dtype)

    def _forward(self, x):
        outs = [b.forward(x) for b in self.branches.values()]
        shapes = {o.shape for o in outs}
        if len(shapes) != 1:
            raise ValueError(f"{self.name}: branches return different shapes {sorted(shapes)}")
        w = self._w()
        out = sum(w[k] * o for k, o in enumerate(outs))
        return out.astype(x.dtype, copy=False), outs

    def _backward(self, dout, outs):
        w = self._w()
        dx = None
        for k, b in enumerate(self.branches.values()):
            # fixed weights are float64: keep dout's dtype (float32 branches refuse float64)
            d = b.backward((w[k] * dout).astype(dout.dtype, copy=False))
            dx = d if dx is None else dx + d
        grads = {}
        if self.learned:
            grads["w"] = np.array([np.sum(dout * o) for o in outs], dtype=dout.dtype)
        return dx, grads

    def gram(self):
        g = _prefixed(self.branches, lambda c: c.gram())
        if self.learned:
            self._need_forward("gram")
            # ∂u_i/∂w_k = ⟨Δ_i, f_k(x_i)⟩, so G^w = F Fᵀ with F_ik = ⟨Δ_i, f_k(x_i)⟩.
            n = self._dout.shape[0]
            F = np.stack([(self._dout * o).reshape(n, -1).sum(1) for o in self.cache], axis=1)
            g["w"] = F @ F.T
        return g

    def jvp(self, dx, dparams=None):
        self._need_forward("jvp")
        dparams = dparams or {}
        w = self._w()
        t = 0.0
        for k, (cname, b) in enumerate(self.branches.items()):
            t = t + w[k] * b.jvp(dx, _split_dparams(dparams, cname))
            if self.learned and "w" in dparams:
                t = t + dparams["w"][k] * self.cache[k]
        return t

    def extra_repr(self):
        return f"K={len(self.branches)}, weights={'learned' if self.learned else 'fixed'}"


class Flatten(Layer):
    """(N, d1, d2, …) -> (N, d1·d2·…), C order. Backward reshapes back."""

    def _forward(self, x):
        return x.reshape(x.shape[0], -1), x.shape

    def _backward(self, dout, shape):
        return dout.reshape(shape), {}

    def _jvp(self, dx, dparams, shape):
        return None if dx is None else dx.reshape(dx.shape[0], -1)

    def check_input(self, x):
        check_input(self.name, x)
        if x.ndim < 1:
            raise ValueError(f"{self.name}: input must have a batch axis, got a scalar")


class Reshape(Layer):
    """(N, …) -> (N, *shape), C order; ``shape`` excludes the batch axis."""

    def __init__(self, shape, name=None):
        super().__init__(name)
        self.shape = tuple(int(s) for s in shape)

    def check_input(self, x):
        check_input(self.name, x)
        if x.ndim < 1 or int(np.prod(x.shape[1:])) != int(np.prod(self.shape)):
            raise ValueError(f"{self.name}: cannot reshape input of shape {x.shape} to (N, *{self.shape})")

    def _forward(self, x):
        return x.reshape((x.shape[0],) + self.shape), x.shape

    def _backward(self, dout, shape):
        return dout.reshape(shape), {}

    def _jvp(self, dx, dparams, shape):
        return None if dx is None else dx.reshape((dx.shape[0],) + self.shape)

    def extra_repr(self):
        return f"{self.shape}"
