"""Property-based gradient checks of every layer family (issue 9).

Hypothesis draws layer configurations and shapes, the degenerate ones included (1×1 images, a
kernel larger than the input with padding, a stride larger than the kernel, one sample, one
channel), and a fraction of invalid ones (a zero or negative size, groups that do not divide the
channels, an input of the wrong channels or ndim, padding 'same' with a stride). An independent
oracle in this file decides which draws are valid, and:

* a valid draw must build, give an output of the shape the oracle computes and the values of a
  naive NumPy reference written here, and pass :func:`gradcheck.check` (finite differences in
  float64 along a random direction per tensor, kinks and max ties detected and the point redrawn,
  never a looser tolerance);
* an invalid draw must raise ValueError or TypeError naming the layer, never crash otherwise,
  never return a NaN or a wrong-shaped output.

Random-direction checks (``fast=True``) keep each example at a few milliseconds, so every family
runs 500 examples (``derandomize=True``: the same examples in every run).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import refnets.layers as rn
from gradcheck import core as gc

SETTINGS = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
CHECK = dict(fast=True, directions=1, jvp=False, extras=False, max_redraws=6)
REL = 1e-12


# ------------------------------------------------------------------------------ helpers
def assert_gradcheck(factory, name, seed):
    """factory(rng) -> (layer, x): PASS at a random point (redrawn while a kink is straddled)."""
    res = gc.check(factory, name=name, seed=seed, **CHECK)
    event(f"gradcheck {res.status}" + (" after a redraw" if res.attempts > 1 else ""))
    assert res.status == gc.PASS, f"{name} ({res.attempts} attempts):\n" + "\n".join(
        f"  {r.label:>12} {r.status} rel={r.max_rel:.3g} at {r.index} num={r.numerical:.6g} "
        f"ana={r.analytic:.6g} {r.note}" for r in res.rows)


def assert_refused(fn, *names):
    """fn() must raise ValueError/TypeError whose message names one of ``names``."""
    with pytest.raises((ValueError, TypeError)) as e:
        fn()
    msg = str(e.value)
    event(f"refused: {type(e.value).__name__}")
    assert any(n in msg for n in names), f"error does not name the layer {names}: {msg}"


def assert_close(got, ref, what):
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite output"
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    assert err <= REL * scale * 10, f"{what}: max abs error {err:.3g} against the naive reference"


def _pairs(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _out_size(size, k, s, before, after, d=1):
    """⌊(size + before + after − d(k−1) − 1)/s⌋ + 1, or 0 when the kernel does not fit."""
    span = size + before + after - d * (k - 1) - 1
    return span // s + 1 if span >= 0 else 0


# ------------------------------------------------------------------ naive references
def naive_conv2d(x, W, b, stride, pads, dilation, groups, scale):
    N, C, H, Wd = x.shape
    Co, Cg, kh, kw = W.shape
    sh, sw = stride
    dh, dw = dilation
    pt, pb, pl, pr = pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    Ho = _out_size(H, kh, sh, pt, pb, dh)
    Wo = _out_size(Wd, kw, sw, pl, pr, dw)
    out = np.zeros((N, Co, Ho, Wo))
    og = Co // groups
    for g in range(groups):
        xs = xp[:, g * Cg:(g + 1) * Cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh: i * dh + sh * (Ho - 1) + 1: sh, j * dw: j * dw + sw * (Wo - 1) + 1: sw]
                out[:, g * og:(g + 1) * og] += np.einsum("ncyx,oc->noyx", patch, W[g * og:(g + 1) * og, :, i, j])
    out *= scale
    if b is not None:
        out += b[None, :, None, None]
    return out


def naive_pool(x, kernel, stride, padding, mode, count_include_pad=True):
    N, C, H, W = x.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    ones = np.pad(np.ones((H, W)), ((ph, ph), (pw, pw)))
    Ho, Wo = _out_size(H, kh, sh, ph, ph), _out_size(W, kw, sw, pw, pw)
    taps = [xp[:, :, i: i + sh * (Ho - 1) + 1: sh, j: j + sw * (Wo - 1) + 1: sw] for i in range(kh) for j in range(kw)]
    if mode == "max":
        return np.max(np.stack(taps), axis=0)
    total = np.sum(np.stack(taps), axis=0)
    if count_include_pad:
        return total / (kh * kw)
    count = sum(ones[i: i + sh * (Ho - 1) + 1: sh, j: j + sw * (Wo - 1) + 1: sw] for i in range(kh) for j in range(kw))
    return total / count


# ------------------------------------------------------------------ corruptions
# One in three draws is broken on purpose in one way; the rest are valid unless the geometry is.
BREAKS = [None] * 10 + ["channels", "ndim", "dtype", "nan"]


def broken_input(x, brk, rng):
    """The input with one corruption applied (or x itself)."""
    if brk == "ndim":
        return x[0]
    if brk == "dtype":
        return x.astype(np.int64) if rng.integers(2) else x.astype(np.float32)
    if brk == "nan":
        y = x.copy()
        y.flat[int(rng.integers(y.size))] = np.nan if rng.integers(2) else np.inf
        return y
    return x


def assert_broken_refused(layer, x, brk, rng, name, valid=True):
    """Forward of a corrupted input is refused; a float32 input is fine for a layer without
    parameters (its output stays float32 and finite) and refused by one with float64 parameters."""
    bad = broken_input(x, brk, rng)
    if bad.dtype == np.float32 and layer.dtype is None and valid:
        out = layer.forward(bad)
        assert out.dtype == np.float32 and np.all(np.isfinite(out))
        return
    assert_refused(lambda: layer.forward(bad), name)


def tied_first(make, draw, tied):
    """A gradcheck factory whose first point has exact ties/kinks (``tied``: round the draw), the
    later ones (the checker's redraws after a KINK) continuous values; without ``tied``, always
    continuous. Exercises the kink detection and redraw path of the checker on every family
    with kinks, instead of relying on a lucky draw."""
    calls = []

    def factory(r):
        x = draw(r)
        calls.append(1)
        return make(), (np.round(x) if tied and len(calls) == 1 else x)
    return factory


# ------------------------------------------------------------------------------ Dense
@SETTINGS
@given(N=st.integers(1, 4), D=st.integers(1, 6), M=st.integers(1, 5), bias=st.booleans(),
       scale=st.sampled_from([1.0, 0.5, -3.0, 0.0]), brk=st.sampled_from(BREAKS + ["features0"]),
       seed=st.integers(0, 2 ** 20))
def test_dense(N, D, M, bias, scale, brk, seed):
    rng = np.random.default_rng(seed)
    if brk == "features0":
        assert_refused(lambda: rn.Dense(D, 0), "Dense")
        return
    x = rng.standard_normal((N, D + (1 if brk == "channels" else 0)))
    if brk is not None:
        layer = rn.Dense(D, M, bias=bias, scale=scale, rng=seed)
        assert_broken_refused(layer, x, brk, rng, "Dense")
        return

    layer = rn.Dense(D, M, bias=bias, scale=scale, rng=seed)
    ref = scale * x @ layer.params["W"].T + (layer.params["b"] if bias else 0.0)
    assert_close(layer.forward(x), ref, "Dense")
    assert_gradcheck(lambda r: (rn.Dense(D, M, bias=bias, scale=scale, rng=r,
                                         bias_init=lambda g, s, d: g.standard_normal(s).astype(d)),
                                r.standard_normal((N, D))), "Dense", seed)


# ------------------------------------------------------------------------------ Conv2d
PAD_MODES = st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                      st.tuples(*[st.integers(0, 3)] * 4), st.sampled_from(["same", "valid", "bottom_right"]))


def resolve_pads(padding, k, d, s):
    """Oracle for the padding (top, bottom, left, right); None where the layer must refuse it."""
    kh, kw = k
    dh, dw = d
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if tuple(s) != (1, 1):
                return None
            th, tw = dh * (kh - 1), dw * (kw - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        return (0, dh * (kh - 1), 0, dw * (kw - 1))
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


@SETTINGS
@given(N=st.integers(1, 3), groups=st.sampled_from([1, 1, 1, 2, 3]), cin=st.integers(1, 2), cout=st.integers(1, 2),
       kh=st.integers(1, 5), kw=st.integers(1, 5), stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       dilation=st.sampled_from([(1, 1), (1, 1), (2, 1), (1, 2), (2, 2)]), padding=PAD_MODES,
       H=st.integers(1, 6), W=st.integers(1, 6), bias=st.booleans(), scale=st.sampled_from([1.0, 0.5, -2.0]),
       brk=st.sampled_from(BREAKS + ["groups", "stride0", "negpad", "kernel0"]), seed=st.integers(0, 2 ** 20))
def test_conv2d(N, groups, cin, cout, kh, kw, stride, dilation, padding, H, W, bias, scale, brk, seed):
    rng = np.random.default_rng(seed)
    Cin, Cout = groups * cin, groups * cout
    kernel = kh if kh == kw else (kh, kw)
    kw_args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias, scale=scale)
    # configuration errors: refused when the layer is built
    if brk in ("groups", "stride0", "negpad", "kernel0"):
        bad = dict(kw_args)
        cin_b, kern = Cin, kernel
        if brk == "groups":
            if groups == 1:
                bad["groups"] = 0
            else:
                cin_b = Cin + 1
        elif brk == "stride0":
            bad["stride"] = (0, stride[1])
        elif brk == "negpad":
            bad["padding"] = (-1, 0)
        else:
            kern = (0, kw)
        assert_refused(lambda: rn.Conv2d(cin_b, Cout, kern, **bad), "Conv2d")
        return
    pads = resolve_pads(padding, (kh, kw), dilation, stride)
    if pads is None:  # 'same' with a stride
        assert_refused(lambda: rn.Conv2d(Cin, Cout, kernel, **kw_args), "Conv2d")
        return
    layer = rn.Conv2d(Cin, Cout, kernel, rng=seed, **kw_args)
    Ho = _out_size(H, kh, stride[0], pads[0], pads[1], dilation[0])
    Wo = _out_size(W, kw, stride[1], pads[2], pads[3], dilation[1])
    x = rng.standard_normal((N, Cin + (1 if brk == "channels" else 0), H, W))
    if brk is not None or Ho < 1 or Wo < 1:  # a bad input, or a kernel that does not fit
        assert_broken_refused(layer, x, brk, rng, "Conv2d")
        return

    if bias:
        layer.params["b"][...] = rng.standard_normal(Cout)
    ref = naive_conv2d(x, layer.params["W"], layer.params.get("b"), stride, pads, dilation, groups, scale)
    assert_close(layer.forward(x), ref, "Conv2d")

    def factory(r):
        lay = rn.Conv2d(Cin, Cout, kernel, rng=r, **kw_args)
        if bias:
            lay.params["b"][...] = r.standard_normal(Cout)
        return lay, r.standard_normal((N, Cin, H, W))
    assert_gradcheck(factory, "Conv2d", seed)


# ------------------------------------------------------------------------------ Conv1d
@SETTINGS
@given(N=st.integers(1, 3), groups=st.sampled_from([1, 1, 2]), cin=st.integers(1, 2), cout=st.integers(1, 2),
       k=st.integers(1, 5), stride=st.integers(1, 4), dilation=st.sampled_from([1, 1, 2, 3]),
       padding=st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                         st.sampled_from(["same", "valid"])),
       L=st.integers(1, 8), bias=st.booleans(), scale=st.sampled_from([1.0, 0.7]),
       brk=st.sampled_from(BREAKS + ["stride0", "bottom_right", "kernel_pair"]), seed=st.integers(0, 2 ** 20))
def test_conv1d(N, groups, cin, cout, k, stride, dilation, padding, L, bias, scale, brk, seed):
    rng = np.random.default_rng(seed)
    Cin, Cout = groups * cin, groups * cout
    kw_args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias, scale=scale)
    if brk == "stride0":
        assert_refused(lambda: rn.Conv1d(Cin, Cout, k, **{**kw_args, "stride": 0}), "Conv1d")
        return
    if brk == "bottom_right":  # a 2-D padding mode means nothing for sequences
        assert_refused(lambda: rn.Conv1d(Cin, Cout, k, **{**kw_args, "padding": "bottom_right"}), "Conv1d")
        return
    if brk == "kernel_pair":
        assert_refused(lambda: rn.Conv1d(Cin, Cout, (k, k), **kw_args), "Conv1d")
        return
    if padding == "same" and stride != 1:
        assert_refused(lambda: rn.Conv1d(Cin, Cout, k, **kw_args), "Conv1d")
        return
    if padding == "same":
        t = dilation * (k - 1)
        pl, pr = t // 2, t - t // 2
    elif padding == "valid":
        pl = pr = 0
    elif isinstance(padding, int):
        pl = pr = padding
    else:
        pl, pr = padding
    layer = rn.Conv1d(Cin, Cout, k, rng=seed, **kw_args)
    Lo = _out_size(L, k, stride, pl, pr, dilation)
    x = rng.standard_normal((N, Cin + (1 if brk == "channels" else 0), L))
    if brk is not None or Lo < 1:
        assert_broken_refused(layer, x, brk, rng, "Conv1d")
        return
    if bias:
        layer.params["b"][...] = rng.standard_normal(Cout)
    ref = naive_conv2d(x[:, :, None, :], layer.params["W"][:, :, None, :], layer.params.get("b"), (1, stride),
                       (0, 0, pl, pr), (1, dilation), groups, scale)[:, :, 0, :]
    out = layer.forward(x)
    assert out.shape == (N, Cout, Lo)
    assert_close(out, ref, "Conv1d")

    def factory(r):
        lay = rn.Conv1d(Cin, Cout, k, rng=r, **kw_args)
        if bias:
            lay.params["b"][...] = r.standard_normal(Cout)
        return lay, r.standard_normal((N, Cin, L))
    assert_gradcheck(factory, "Conv1d", seed)


# ------------------------------------------------------------------------------ activations
ACTS = {
    "Identity": (lambda: rn.Identity(), lambda z: z),
    "ReLU": (lambda: rn.ReLU(), lambda z: np.where(z > 0, z, 0.0)),
    "LeakyReLU": (None, None),
    "Logistic": (lambda: rn.Logistic(), lambda z: 1.0 / (1.0 + np.exp(-z))),
    "Softplus": (lambda: rn.Softplus(), lambda z: np.log1p(np.exp(z))),
    "Tanh": (lambda: rn.Tanh(), np.tanh),
}


@SETTINGS
@given(name=st.sampled_from(sorted(ACTS)), shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       zscale=st.sampled_from([0.1, 1.0, 4.0, 20.0]), alpha=st.sampled_from([0.0, 0.01, 0.2, 0.9, 1.0, -0.1]),
       brk=st.sampled_from([None] * 10 + ["dtype", "nan", "list"]), seed=st.integers(0, 2 ** 20))
def test_activations(name, shape, zscale, alpha, brk, seed):
    rng = np.random.default_rng(seed)
    if name == "LeakyReLU":
        if not 0.0 <= alpha < 1.0:
            assert_refused(lambda: rn.LeakyReLU(alpha), "LeakyReLU")
            return
        make, ref_fn = (lambda: rn.LeakyReLU(alpha)), (lambda z: np.where(z > 0, z, alpha * z))
    else:
        make, ref_fn = ACTS[name]
    z = zscale * rng.standard_normal(shape)
    if brk is not None:
        act = make()
        bad = z.tolist() if brk == "list" else broken_input(z, brk, rng)
        if brk == "dtype" and bad.dtype == np.float32:  # float32 is a supported dtype for activations
            out = act.forward(bad)
            assert out.dtype == np.float32 and np.all(np.isfinite(out))
            return
        assert_refused(lambda: act.forward(bad), name)
        return
    act = make()
    out = act.forward(z)
    assert_close(out, ref_fn(z), name)
    kinked = name in ("ReLU", "LeakyReLU") and seed % 2 == 0  # exact zeros: the step straddles the kink
    assert_gradcheck(tied_first(make, lambda r: zscale * r.standard_normal(shape), kinked), name, seed)


# ------------------------------------------------------------------------------ pooling
@SETTINGS
@given(kind=st.sampled_from(["max-numba", "max-numpy", "avg", "avg-nopad"]), N=st.integers(1, 3), C=st.integers(1, 3),
       H=st.integers(1, 6), W=st.integers(1, 6), kh=st.integers(1, 4), kw=st.integers(1, 4),
       stride=st.one_of(st.none(), st.tuples(st.integers(1, 5), st.integers(1, 5))),
       ph=st.integers(0, 2), pw=st.integers(0, 2), ties=st.booleans(),
       brk=st.sampled_from(BREAKS + ["kernel0", "stride0", "backend", "padding"]), seed=st.integers(0, 2 ** 20))
def test_pool2d(kind, N, C, H, W, kh, kw, stride, ph, pw, ties, brk, seed):
    rng = np.random.default_rng(seed)
    if brk != "padding":  # padding beyond half the window is drawn on purpose only
        ph, pw = min(ph, kh // 2), min(pw, kw // 2)
    elif ph <= kh // 2 and pw <= kw // 2:
        ph = kh // 2 + 1
    mode = kind[:3]
    name = "MaxPool2d" if mode == "max" else "AvgPool2d"

    def make(kernel=(kh, kw), stride=stride, padding=(ph, pw), backend=None):
        if mode == "max":
            return rn.MaxPool2d(kernel, stride, padding, backend=backend or kind[4:])
        return rn.AvgPool2d(kernel, stride, padding, count_include_pad=(kind == "avg"))

    if brk == "kernel0":
        assert_refused(lambda: make(kernel=(0, kw)), name)
        return
    if brk == "stride0":
        assert_refused(lambda: make(stride=(1, 0)), name)
        return
    if brk == "backend":
        if mode == "max":
            assert_refused(lambda: make(backend="cuda"), name)
        return
    if ph > kh // 2 or pw > kw // 2:  # PyTorch's rule: every window holds an input pixel
        assert_refused(make, name)
        return
    layer = make()
    s = (kh, kw) if stride is None else stride
    Ho, Wo = _out_size(H, kh, s[0], ph, ph), _out_size(W, kw, s[1], pw, pw)
    x = rng.standard_normal((N, C, H, W))
    if brk is not None and brk != "channels" or Ho < 1 or Wo < 1:
        assert_broken_refused(layer, x, brk, rng, name, valid=Ho >= 1 and Wo >= 1)
        return
    if ties:  # exact ties in every window: the gradient goes to one winner, and the checker redraws
        x = np.round(x)
    ref = naive_pool(x, (kh, kw), s, (ph, pw), mode, kind == "avg")
    assert_close(layer.forward(x), ref, name)
    if mode == "max":
        # the routed gradient: every output's dout lands on an input equal to that output
        dout = rng.standard_normal(ref.shape)
        dx = layer.backward(dout)
        assert np.isclose(dx.sum(), dout.sum(), rtol=1e-12, atol=1e-12)
    assert_gradcheck(tied_first(make, lambda r: r.standard_normal((N, C, H, W)), ties and mode == "max"), name, seed)


@SETTINGS
@given(kind=st.sampled_from(["max", "avg", "avg-mask", "avg-slices"]), N=st.integers(1, 3), C=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 4), min_size=1, max_size=3), ties=st.booleans(),
       brk=st.sampled_from([None] * 10 + ["ndim", "dtype", "nan", "region"]), seed=st.integers(0, 2 ** 20))
def test_global_pool(kind, N, C, spatial, ties, brk, seed):
    rng = np.random.default_rng(seed)
    shape = (N, C, *spatial)
    name = "GlobalMaxPool" if kind == "max" else "GlobalAvgPool"
    region = None
    if kind == "avg-mask":
        region = rng.random(spatial) < 0.6
        region.flat[int(rng.integers(region.size))] = True
    elif kind == "avg-slices":
        region = tuple(slice(int(rng.integers(0, n)), None) for n in spatial)

    def make():
        return rn.GlobalMaxPool() if kind == "max" else rn.GlobalAvgPool(region=region)

    x = rng.standard_normal(shape)
    if brk == "region":
        if kind == "avg-mask":  # a mask of the wrong shape, then an empty mask
            lay = rn.GlobalAvgPool(region=np.ones(tuple(n + 1 for n in spatial), dtype=bool))
            assert_refused(lambda: lay.forward(x), name)
            assert_refused(lambda: rn.GlobalAvgPool(region=np.zeros(spatial, dtype=bool)), name)
        elif kind == "avg-slices":  # one slice too many, then a slice selecting nothing
            lay = rn.GlobalAvgPool(region=region + (slice(None),))
            assert_refused(lambda: lay.forward(x), name)
            lay = rn.GlobalAvgPool(region=(slice(spatial[0], None),) + region[1:])
            assert_refused(lambda: lay.forward(x), name)
        elif kind == "avg":
            assert_refused(lambda: rn.GlobalAvgPool(region=np.ones(spatial, dtype=int)), name)
        return
    if brk is not None:
        if brk == "ndim":
            assert_refused(lambda: make().forward(x.reshape(N, -1)), name)
        else:
            assert_broken_refused(make(), x, brk, rng, name)
        return
    if ties:
        x = np.round(x)
    flat = x.reshape(N, C, -1)
    if kind == "max":
        ref = flat.max(axis=-1)
    else:
        m = np.ones(spatial, dtype=bool) if region is None else np.zeros(spatial, dtype=bool)
        if region is not None:
            m[region] = True
        ref = flat[..., m.ravel()].mean(axis=-1)
    assert_close(make().forward(x), ref, name)
    assert_gradcheck(tied_first(make, lambda r: r.standard_normal(shape), ties and kind == "max"), name, seed)


# ------------------------------------------------------------------------------ containers
def _act(name):
    return {"relu": rn.ReLU, "tanh": rn.Tanh, "softplus": rn.Softplus, "logistic": rn.Logistic,
            "leaky": lambda: rn.LeakyReLU(0.1), "identity": rn.Identity}[name]()


@SETTINGS
@given(kind=st.sampled_from(["mlp", "residual", "parallel", "cnn", "reshape"]), N=st.integers(1, 3),
       d=st.integers(1, 4), m=st.integers(1, 4), act=st.sampled_from(["relu", "tanh", "softplus", "logistic",
                                                                      "leaky", "identity"]),
       scale=st.sampled_from([1.0, 0.3, -1.5]), weights=st.sampled_from(["none", "fixed", "learned"]),
       H=st.integers(1, 5), W=st.integers(1, 5), pool=st.sampled_from(["max", "avg", "gmax", "gavg"]),
       brk=st.sampled_from([None] * 8 + ["shape", "input", "element"]), seed=st.integers(0, 2 ** 20))
def test_containers(kind, N, d, m, act, scale, weights, H, W, pool, brk, seed):
    rng = np.random.default_rng(seed)
    bad = brk == "shape"

    def build(r):
        if kind == "mlp":
            net = rn.Sequential(rn.Dense(d, m, bias=True, rng=r, bias_init=lambda g, s, t: g.standard_normal(s)),
                                _act(act), rn.Dense(m + bad, 2, scale=scale, rng=r))
            return net, (N, d)
        if kind == "residual":
            branch = rn.Sequential(rn.Dense(d, d + bad, rng=r), _act(act))
            net = rn.Sequential({"in": rn.Dense(d, d, rng=r), "res": rn.Residual(branch, scale=scale),
                                 "res2": rn.Residual(rn.Sequential(_act(act), rn.Dense(d + bad, d + bad, rng=r)))})
            return net, (N, d)
        if kind == "parallel":
            w = {"none": None, "fixed": r.standard_normal(2 + bad), "learned": "learned"}[weights]
            net = rn.Parallel(rn.Dense(d, m, rng=r), rn.Sequential(rn.Dense(d, m, rng=r), _act(act)),
                              weights=w, rng=r)
            return net, (N, d)
        if kind == "cnn":
            if pool in ("max", "avg"):
                p = rn.MaxPool2d(2, 1, 1) if pool == "max" else rn.AvgPool2d(3, 2, 1)
                pooled = (H + 1, W + 1) if pool == "max" else ((H - 1) // 2 + 1, (W - 1) // 2 + 1)
                tail = [p, rn.Flatten(), rn.Dense(m * pooled[0] * pooled[1] + bad, 1, rng=r)]
            else:
                tail = [rn.GlobalMaxPool() if pool == "gmax" else rn.GlobalAvgPool(), rn.Dense(m + bad, 1, rng=r)]
            net = rn.Sequential(rn.Conv2d(d, m, 3, padding="same", rng=r), _act(act), *tail)
            return net, (N, d, H, W)
        # reshape: (N, d) -> (N, m, H, W) -> conv -> (N, d) through Flatten and Dense
        net = rn.Sequential(rn.Dense(d, m * H * W, rng=r), rn.Reshape((m, H + bad, W)),
                            rn.Conv2d(m, 1, (2, 1), padding="bottom_right", rng=r), _act(act),
                            rn.Flatten(), rn.Dense(H * W, d, rng=r))
        return net, (N, d)

    names = ("Sequential", "Residual", "Parallel", "Dense", "Conv2d", "Reshape", "Flatten", "Pool")
    if brk == "element":
        assert_refused(lambda: rn.Sequential(rn.Dense(d, m), np.eye(2)), "Sequential")
        assert_refused(lambda: rn.Residual(lambda x: x), "Residual")
        assert_refused(lambda: rn.Parallel(rn.Dense(d, m), weights="sum"), "Parallel")
        return
    if bad:
        if kind == "parallel" and weights != "fixed":
            return  # nothing to break in a plain or learned sum of equal branches
        assert_refused(lambda: _forward_built(build, rng), *names)
        return
    net, xshape = build(rng)
    if brk == "input":
        wrong = (xshape[0], xshape[1] + 1) + xshape[2:]
        assert_refused(lambda: net.forward(rng.standard_normal(wrong)), *names)
        return
    out = net.forward(rng.standard_normal(xshape))
    assert out.shape[0] == N and np.all(np.isfinite(out))
    assert_gradcheck(lambda r: (lambda nx: (nx[0], r.standard_normal(nx[1])))(build(r)), f"{kind}", seed)


def _forward_built(build, rng):
    net, xshape = build(rng)
    return net.forward(rng.standard_normal(xshape))
