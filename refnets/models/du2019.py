"""The three networks of Du, Lee, Li, Wang, Zhai (2019), "Gradient Descent Finds Global Minima of Deep
Neural Networks" (arXiv 1811.03804), with the paper's exact scalings.

Constructors (every W⁽ʰ⁾ and a drawn iid N(0, 1); no biases; scalar output; float64)::

    FCNet(d, m, H, activation="softplus", rng=None)                      # Eq. (1)
    ResNet(d, m, H, activation="softplus", c_res=0.1, rng=None)          # Eq. (2)
    ConvResNet(d, p, m, H, activation="softplus", c_res=0.1, q=3, rng=None)   # Eq. (3)
    gram(model, X, per_layer=False)     # G(0) = Σ_h G⁽ʰ⁾(0) from the per-layer factorisation

* FC (Eq. 1): x⁽⁰⁾ = x, x⁽ʰ⁾ = √(c_σ/m) σ(W⁽ʰ⁾x⁽ʰ⁻¹⁾) (h = 1..H), f = aᵀx⁽ᴴ⁾; W⁽¹⁾ ∈ ℝ^{m×d}, W⁽ʰ⁾ ∈ ℝ^{m×m}, a ∈ ℝᵐ.
* ResNet (Eq. 2): x⁽¹⁾ = √(c_σ/m) σ(W⁽¹⁾x), x⁽ʰ⁾ = x⁽ʰ⁻¹⁾ + (c_res/(H√m)) σ(W⁽ʰ⁾x⁽ʰ⁻¹⁾) (h = 2..H), f = aᵀx⁽ᴴ⁾.
* Conv ResNet (Eq. 3): x ∈ ℝ^{d×p} (d channels at p positions), x⁽¹⁾ = √(c_σ/m) σ(W⁽¹⁾φ(x)),
  x⁽ʰ⁾ = x⁽ʰ⁻¹⁾ + (c_res/(H√m)) σ(W⁽ʰ⁾φ(x⁽ʰ⁻¹⁾)), f = ⟨a, x⁽ᴴ⁾⟩ = Σ_{r,l} a_{rl} x⁽ᴴ⁾_{rl}, a ∈ ℝ^{m×p}
  (R: the inner-product output). W⁽ʰ⁾φ(·) is :class:`refnets.layers.Conv1d` with kernel q, stride 1,
  "same" zero padding, no bias; W⁽ʰ⁾ as the paper's m×qd matrix is ``W.reshape(m, -1)`` (channel-major
  rows of φ, R: see :func:`refnets.layers.patches1d`).

c_σ = 1/E[σ(z)²] comes from :func:`refnets.theory.gaussian.c_sigma` (softplus by default; tanh, logistic
and ReLU for comparison — ReLU is not analytic, the theorems do not cover it).

Every model is a :class:`refnets.layers.Sequential` of plain refnets layers (Dense, Conv1d, Residual,
activations) plus :class:`Scale`, the fixed multiplier √(c_σ/m) that Eq. (1)–(3) put *after* σ (a Dense
``scale`` would put it before σ). Parameters keep their dotted tree names ("W1.W", "res2.branch.W2.W",
"a.W"); ``model.weight_names`` maps the paper's names "W1", …, "WH", "a" to them and
:meth:`DuNet.weights` returns the arrays under the paper's names. Inputs: (N, d) for FC and ResNet,
(N, d, p) for the conv ResNet; output (N, 1).

G(0) never needs an N×P Jacobian: one forward, one backward with dout = 1 and every layer's ``gram()``
((ΔΔᵀ) ⊙ (XXᵀ) for dense layers, the trace form for convolutions; :mod:`refnets.ntk`).
"""
from __future__ import annotations

import numpy as np

from .. import init as _init
from .._validate import positive_int
from ..layers.activations import get_activation
from ..layers.base import Layer, as_rng
from ..layers.containers import Flatten, Residual, Sequential
from ..layers.conv import Conv1d
from ..layers.dense import Dense
from ..theory.gaussian import c_sigma as _c_sigma


class Scale(Layer):
    """out = s · x, a fixed multiplier (not trained): Du et al.'s √(c_σ/m) after σ in Eq. (1)–(3).

    Shapes: any -> the same. Backward: dx = s · dout; jvp: s · dx.
    """

    def __init__(self, scale, name=None):
        super().__init__(name)
        self.scale = float(scale)

    def _forward(self, x):
        return self.scale * x, True

    def _backward(self, dout, cache):
        return self.scale * dout, {}

    def _jvp(self, dx, dparams, cache):
        return None if dx is None else self.scale * dx

    def extra_repr(self):
        return f"{self.scale:g}"


class DuNet(Sequential):
    """Base of the three networks: a Sequential with the paper's names for its weights.

    Attributes
    ----------
    d, m, H : input dimension (channels for the conv ResNet), width, depth.
    activation : the σ layer class instance used (one per layer in the tree).
    c_sigma : the c_σ used. weight_names : {"W1": "W1.W", …, "a": "a.W"}.
    """

    kind = ""

    def __init__(self, layers: dict, weight_names: dict, d, m, H, activation, c_sigma, name):
        super().__init__(layers, name=name)
        self.weight_names = dict(weight_names)
        self.d, self.m, self.H = d, m, H
        self.activation = activation
        self.c_sigma = c_sigma

    def weights(self) -> dict:
        """{"W1": array, …, "WH": array, "a": array} (the live parameter arrays)."""
        p = self.parameters()
        return {k: p[v] for k, v in self.weight_names.items()}

    def hidden_names(self) -> list:
        return [f"W{h}" for h in range(1, self.H + 1)]


def _setup(where, d, m, H, activation, c_sigma, c_res=None):
    d, m, H = (positive_int(where, k, v) for k, v in (("d", d), ("m", m), ("H", H)))
    act = get_activation(activation)
    cs = _c_sigma(act) if c_sigma is None else float(c_sigma)
    if c_res is not None and not (np.isfinite(c_res) and c_res > 0):
        raise ValueError(f"{where}: c_res must be a positive number (the paper: 0 < c_res < 1), got {c_res}")
    return d, m, H, act, cs


def _new_act(act):
    """A fresh activation layer of the same kind (each position in the tree keeps its own cache)."""
    import copy
    return copy.deepcopy(act)


class FCNet(DuNet):
    """Fully connected network of Du et al. 2019, Eq. (1): x⁽ʰ⁾ = √(c_σ/m) σ(W⁽ʰ⁾x⁽ʰ⁻¹⁾), f = aᵀx⁽ᴴ⁾.

    Parameters
    ----------
    d : input dimension (inputs on the unit sphere). m : width. H : number of layers W⁽¹⁾..W⁽ᴴ⁾.
    activation : name or activation instance (default softplus). c_sigma : override c_σ (default 1/E σ(z)²).
    rng : None (seed 0), int or Generator. dtype : float64 (default) or float32.

    Shapes: x (N, d) -> f (N, 1). W⁽¹⁾ (m, d), W⁽ʰ⁾ (m, m), a (1, m).
    Tree: "W1" Dense, "act1", "scale1" (√(c_σ/m)), …, "a" Dense(m, 1).
    """

    kind = "fc"

    def __init__(self, d, m, H, activation="softplus", c_sigma=None, rng=None, dtype=np.float64, name=None):
        d, m, H, act, cs = _setup("FCNet", d, m, H, activation, c_sigma)
        rng = as_rng(rng)
        s = np.sqrt(cs / m)
        layers, names = {}, {}
        for h in range(1, H + 1):
            layers[f"W{h}"] = Dense(d if h == 1 else m, m, init=_init.normal(1.0), rng=rng, dtype=dtype, name=f"W{h}")
            layers[f"act{h}"] = _new_act(act)
            layers[f"scale{h}"] = Scale(s, name=f"scale{h}")
            names[f"W{h}"] = f"W{h}.W"
        layers["a"] = Dense(m, 1, init=_init.normal(1.0), rng=rng, dtype=dtype, name="a")
        names["a"] = "a.W"
        super().__init__(layers, names, d, m, H, act, cs, name or "FCNet")

    def extra_repr(self):
        return f"d={self.d}, m={self.m}, H={self.H}, activation={type(self.activation).__name__}, c_sigma={self.c_sigma:.6g}"


class ResNet(DuNet):
    """ResNet of Du et al. 2019, Eq. (2): x⁽¹⁾ = √(c_σ/m) σ(W⁽¹⁾x), x⁽ʰ⁾ = x⁽ʰ⁻¹⁾ + (c_res/(H√m)) σ(W⁽ʰ⁾x⁽ʰ⁻¹⁾).

    Parameters as :class:`FCNet`, plus ``c_res`` (0 < c_res < 1 in the paper; default 0.1).
    The skip is at every layer h = 2..H.

    Shapes: x (N, d) -> f (N, 1). W⁽¹⁾ (m, d), W⁽ʰ⁾ (m, m), a (1, m).
    Tree: "W1", "act1", "scale1", "res2" (Residual of Sequential{"W2", "act2"}), …, "a".
    """

    kind = "resnet"

    def __init__(self, d, m, H, activation="softplus", c_res=0.1, c_sigma=None, rng=None, dtype=np.float64,
                 name=None):
        d, m, H, act, cs = _setup("ResNet", d, m, H, activation, c_sigma, c_res)
        self.c_res = float(c_res)
        rng = as_rng(rng)
        layers = {"W1": Dense(d, m, init=_init.normal(1.0), rng=rng, dtype=dtype, name="W1"),
                  "act1": _new_act(act), "scale1": Scale(np.sqrt(cs / m), name="scale1")}
        names = {"W1": "W1.W"}
        for h in range(2, H + 1):
            branch = Sequential({f"W{h}": Dense(m, m, init=_init.normal(1.0), rng=rng, dtype=dtype, name=f"W{h}"),
                                 f"act{h}": _new_act(act)})
            layers[f"res{h}"] = Residual(branch, scale=self.c_res / (H * np.sqrt(m)), name=f"res{h}")
            names[f"W{h}"] = f"res{h}.branch.W{h}.W"
        layers["a"] = Dense(m, 1, init=_init.normal(1.0), rng=rng, dtype=dtype, name="a")
        names["a"] = "a.W"
        super().__init__(layers, names, d, m, H, act, cs, name or "ResNet")

    def extra_repr(self):
        return (f"d={self.d}, m={self.m}, H={self.H}, c_res={self.c_res:g}, "
                f"activation={type(self.activation).__name__}, c_sigma={self.c_sigma:.6g}")


class ConvResNet(DuNet):
    """Convolutional ResNet of Du et al. 2019, Eq. (3), on inputs x ∈ ℝ^{d×p} (‖x‖_F = 1).

    x⁽¹⁾ = √(c_σ/m) σ(W⁽¹⁾φ(x)), x⁽ʰ⁾ = x⁽ʰ⁻¹⁾ + (c_res/(H√m)) σ(W⁽ʰ⁾φ(x⁽ʰ⁻¹⁾)) (h = 2..H),
    f = Σ_{r,l} a_{rl} x⁽ᴴ⁾_{rl}.

    Parameters
    ----------
    d : input channels d₀. p : positions. m : channels. H : depth. q : patch size (odd; the paper's 3).
    activation, c_res, c_sigma, rng, dtype : as :class:`ResNet`.

    Shapes: x (N, d, p) -> f (N, 1). W⁽¹⁾ (m, d, q) (= the paper's m×qd matrix, reshaped), W⁽ʰ⁾ (m, m, q),
    a (1, m·p) (= a ∈ ℝ^{m×p} flattened channel-major: a.reshape(m, p)).
    """

    kind = "conv"

    def __init__(self, d, p, m, H, activation="softplus", c_res=0.1, q=3, c_sigma=None, rng=None,
                 dtype=np.float64, name=None):
        d, m, H, act, cs = _setup("ConvResNet", d, m, H, activation, c_sigma, c_res)
        p, q = positive_int("ConvResNet", "p", p), positive_int("ConvResNet", "q", q)
        if q % 2 == 0:
            raise ValueError(f"ConvResNet: the patch size q must be odd (patches centred on each position), got {q}")
        self.p, self.q, self.c_res = p, q, float(c_res)
        rng = as_rng(rng)

        def conv(cin, h):
            return Conv1d(cin, m, q, padding="same", bias=False, init=_init.normal(1.0), rng=rng, dtype=dtype,
                          name=f"W{h}")

        layers = {"W1": conv(d, 1), "act1": _new_act(act), "scale1": Scale(np.sqrt(cs / m), name="scale1")}
        names = {"W1": "W1.W"}
        for h in range(2, H + 1):
            branch = Sequential({f"W{h}": conv(m, h), f"act{h}": _new_act(act)})
            layers[f"res{h}"] = Residual(branch, scale=self.c_res / (H * np.sqrt(m)), name=f"res{h}")
            names[f"W{h}"] = f"res{h}.branch.W{h}.W"
        layers["flatten"] = Flatten()
        layers["a"] = Dense(m * p, 1, init=_init.normal(1.0), rng=rng, dtype=dtype, name="a")
        names["a"] = "a.W"
        super().__init__(layers, names, d, m, H, act, cs, name or "ConvResNet")

    def extra_repr(self):
        return (f"d={self.d}, p={self.p}, m={self.m}, H={self.H}, q={self.q}, c_res={self.c_res:g}, "
                f"activation={type(self.activation).__name__}, c_sigma={self.c_sigma:.6g}")


def make(kind, d, m, H, p=None, rng=None, **kw) -> DuNet:
    """Build "fc", "resnet" or "conv" (the conv ResNet needs ``p``)."""
    if kind == "fc":
        return FCNet(d, m, H, rng=rng, **kw)
    if kind == "resnet":
        return ResNet(d, m, H, rng=rng, **kw)
    if kind == "conv":
        if p is None:
            raise ValueError("make: the conv ResNet needs p (positions)")
        return ConvResNet(d, p, m, H, rng=rng, **kw)
    raise ValueError(f"make: kind must be 'fc', 'resnet' or 'conv', got {kind!r}")


# ------------------------------------------------------------------------------ Gram
def gram(model: DuNet, X, per_layer=False):
    """G(θ) on X (Du et al. 2019, Sec. 4): G_ij = ⟨∂u_i/∂θ, ∂u_j/∂θ⟩ = Σ_{h=1}^{H+1} G⁽ʰ⁾_ij.

    One forward, one backward with dout = 1, then each layer's exact share (:func:`refnets.ntk.empirical_ntk`);
    no N×P Jacobian is formed.

    Parameters
    ----------
    model : a :class:`DuNet`. X : (N, d) or (N, d, p) inputs.
    per_layer : return {"W1": G⁽¹⁾, …, "WH": G⁽ᴴ⁾, "a": G⁽ᴴ⁺¹⁾} instead of the sum.

    Returns (N, N) or a dict of (N, N).
    """
    from ..ntk import empirical_ntk

    shares = empirical_ntk(model, X, per_layer=True)
    by_name = {k: shares[v] for k, v in model.weight_names.items()}
    return by_name if per_layer else sum(by_name.values())


def unit_inputs(n, d, p=None, rng=None):
    """n inputs on the unit sphere: (n, d) with ‖x_i‖₂ = 1, or (n, d, p) with ‖x_i‖_F = 1 (the papers' assumption)."""
    rng = as_rng(rng)
    shape = (n, d) if p is None else (n, d, p)
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x.reshape(n, -1), axis=1).reshape((n,) + (1,) * (len(shape) - 1))


# ------------------------------------------------------------------------------ gradcheck
def gradcheck_factories() -> dict:
    """Small configurations of the three networks for the finite-difference checker:
    ``{name: factory(rng) -> (model, x)}``."""

    def fc(rng):
        rng = as_rng(rng)
        return FCNet(4, 6, 3, rng=rng), unit_inputs(3, 4, rng=rng)

    def resnet(rng):
        rng = as_rng(rng)
        return ResNet(4, 5, 3, c_res=0.5, rng=rng), unit_inputs(3, 4, rng=rng)

    def conv(rng):
        rng = as_rng(rng)
        return ConvResNet(2, 5, 4, 3, c_res=0.5, rng=rng), unit_inputs(3, 2, 5, rng=rng)

    def resnet_tanh(rng):
        rng = as_rng(rng)
        return ResNet(3, 4, 2, activation="tanh", c_res=0.5, rng=rng), unit_inputs(2, 3, rng=rng)

    return {"du2019.fc": fc, "du2019.resnet": resnet, "du2019.conv_resnet": conv, "du2019.resnet_tanh": resnet_tanh}
