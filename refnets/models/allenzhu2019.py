"""The networks of Allen-Zhu, Li & Song (2019), "A Convergence Theory for Deep Learning via
Over-Parameterization" (arXiv 1811.03962), and their linearisation.

Fully connected (Sec. 2, (R) for every detail the abstract does not fix)::

    h_{i,0} = φ(A xᵢ),   h_{i,ℓ} = φ(W_ℓ h_{i,ℓ−1})  (ℓ = 1..L),   ŷᵢ = B h_{i,L},

φ = ReLU, no biases (the inputs' constant last coordinate 1/√2 acts as one), A ∈ ℝ^{m×d},
W_ℓ ∈ ℝ^{m×m}, B ∈ ℝ^{d_out×m}; init A, W_ℓ ~ N(0, 2/m), B ~ N(0, 1/d_out) entrywise.
**Only W_1..W_L are trained**; A and B stay at their random values (:data:`TRAINABLE`).

ResNet (R): h_{i,ℓ} = φ(h_{i,ℓ−1} + τ W_ℓ h_{i,ℓ−1}) with a fixed residual scale τ (default 1/√L).

CNN (R): every layer holds m channels at p positions; W_ℓ maps the q neighbouring positions of the
layer below (a 1-D convolution with kernel q, "same" zero padding), init N(0, 2/(qm)). The input
x ∈ ℝ^d is read as C channels at p positions (d = C·p, C order); A is a convolution with kernel
``a_kernel`` (default 1: per position) and B reads the flattened (m·p) last layer.

Every model's parameters are named "A", "W1", …, "WL", "B" (flat, not dotted), and every model
supports the full layer protocol: forward, backward (gradients of all parameters, the frozen ones
included, so they can be checked), gram (NTK shares) and jvp (forward mode, for the linearisation).

:class:`Linearised` is f_lin(W) = f(W⁰) + J(W⁰)(W − W⁰), evaluated without ever forming J: a frozen
copy of the network at W⁰ keeps its forward caches (ReLU patterns D(W⁰), hidden layers h(W⁰)), the
forward is that copy's jvp along W − W⁰ and the gradient is J(W⁰)ᵀ r, that copy's backward.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import init as _init
from .._validate import check_axis, check_input, positive_int
from ..layers.activations import ReLU
from ..layers.base import Layer, as_rng, param_grads_enabled
from ..layers.containers import Flatten, Reshape, Residual, Sequential
from ..layers.dense import Dense

#: fnmatch patterns of the trained parameters: W_1..W_L; A and B stay fixed (Allen-Zhu et al. 2019, Sec. 2).
TRAINABLE = ("W*",)


def _std(given, default_var):
    return float(np.sqrt(default_var)) if given is None else float(given)


class AllenZhuNet(Layer):
    """Base of the three variants: an internal :class:`Sequential` whose parameters are exposed under
    the paper's flat names ("A", "W1", …, "B"). The arrays are shared (aliases), so optimisers that
    update ``model.params`` in place update the network.

    Attributes
    ----------
    d, m, L, d_out : input dimension, width, number of trained layers, output dimension.
    output : (N, d_out) output of the last forward.
    hidden_names : ["W1", …, "WL"].
    """

    ndim = 2
    layout = "(N, d)"
    variant = ""

    def __init__(self, d, m, L, d_out, net: Sequential, aliases: dict, relus: list, dtype, name):
        super().__init__(name, dtype)
        self.d, self.m, self.L, self.d_out = d, m, L, d_out
        self.net = net
        self._aliases = dict(aliases)             # flat name -> internal dotted name
        self._relus = list(relus)                 # the ReLU layers after W_1..W_L
        inner = net.parameters()
        self.params = {k: inner[v] for k, v in self._aliases.items()}
        self.hidden_names = [f"W{l}" for l in range(1, L + 1)]
        self.output = None

    # ---------------------------------------------------------- protocol
    def check_input(self, x):
        check_input(self.name, x, 2, self.layout, self.dtype)
        check_axis(self.name, "input", x, 1, self.d, "d")

    def _forward(self, x):
        out = self.net.forward(x)
        self.output = out
        return out, True

    def backward(self, dout):
        """Gradients of ⟨dout, ŷ⟩ for every parameter (A and B included); returns dx (N, d)."""
        self._need_forward()
        from .._validate import check_dout
        check_dout(self.name, dout, self._out_shape, self._out_dtype)
        dx = self.net.backward(dout)
        inner = self.net.gradients()
        self.grads = ({k: inner[v] for k, v in self._aliases.items()}
                      if param_grads_enabled() else {})              # none inside sensitivities_only()
        self._dout = dout
        return dx

    def gram(self):
        """Per-parameter (N, N) NTK shares (scalar output per sample), under the flat names."""
        self._need_forward("gram")
        if self._dout is None:
            raise RuntimeError(f"{self.name}: gram called before backward; run backward(dout) first")
        inner = self.net.gram()
        return {k: inner[v] for k, v in self._aliases.items() if v in inner}

    def jvp(self, dx, dparams=None):
        """Directional derivative of the last forward's output along (dx, dparams) (flat names)."""
        self._need_forward("jvp")
        dparams = dparams or {}
        unknown = set(dparams) - set(self._aliases)
        if unknown:
            raise KeyError(f"{self.name}: no parameter named {sorted(unknown)}; have {list(self._aliases)}")
        return self.net.jvp(dx, {self._aliases[k]: v for k, v in dparams.items()})

    # ---------------------------------------------------------- helpers
    def preactivations(self) -> list:
        """The inputs z_ℓ of the ReLUs after W_1..W_L in the last forward (the sign pattern D_ℓ = 1{z_ℓ > 0})."""
        self._need_forward("preactivations")
        return [r.cache[0] for r in self._relus]

    def activation_pattern(self, x) -> list:
        """Forward ``x`` and return the ReLU sign patterns 1{z_ℓ > 0}, ℓ = 1..L, as boolean arrays."""
        self.forward(x)
        return [z > 0 for z in self.preactivations()]

    def trainable_names(self) -> list:
        return list(self.hidden_names)

    def copy(self) -> "AllenZhuNet":
        """An independent deep copy (parameters, caches)."""
        return copy.deepcopy(self)


def _relu_stack(d, m, L, d_out, a_std, w_std, b_std, rng, dtype, hidden):
    """The layers A, φ, (W_ℓ, φ) for ℓ = 1..L, B of an FC or residual network, with the paper's inits.

    ``hidden(ℓ, W)`` wraps the dense W_ℓ (m, m) into the ℓ-th hidden layer and returns it with the
    path of its weight (FC: W itself; ResNet: a residual block around it). Returns (layers dict,
    flat-name → path aliases, the ReLUs after W_1..W_L)."""
    rng = as_rng(rng)
    a_init = _init.normal(_std(a_std, 2.0 / m))
    w_init = _init.normal(_std(w_std, 2.0 / m))
    b_init = _init.normal(_std(b_std, 1.0 / d_out))
    layers = {"A": Dense(d, m, init=a_init, rng=rng, dtype=dtype, name="A"), "phi0": ReLU()}
    relus, aliases = [], {"A": "A.W"}
    for l in range(1, L + 1):
        layers[f"W{l}"], aliases[f"W{l}"] = hidden(l, Dense(m, m, init=w_init, rng=rng, dtype=dtype, name=f"W{l}"))
        layers[f"phi{l}"] = relu = ReLU()
        relus.append(relu)
    layers["B"] = Dense(m, d_out, init=b_init, rng=rng, dtype=dtype, name="B")
    aliases["B"] = "B.W"
    return layers, aliases, relus


class FCNet(AllenZhuNet):
    """Fully connected ReLU network of Allen-Zhu et al. 2019, Sec. 2: ŷ = B φ(W_L ⋯ φ(W_1 φ(A x))).

    Parameters
    ----------
    d : input dimension (inputs normalised by :func:`refnets.data.synthetic.normalize_inputs`).
    m : width. L : number of trained layers W_1..W_L (L ≥ 1). d_out : output dimension.
    a_std, w_std, b_std : init standard deviations; None means the paper's √(2/m), √(2/m), √(1/d_out)
        (R: PAPERS.md §2; pass others to study the scaling).
    rng : None (seed 0), int or Generator. dtype : float64 (default) or float32.

    Shapes: x (N, d) -> ŷ (N, d_out). Parameters A (m, d), W_ℓ (m, m), B (d_out, m).
    """

    variant = "fc"

    def __init__(self, d, m, L, d_out=1, a_std=None, w_std=None, b_std=None, rng=None,
                 dtype=np.float64, name=None):
        d, m, L, d_out = (positive_int("FCNet", k, v) for k, v in
                          (("d", d), ("m", m), ("L", L), ("d_out", d_out)))
        layers, aliases, relus = _relu_stack(
            d, m, L, d_out, a_std, w_std, b_std, rng, dtype,
            lambda l, W: (W, f"W{l}.W"))
        super().__init__(d, m, L, d_out, Sequential(layers), aliases, relus, dtype, name or "FCNet")

    def extra_repr(self):
        return f"d={self.d}, m={self.m}, L={self.L}, d_out={self.d_out}"


class ResNet(AllenZhuNet):
    """Residual ReLU network (R): h_ℓ = φ(h_{ℓ−1} + τ W_ℓ h_{ℓ−1}), h_0 = φ(A x), ŷ = B h_L.

    Parameters as :class:`FCNet`, plus ``tau``: the fixed residual scale τ (default 1/√L, (R):
    PAPERS.md §2 "of order 1/√L"; the paper's ResNet analysis needs τ small). W_ℓ init N(0, 2/m) as
    in the FC network (R; ``w_std`` changes it).
    """

    variant = "resnet"

    def __init__(self, d, m, L, d_out=1, tau=None, a_std=None, w_std=None, b_std=None, rng=None,
                 dtype=np.float64, name=None):
        d, m, L, d_out = (positive_int("ResNet", k, v) for k, v in
                          (("d", d), ("m", m), ("L", L), ("d_out", d_out)))
        self.tau = 1.0 / np.sqrt(L) if tau is None else float(tau)
        if not (np.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"ResNet: tau must be a positive number, got {tau}")
        layers, aliases, relus = _relu_stack(
            d, m, L, d_out, a_std, w_std, b_std, rng, dtype,
            lambda l, W: (Residual(W, scale=self.tau, name=f"res{l}"), f"W{l}.branch.W"))
        super().__init__(d, m, L, d_out, Sequential(layers), aliases, relus, dtype, name or "ResNet")

    def extra_repr(self):
        return f"d={self.d}, m={self.m}, L={self.L}, d_out={self.d_out}, tau={self.tau:g}"


def conv_available() -> bool:
    """True once :mod:`refnets.layers.conv` (Conv1d) can be imported."""
    try:
        from ..layers.conv import Conv1d  # noqa: F401
    except ImportError:
        return False
    return True


class CNN(AllenZhuNet):
    """Convolutional ReLU network (R): m channels at p positions, h_ℓ = φ(W_ℓ ⋆ h_{ℓ−1}) with a 1-D
    convolution of kernel q and "same" zero padding, W_ℓ ∈ ℝ^{m×m×q} (the paper's m×qm matrix
    applied to q concatenated neighbours), init N(0, 2/(qm)).

    Parameters
    ----------
    input_shape : (C, p): x ∈ ℝ^d is reshaped (C order) to C channels at p positions, d = C·p (R).
    m, L, d_out : width (channels), trained layers, outputs. q : kernel size (odd, for "same").
    a_kernel : kernel of A (default 1, a per-position map ℝ^C -> ℝ^m, init N(0, 2/m) (R)).
    b_std : B ∈ ℝ^{d_out×(m·p)} init, default N(0, 1/d_out) as the FC network (R).

    Shapes: x (N, C·p) -> ŷ (N, d_out); A (m, C, a_kernel), W_ℓ (m, m, q), B (d_out, m·p).
    """

    variant = "cnn"

    def __init__(self, input_shape, m, L, d_out=1, q=3, a_kernel=1, a_std=None, w_std=None, b_std=None,
                 rng=None, dtype=np.float64, name=None):
        from ..layers.conv import Conv1d

        C, p = (positive_int("CNN", k, v) for k, v in zip(("channels", "positions"), input_shape))
        m, L, d_out, q = (positive_int("CNN", k, v) for k, v in (("m", m), ("L", L), ("d_out", d_out), ("q", q)))
        if q % 2 == 0 or a_kernel % 2 == 0:
            raise ValueError(f"CNN: kernel sizes must be odd for 'same' padding, got q={q}, a_kernel={a_kernel}")
        self.q, self.p, self.C, self.a_kernel = q, p, C, a_kernel
        rng = as_rng(rng)
        a_init = _init.normal(_std(a_std, 2.0 / m))
        w_init = _init.normal(_std(w_std, 2.0 / (q * m)))
        b_init = _init.normal(_std(b_std, 1.0 / d_out))
        layers = {"reshape": Reshape((C, p)),
                  "A": Conv1d(C, m, kernel_size=a_kernel, padding="same", bias=False, init=a_init,
                              rng=rng, dtype=dtype, name="A"),
                  "phi0": ReLU()}
        relus, aliases = [], {"A": "A.W"}
        for l in range(1, L + 1):
            layers[f"W{l}"] = Conv1d(m, m, kernel_size=q, padding="same", bias=False, init=w_init,
                                     rng=rng, dtype=dtype, name=f"W{l}")
            layers[f"phi{l}"] = relu = ReLU()
            relus.append(relu)
            aliases[f"W{l}"] = f"W{l}.W"
        layers["flatten"] = Flatten()
        layers["B"] = Dense(m * p, d_out, init=b_init, rng=rng, dtype=dtype, name="B")
        aliases["B"] = "B.W"
        super().__init__(C * p, m, L, d_out, Sequential(layers), aliases, relus, dtype, name or "CNN")

    def extra_repr(self):
        return (f"input_shape=({self.C}, {self.p}), m={self.m}, L={self.L}, d_out={self.d_out}, "
                f"q={self.q}")


VARIANTS = {"fc": FCNet, "resnet": ResNet, "cnn": CNN}


def make_network(variant, d, m, L, d_out=1, rng=None, dtype=np.float64, **kw) -> AllenZhuNet:
    """Build a variant by name ("fc", "resnet", "cnn"). For "cnn", ``d`` is split as
    ``input_shape=kw.pop("input_shape", (1, d))`` (one channel at d positions unless given)."""
    if variant not in VARIANTS:
        raise ValueError(f"make_network: variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if variant == "cnn":
        shape = kw.pop("input_shape", (1, d))
        if shape[0] * shape[1] != d:
            raise ValueError(f"make_network: input_shape {shape} does not hold d={d} inputs")
        return CNN(shape, m, L, d_out, rng=rng, dtype=dtype, **kw)
    return VARIANTS[variant](d, m, L, d_out, rng=rng, dtype=dtype, **kw)


# ---------------------------------------------------------------------------- linearisation
class Linearised(Layer):
    """f_lin(W; x) = f(W⁰; x) + J(W⁰; x)(W − W⁰): the network's first-order Taylor model at its
    initialisation (the "NTK" model the paper couples the network to), trained by the same algorithm.

    J is never formed. A frozen copy of the network at W⁰ runs one forward on ``x_train`` and keeps
    its caches (h_ℓ(W⁰), the ReLU patterns D_ℓ(W⁰)); then

    * forward: f(W⁰) + copy.jvp(0, W − W⁰)  (each layer's jvp reads the W⁰ caches, so this is J(W⁰)),
    * backward(r): J(W⁰)ᵀ r = the copy's backward of r, which also reads the W⁰ caches.

    Inputs other than ``x_train`` (any other array, e.g. SGD minibatches or test points) go through a
    second frozen copy whose caches are refreshed on demand; ``x_train`` is recognised by identity
    (``x is x_train``), so do not modify it in place.

    ``backward`` returns no input gradient (None): the inputs are data, and ∂f_lin/∂x would need
    second derivatives of the network. Parameter gradients are exact.

    Parameters
    ----------
    model : an :class:`AllenZhuNet` at W⁰ (it is copied; the original is left alone).
    x_train : optional (N, d) training inputs whose forward is cached once.

    Parameters are named as the model's ("A", "W1", …, "B"); ``W0`` holds their initial values.
    """

    ndim = 2
    layout = "(N, d)"

    def __init__(self, model: AllenZhuNet, x_train=None, name=None):
        super().__init__(name or f"Linearised({model.name})", model.dtype)
        if not isinstance(model, Layer):
            raise TypeError(f"{self.name}: model must be a refnets Layer, got {type(model).__name__}")
        self.model0 = copy.deepcopy(model)
        self._scratch = copy.deepcopy(model)
        self.W0 = {k: v.copy() for k, v in model.parameters().items()}
        self.params = {k: v.copy() for k, v in model.parameters().items()}
        self.hidden_names = list(getattr(model, "hidden_names", []))
        self.d = getattr(model, "d", None)
        self.output = None
        self._x_train = None
        self._f0_train = None
        self._scratch_x = None
        self._scratch_f0 = None
        if x_train is not None:
            self.set_train_inputs(x_train)

    def set_train_inputs(self, x_train) -> None:
        """Run the frozen W⁰ copy on ``x_train`` once and keep its caches."""
        self._x_train = x_train
        self._f0_train = self.model0.forward(x_train).copy()

    def check_input(self, x):
        check_input(self.name, x, 2, self.layout, self.dtype)
        if self.d is not None:
            check_axis(self.name, "input", x, 1, self.d, "d")

    def _frozen_for(self, x):
        """The W⁰ copy whose caches hold the forward on x, and f(W⁰; x)."""
        if self._x_train is not None and x is self._x_train:
            return self.model0, self._f0_train
        if self._scratch_x is not x:
            self._scratch_f0 = self._scratch.forward(x).copy()
            self._scratch_x = x
        return self._scratch, self._scratch_f0

    def delta(self) -> dict:
        """W − W⁰ for the parameters that moved (all-zero differences are left out)."""
        out = {}
        for k, p in self.params.items():
            dk = p - self.W0[k]
            if np.any(dk):
                out[k] = dk
        return out

    def _forward(self, x):
        frozen, f0 = self._frozen_for(x)
        dp = self.delta()
        out = f0 + frozen.jvp(None, dp) if dp else f0.copy()
        self.output = out
        return out, frozen

    def _backward(self, dout, frozen):
        frozen.backward(dout)
        return None, {k: g.copy() for k, g in frozen.grads.items()}

    def gram(self):
        """The NTK at W⁰ on the last forward's inputs (it never changes: the model is linear in W)."""
        self._need_forward("gram")
        if self._dout is None:
            raise RuntimeError(f"{self.name}: gram called before backward")
        return self.cache.gram()

    def jvp(self, dx, dparams=None):
        """J(W⁰)·dW (f_lin is linear in W); input directions are not supported (dx must be None)."""
        self._need_forward("jvp")
        if dx is not None:
            raise NotImplementedError(f"{self.name}: jvp in the input direction is not provided")
        return self.cache.jvp(None, dparams or {})

    def extra_repr(self):
        return f"{self.model0!r}"


# ---------------------------------------------------------------------------- gradcheck
def gradcheck_factories() -> dict:
    """Small configurations of every variant for the finite-difference checker:
    ``{name: factory(rng) -> (model, x)}``; inputs on the paper's sphere (last coordinate 1/√2).
    The CNN appears once :mod:`refnets.layers.conv` is importable."""
    from ..data.synthetic import normalize_inputs

    def _x(rng, n, d):
        return normalize_inputs(rng.standard_normal((n, d - 1)))

    def fc(rng):
        rng = as_rng(rng)
        return FCNet(5, 7, 2, d_out=3, rng=rng), _x(rng, 4, 5)

    def resnet(rng):
        rng = as_rng(rng)
        return ResNet(5, 6, 3, d_out=2, tau=0.5, rng=rng), _x(rng, 3, 5)

    def cnn(rng):
        rng = as_rng(rng)
        return CNN((2, 5), 4, 2, d_out=2, q=3, rng=rng), _x(rng, 3, 10)

    out = {"allenzhu2019.fc": fc, "allenzhu2019.resnet": resnet}
    if conv_available():
        out["allenzhu2019.cnn"] = cnn
    return out
