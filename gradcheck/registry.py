"""Every public refnets layer, loss and penalty, with random small configurations to check.

An entry is a name and a factory ``factory(rng) -> (object, inputs)``, seeded by ``rng``, float64:

* a Layer and its input array;
* a loss ``fn(pred, y) -> (value, dpred)`` and the argument tuple ``(pred, y)``;
* a penalty (``value(params)``, ``grads(params)``) and a Layer or dict of parameters;
* or any :class:`gradcheck.core.Target` (inputs ignored).

Several configurations per layer where the geometry matters (stride, padding, dilation, groups,
overlapping pooling, planted max ties), each named ``Class[config]``; ``cls`` names the refnets
Layer class an entry covers, and tests/test_registry.py requires every public Layer subclass of
:mod:`refnets.layers` to be covered by at least one entry.

A paper model is added with one line::

    register("du2019.resnet", lambda rng: (make_resnet(rng=rng), rng.standard_normal((4, 5))),
             kind="model", requires=("refnets.models.du2019:make_resnet",))

or, without touching this file, by defining ``gradcheck_factories() -> {name: factory}`` in its
module of :mod:`refnets.models`: :func:`discover_models` registers those when this module is
imported. A model module that fails to import, or whose ``gradcheck_factories`` raises, becomes
an entry that FAILs with the error, never a silent gap (a missing optional third-party package
makes it an unavailable entry instead).

``requires`` lists ``"module:attribute"`` names a factory needs. Entries whose requirements do
not import (a layer another engineer has not landed yet) stay registered but unavailable: they
are listed by ``python -m gradcheck --list`` and skipped by runs, and the module always imports.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import importlib
import math
import pkgutil
import time
from typing import Callable

import numpy as np

KINDS = ("layer", "model", "loss", "penalty")


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable
    kind: str = "model"
    cls: str | None = None
    requires: tuple = ()
    description: str = ""

    def missing(self) -> list[str]:
        """The requirements that do not import (empty: the entry can run)."""
        return [spec for spec in self.requires if _resolve(spec) is None]

    @property
    def available(self) -> bool:
        return not self.missing()


REGISTRY: dict[str, Entry] = {}


def _resolve(spec: str):
    """``"package.module:attr"`` -> the attribute, or None if it does not import."""
    module, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(mod, attr, None) if attr else mod


def _get(spec: str):
    obj = _resolve(spec)
    if obj is None:
        raise ImportError(f"gradcheck registry: {spec} is not available")
    return obj


def register(name: str, factory: Callable | None = None, *, kind: str = "model", cls: str | None = None,
             requires=(), description: str = "", replace: bool = False):
    """Add an entry ``name`` -> ``factory(rng) -> (object, inputs)``; usable as a decorator.

    kind : "layer", "model", "loss" or "penalty" (for listings). cls : the refnets Layer class
    name the entry covers. requires : "module:attribute" names the factory needs.
    """
    if kind not in KINDS:
        raise ValueError(f"gradcheck registry: kind must be one of {KINDS}, got {kind!r}")

    def add(f):
        if not callable(f):
            raise TypeError(f"gradcheck registry: factory for {name!r} must be callable")
        if name in REGISTRY and not replace:
            raise ValueError(f"gradcheck registry: {name!r} is already registered")
        REGISTRY[name] = Entry(name, f, kind, cls, tuple(requires), description)
        return f

    return add if factory is None else add(factory)


def _matches(entry: Entry, pattern: str) -> bool:
    p = pattern.lower()
    n = entry.name.lower()
    return (n == p or n.split("[", 1)[0] == p or fnmatch.fnmatchcase(n, p)
            or (entry.cls is not None and entry.cls.lower() == p))


def select(patterns=None, available_only=True) -> list[Entry]:
    """Entries matching any pattern (exact name, base name before "[", class name, or fnmatch
    pattern, case-insensitive); all entries for None. Unknown patterns raise KeyError."""
    entries = list(REGISTRY.values())
    if patterns:
        unknown = [p for p in patterns if not any(_matches(e, p) for e in entries)]
        if unknown:
            raise KeyError(f"no registered layer matches {unknown}; see python -m gradcheck --list")
        entries = [e for e in entries if any(_matches(e, p) for p in patterns)]
    if available_only:
        entries = [e for e in entries if e.available]
    return entries


def public_layer_classes() -> dict[str, type]:
    """Public Layer subclasses defined in refnets.layers and its modules (abstract bases excluded)."""
    import refnets.layers as L
    from refnets.layers.activations import Activation
    from refnets.layers.base import Layer

    found = {}
    modules = [L]
    for info in pkgutil.iter_modules(L.__path__):
        try:
            modules.append(importlib.import_module(f"refnets.layers.{info.name}"))
        except ImportError:
            continue
    for mod in modules:
        names = getattr(mod, "__all__", None) or dir(mod)
        for n in names:
            obj = getattr(mod, n, None)
            if (isinstance(obj, type) and issubclass(obj, Layer) and obj not in (Layer, Activation)
                    and not n.startswith("_") and obj.__module__.startswith("refnets.layers")):
                found[obj.__name__] = obj
    return found


def covered_classes() -> dict[str, list[str]]:
    """Class name -> names of the entries covering it."""
    out: dict[str, list[str]] = {}
    for e in REGISTRY.values():
        if e.cls:
            out.setdefault(e.cls, []).append(e.name)
    return out


def run(patterns=None, *, selected=None, seed=0, **opts) -> list:
    """Check the available entries matching ``patterns`` (or the Entry list ``selected``); options go to
    :func:`gradcheck.core.check`. A factory or checker that raises gives a FAIL row, never a crash."""
    from .core import FAIL, Result, Row, check

    results = []
    for e in (select(patterns) if selected is None else selected):
        t0 = time.perf_counter()
        try:
            res = check(e.factory, name=e.name, seed=seed, **opts)
        except Exception as exc:  # noqa: BLE001 - reported, never hidden
            res = Result(e.name, [Row(e.name, "", "error", FAIL, note=f"{type(exc).__name__}: {exc}")])
        res.seconds = time.perf_counter() - t0
        results.append(res)
    return results


# ============================================================================ helpers
_L = "refnets.layers"
CONV, POOL = f"{_L}.conv", f"{_L}.pooling"


def _normal(rng, shape, scale=1.0):
    return scale * rng.standard_normal(shape)


def _layer(name, cls, module=_L, description=""):
    """Decorator for a layer-configuration factory covering ``cls`` (imported from ``module``)."""
    return register(name, kind="layer", cls=cls, requires=(f"{module}:{cls}",), description=description)


# ============================================================================ dense, activations
@_layer("Dense", "Dense", description="bias, fixed multiplier s = 0.7")
def _dense(rng):
    from refnets.layers import Dense
    return Dense(4, 3, bias=True, scale=0.7, rng=rng), _normal(rng, (3, 4))


@_layer("Dense[nobias]", "Dense")
def _dense_nobias(rng):
    from refnets.layers import Dense
    return Dense(5, 2, rng=rng), _normal(rng, (2, 5))


@_layer("Dense[1x1]", "Dense")
def _dense_1x1(rng):
    from refnets.layers import Dense
    return Dense(1, 1, bias=True, rng=rng), _normal(rng, (1, 1))


def _activation(cls, scale=1.0, shape=(3, 5), **kw):
    def factory(rng):
        return getattr(importlib.import_module(_L), cls)(**kw), _normal(rng, shape, scale)
    return factory


for _cls in ("Identity", "ReLU", "Logistic", "Softplus", "Tanh"):
    register(_cls, _activation(_cls), kind="layer", cls=_cls, requires=(f"{_L}:{_cls}",))
register("LeakyReLU", _activation("LeakyReLU", alpha=0.2), kind="layer", cls="LeakyReLU",
         requires=(f"{_L}:LeakyReLU",))
register("ReLU[4d]", _activation("ReLU", shape=(2, 2, 3, 3)), kind="layer", cls="ReLU",
         requires=(f"{_L}:ReLU",))
for _cls in ("Logistic", "Softplus", "Tanh"):
    register(f"{_cls}[tails]", _activation(_cls, scale=12.0), kind="layer", cls=_cls,
             requires=(f"{_L}:{_cls}",), description="inputs of size ~12: the saturated tails")


# ============================================================================ containers
@_layer("Sequential", "Sequential", description="Dense-Softplus-Dense-Tanh-Dense")
def _sequential(rng):
    from refnets.layers import Dense, Sequential, Softplus, Tanh
    return Sequential(Dense(5, 6, bias=True, rng=rng), Softplus(), Dense(6, 4, rng=rng), Tanh(),
                      Dense(4, 2, bias=True, rng=rng)), _normal(rng, (3, 5))


@_layer("Sequential[relu]", "Sequential", description="ReLU and leaky ReLU inside: inner kinks")
def _sequential_relu(rng):
    from refnets.layers import Dense, LeakyReLU, ReLU, Sequential
    return Sequential({"in": Dense(4, 6, bias=True, rng=rng), "act": ReLU(), "mid": Dense(6, 3, rng=rng),
                       "leaky": LeakyReLU(0.1), "out": Dense(3, 1, rng=rng)}), _normal(rng, (3, 4))


@_layer("Residual", "Residual", description="x + 0.3 * Dense-Tanh-Dense(x)")
def _residual(rng):
    from refnets.layers import Dense, Residual, Sequential, Tanh
    branch = Sequential(Dense(5, 5, rng=rng), Tanh(), Dense(5, 5, bias=True, rng=rng))
    return Residual(branch, scale=0.3), _normal(rng, (3, 5))


@_layer("Residual[relu]", "Residual", description="Du et al.-style block, s = 1/(H sqrt(m)) with H = 2, m = 4")
def _residual_relu(rng):
    from refnets.layers import Dense, ReLU, Residual, Sequential
    return Residual(Sequential(Dense(4, 4, bias=True, rng=rng), ReLU()), scale=1 / (2 * math.sqrt(4))), \
        _normal(rng, (2, 4))


@_layer("Parallel", "Parallel", description="fixed weights [0.5, -2]")
def _parallel(rng):
    from refnets.layers import Dense, Logistic, Parallel, Sequential
    return Parallel(Dense(4, 2, rng=rng), Sequential(Dense(4, 2, bias=True, rng=rng), Logistic()),
                    weights=[0.5, -2.0]), _normal(rng, (3, 4))


@_layer("Parallel[learned]", "Parallel", description="trained combination weights w")
def _parallel_learned(rng):
    from refnets.layers import Dense, Parallel, Sequential, Softplus, Tanh
    return Parallel(Sequential(Dense(3, 2, rng=rng), Tanh()), Sequential(Dense(3, 2, rng=rng), Softplus()),
                    Dense(3, 2, rng=rng), weights="learned", rng=rng), _normal(rng, (2, 3))


@_layer("Parallel[sum]", "Parallel")
def _parallel_sum(rng):
    from refnets.layers import Dense, Parallel
    return Parallel(Dense(3, 3, rng=rng), Dense(3, 3, bias=True, rng=rng)), _normal(rng, (2, 3))


@_layer("Flatten", "Flatten")
def _flatten(rng):
    from refnets.layers import Flatten
    return Flatten(), _normal(rng, (2, 3, 2, 2))


@_layer("Flatten[3d]", "Flatten")
def _flatten3(rng):
    from refnets.layers import Flatten
    return Flatten(), _normal(rng, (3, 2, 5))


@_layer("Reshape", "Reshape")
def _reshape(rng):
    from refnets.layers import Reshape
    return Reshape((2, 3)), _normal(rng, (3, 6))


@_layer("Reshape[to4d]", "Reshape", description="(N, 12) -> (N, 3, 2, 2) -> Flatten -> Dense")
def _reshape_4d(rng):
    from refnets.layers import Dense, Flatten, Reshape, Sequential
    return Sequential(Reshape((3, 2, 2)), Flatten(), Dense(12, 2, rng=rng)), _normal(rng, (2, 12))


# ============================================================================ convolutions
def _conv(cls, cin, cout, k, x_shape, **kw):
    def factory(rng):
        return _get(f"{CONV}:{cls}")(cin, cout, k, rng=rng, **kw), _normal(rng, x_shape)
    return factory


_CONV2D = {
    "Conv2d": (2, 3, 3, (2, 2, 5, 6), {}),
    "Conv2d[s2,p1]": (2, 4, 3, (2, 2, 7, 6), dict(stride=2, padding=1)),
    "Conv2d[k2x3,s(2,1),p(1,0)]": (3, 2, (2, 3), (1, 3, 5, 5), dict(stride=(2, 1), padding=(1, 0))),
    "Conv2d[pad(1,0,2,1)]": (2, 2, 3, (1, 2, 5, 4), dict(padding=(1, 0, 2, 1))),
    "Conv2d[same,k4]": (2, 2, 4, (1, 2, 5, 6), dict(padding="same")),
    "Conv2d[same,d2]": (1, 2, 3, (2, 1, 6, 5), dict(padding="same", dilation=2)),
    "Conv2d[valid]": (2, 3, 2, (1, 2, 4, 5), dict(padding="valid")),
    "Conv2d[bottom_right]": (2, 2, 3, (1, 2, 5, 5), dict(padding="bottom_right")),
    "Conv2d[d2]": (2, 2, 3, (1, 2, 7, 7), dict(dilation=2)),
    "Conv2d[d(1,2),s2,p1]": (2, 3, 3, (2, 2, 7, 8), dict(dilation=(1, 2), stride=2, padding=1)),
    "Conv2d[groups2]": (4, 6, 3, (2, 4, 5, 5), dict(groups=2, padding=1)),
    "Conv2d[depthwise]": (3, 3, 3, (1, 3, 5, 4), dict(groups=3)),
    "Conv2d[nobias,scale0.5]": (2, 3, 3, (2, 2, 5, 5), dict(bias=False, scale=0.5)),
    "Conv2d[1x1]": (3, 2, 1, (2, 3, 3, 2), {}),
    # 3×3, stride 1, enough channels: the Winograd F(2×2, 3×3) kernels (odd output, asymmetric padding)
    "Conv2d[winograd]": (16, 16, 3, (1, 16, 4, 3), dict(padding=(1, 0, 2, 1))),
}
_CONV1D = {
    "Conv1d": (2, 3, 3, (2, 2, 8), {}),
    "Conv1d[s2,p1,d2]": (2, 3, 3, (2, 2, 9), dict(stride=2, padding=1, dilation=2)),
    "Conv1d[pad(2,0)]": (2, 2, 3, (1, 2, 6), dict(padding=(2, 0))),
    "Conv1d[same,k4]": (2, 2, 4, (1, 2, 7), dict(padding="same")),
    "Conv1d[valid]": (1, 2, 3, (2, 1, 6), dict(padding="valid")),
    "Conv1d[groups2]": (4, 2, 3, (2, 4, 6), dict(groups=2, bias=False, scale=0.5)),
    # q = 3, stride 1, enough channels: the Winograd kernels, F(4, 3) in float64 from 16 rows on
    # (odd output, a half-empty last tile, asymmetric padding)
    "Conv1d[winograd1d]": (16, 16, 3, (16, 16, 2), dict(padding=(2, 1))),
}
for _name, (_ci, _co, _k, _xs, _kw) in _CONV2D.items():
    register(_name, _conv("Conv2d", _ci, _co, _k, _xs, **_kw), kind="layer", cls="Conv2d",
             requires=(f"{CONV}:Conv2d",))
for _name, (_ci, _co, _k, _xs, _kw) in _CONV1D.items():
    register(_name, _conv("Conv1d", _ci, _co, _k, _xs, **_kw), kind="layer", cls="Conv1d",
             requires=(f"{CONV}:Conv1d",))


# ============================================================================ pooling
def _pool(cls, x_shape, ties=False, **kw):
    def factory(rng):
        x = (0.5 * rng.integers(-2, 3, size=x_shape)).astype(np.float64) if ties else _normal(rng, x_shape)
        return _get(f"{POOL}:{cls}")(**kw), x
    return factory


_POOLS = {
    "MaxPool2d": ("MaxPool2d", (2, 2, 4, 6), dict(kernel_size=2)),
    "MaxPool2d[k3,s2]": ("MaxPool2d", (2, 2, 7, 7), dict(kernel_size=3, stride=2)),
    "MaxPool2d[k3,s1,p1]": ("MaxPool2d", (1, 2, 5, 5), dict(kernel_size=3, stride=1, padding=1)),
    "MaxPool2d[k(2,3),s(1,2)]": ("MaxPool2d", (1, 1, 5, 7), dict(kernel_size=(2, 3), stride=(1, 2))),
    "MaxPool2d[numpy,k3,s1]": ("MaxPool2d", (1, 2, 5, 4), dict(kernel_size=3, stride=1, backend="numpy")),
    "AvgPool2d": ("AvgPool2d", (2, 2, 4, 6), dict(kernel_size=2)),
    "AvgPool2d[k3,s2,p1]": ("AvgPool2d", (1, 2, 7, 6), dict(kernel_size=3, stride=2, padding=1)),
    "AvgPool2d[k3,s2,p1,exclude_pad]": ("AvgPool2d", (1, 2, 7, 6),
                                        dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    "AvgPool2d[k(2,3),s1]": ("AvgPool2d", (2, 1, 4, 5), dict(kernel_size=(2, 3), stride=1)),
    "GlobalMaxPool": ("GlobalMaxPool", (2, 3, 5), {}),
    "GlobalMaxPool[2d]": ("GlobalMaxPool", (2, 2, 3, 4), {}),
    "GlobalAvgPool": ("GlobalAvgPool", (2, 3, 4, 5), {}),
    "GlobalAvgPool[1d]": ("GlobalAvgPool", (2, 3, 7), {}),
    "GlobalAvgPool[slices]": ("GlobalAvgPool", (2, 2, 5, 4), dict(region=(slice(1, None, 2), slice(0, 3)))),
}
for _name, (_cls, _xs, _kw) in _POOLS.items():
    register(_name, _pool(_cls, _xs, **_kw), kind="layer", cls=_cls, requires=(f"{POOL}:{_cls}",))
# Exact ties only where every pixel lies in one window (see gradcheck.kinks: the hull test is
# exact for one kink per step): every attempt has ties, so these rows end as KINK by design.
register("MaxPool2d[ties]", _pool("MaxPool2d", (2, 2, 4, 4), ties=True, kernel_size=2), kind="layer",
         cls="MaxPool2d", requires=(f"{POOL}:MaxPool2d",),
         description="inputs in {-1, -0.5, 0, 0.5, 1}: exact ties in non-overlapping windows")
register("GlobalMaxPool[ties]", _pool("GlobalMaxPool", (2, 3, 6), ties=True), kind="layer",
         cls="GlobalMaxPool", requires=(f"{POOL}:GlobalMaxPool",), description="exact ties")


@register("GlobalAvgPool[kohler]", kind="layer", cls="GlobalAvgPool",
          requires=(f"{POOL}:GlobalAvgPool", f"{POOL}:kohler_index_set"),
          description="Kohler et al. 2024: average over the index set I_kappa")
def _gap_kohler(rng):
    return _get(f"{POOL}:GlobalAvgPool")(region=_get(f"{POOL}:kohler_index_set")(6, 5, 3)), \
        _normal(rng, (2, 2, 6, 5))


# ============================================================================ small whole networks
@register("net.cnn2d", kind="model", requires=(f"{CONV}:Conv2d", f"{POOL}:MaxPool2d"),
          description="Conv2d-ReLU-MaxPool2d-Flatten-Dense")
def _cnn2d(rng):
    from refnets.layers import Dense, Flatten, ReLU, Sequential
    conv, mp = _get(f"{CONV}:Conv2d"), _get(f"{POOL}:MaxPool2d")
    net = Sequential(conv(1, 3, 3, padding=1, rng=rng), ReLU(), mp(2), Flatten(), Dense(27, 2, rng=rng))
    return net, _normal(rng, (2, 1, 6, 6))


@register("net.cnn1d_globalmax", kind="model", requires=(f"{CONV}:Conv1d", f"{POOL}:GlobalMaxPool"),
          description="Brutzkus & Globerson-style: Conv1d-LeakyReLU-GlobalMaxPool-Dense")
def _cnn1d(rng):
    from refnets.layers import Dense, LeakyReLU, Sequential
    conv, gmp = _get(f"{CONV}:Conv1d"), _get(f"{POOL}:GlobalMaxPool")
    net = Sequential(conv(2, 4, 3, stride=3, bias=False, rng=rng), LeakyReLU(0.1), gmp(),
                     Dense(4, 1, rng=rng))
    return net, _normal(rng, (3, 2, 9))


@register("net.kohler_parallel", kind="model", requires=(f"{CONV}:Conv2d", f"{POOL}:GlobalAvgPool"),
          description="Kohler et al.-style: learned combination of conv-logistic-globalavg branches")
def _kohler(rng):
    from refnets.layers import Flatten, Logistic, Parallel, Sequential
    conv, gap = _get(f"{CONV}:Conv2d"), _get(f"{POOL}:GlobalAvgPool")

    def branch():
        return Sequential(conv(1, 2, 2, padding="bottom_right", rng=rng), Logistic(),
                          conv(2, 1, 2, padding="bottom_right", rng=rng), gap(), Flatten())
    return Parallel(branch(), branch(), weights="learned", rng=rng), _normal(rng, (2, 1, 4, 4))


@register("net.resnet_smooth", kind="model", description="Du et al. 2019-style ResNet: Softplus, two residual blocks")
def _resnet(rng):
    from refnets.layers import Dense, Residual, Sequential, Softplus
    m, H = 6, 2
    blocks = {"in": Dense(4, m, rng=rng), "act": Softplus()}
    for i in range(H):
        blocks[f"res{i}"] = Residual(Sequential(Dense(m, m, rng=rng), Softplus()), scale=1 / (H * math.sqrt(m)))
    blocks["out"] = Dense(m, 1, rng=rng)
    return Sequential(blocks), _normal(rng, (3, 4))


# ============================================================================ losses, penalty
def _loss(name, fn_name, make_args, **kw):
    def factory(rng):
        fn = getattr(importlib.import_module("refnets.losses"), fn_name)
        return (functools.partial(fn, **kw) if kw else fn), make_args(rng)
    register(name, factory, kind="loss", requires=(f"refnets.losses:{fn_name}",))


_loss("half_squared_sum", "half_squared_sum", lambda r: (_normal(r, (4, 3)), _normal(r, (4, 3))))
_loss("half_squared_sum[1d]", "half_squared_sum", lambda r: (_normal(r, (5,)), _normal(r, (5,))))
_loss("mean_squared", "mean_squared", lambda r: (_normal(r, (4, 2)), _normal(r, (4, 2))))
_loss("logistic_loss", "logistic_loss", lambda r: (_normal(r, (6,), 2.0), r.choice([-1.0, 1.0], size=6)))
_loss("logistic_loss[sum]", "logistic_loss", lambda r: (_normal(r, (5, 1), 2.0), r.choice([-1.0, 1.0], size=5)),
      reduction="sum")
_loss("logistic_loss[margins]", "logistic_loss", lambda r: (_normal(r, (6,), 30.0), r.choice([-1.0, 1.0], size=6)))
_loss("softmax_cross_entropy", "softmax_cross_entropy", lambda r: (_normal(r, (4, 3)), r.integers(0, 3, size=4)))
_loss("softmax_cross_entropy[sum]", "softmax_cross_entropy",
      lambda r: (_normal(r, (5, 4), 3.0), r.integers(0, 4, size=5)), reduction="sum")


@register("L2Penalty", kind="penalty", requires=("refnets.losses:L2Penalty",),
          description="c * sum ||W||^2 over the Dense weights of a small network (biases: zero gradient)")
def _l2(rng):
    from refnets.layers import Dense, Sequential, Tanh
    from refnets.losses import L2Penalty
    net = Sequential(Dense(3, 4, bias=True, rng=rng), Tanh(), Dense(4, 2, bias=True, rng=rng))
    return L2Penalty("*.W", c=0.3), net


@register("L2Penalty[output_w]", kind="penalty", requires=("refnets.losses:L2Penalty",),
          description="Kohler et al.'s c_n * sum_k w_k^2 on the learned combination weights only")
def _l2_w(rng):
    from refnets.layers import Dense, Parallel
    from refnets.losses import L2Penalty
    net = Parallel(Dense(3, 1, rng=rng), Dense(3, 1, rng=rng), weights="learned", rng=rng)
    return L2Penalty("w", c=0.05), net


# ============================================================================ paper models
def _raiser(exc):
    def factory(rng):
        raise exc
    return factory


def discover_models(package: str = "refnets.models") -> list[str]:
    """Register the ``gradcheck_factories()`` of every module of ``package``; returns the new names."""
    try:
        pkg = importlib.import_module(package)
    except ImportError:
        return []
    added = []
    for info in pkgutil.iter_modules(pkg.__path__):
        modname = f"{package}.{info.name}"
        name = f"{info.name}.<gradcheck_factories>"
        try:
            provider = getattr(importlib.import_module(modname), "gradcheck_factories", None)
            factories = provider() if provider is not None else {}
        except ModuleNotFoundError as exc:
            if exc.name and not exc.name.startswith("refnets"):  # an optional dependency: unavailable
                register(name, _raiser(exc), kind="model", requires=(exc.name,), replace=True,
                         description=f"{modname} needs {exc.name}")
                continue
            register(name, _raiser(exc), kind="model", replace=True,
                     description=f"{modname} could not provide its gradcheck factories")
            added.append(name)
            continue
        except Exception as exc:  # noqa: BLE001 - becomes a FAIL entry
            register(name, _raiser(exc), kind="model", replace=True,
                     description=f"{modname} could not provide its gradcheck factories")
            added.append(name)
            continue
        for name, factory in factories.items():
            if name not in REGISTRY:
                register(name, factory, kind="model", description=f"{modname}.gradcheck_factories()")
                added.append(name)
    return added


discover_models()
