"""Pooling: gradient checks, ties, Numba == reference, the layer protocol, bad input."""
import copy

import numpy as np
import pytest

from refnets.kernels import pool_numba, pool_reference
from refnets.layers.pooling import (AvgPool2d, GlobalAvgPool, GlobalMaxPool, MaxPool2d,
                                    avgpool2d_backward, avgpool2d_forward, kohler_index_set,
                                    maxpool2d_backward, maxpool2d_forward)

H_STEP = 1e-5


# ------------------------------------------------------------------ helpers
def numeric_grad(f, x, h=H_STEP):
    """Central differences of the scalar f at x, one coordinate at a time (x is restored)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f(x)
        flat[i] = old - h
        fm = f(x)
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return g


def rel_error(a, b):
    """CS231n's max_i |a_i − b_i| / max(1e-8, |a_i| + |b_i|)."""
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def no_tie_input(rng, shape, spread=4.0):
    """Distinct values on a grid with spacing spread/size: no two entries within spread/size."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) / n * spread - spread / 2).astype(np.float64)


def gradcheck_layer(layer, x, rng):
    """Return the relative error between layer.backward and central differences of ⟨g, f(x)⟩."""
    out = layer.forward(x)
    g = rng.standard_normal(out.shape)
    dx = layer.backward(g)
    xc = x.copy()
    num = numeric_grad(lambda z: float(np.sum(layer.forward(z) * g)), xc)
    return rel_error(dx, num)


MAX_CONFIGS = [
    # (H, W, kernel, stride, padding)
    (4, 4, 2, None, 0),          # non-overlapping, pad 0
    (5, 7, 3, 1, 1),             # overlapping, padding, odd sizes
    (7, 5, 3, 2, 1),             # overlapping with stride 2
    (6, 5, 3, 1, 0),             # overlapping, pad 0
    (5, 6, (3, 2), (2, 1), (1, 1)),  # rectangular window and stride
    (3, 3, 2, 1, 1),             # corner windows hold one real pixel
    (6, 6, 4, 3, 2),             # padding = kernel // 2
    (5, 5, 1, 2, 0),             # 1x1 window, stride > window (some pixels never pooled)
    (3, 4, 3, 1, 0),             # window = input height
]


# ------------------------------------------------------------------ gradient checks
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("seed, config", list(enumerate(MAX_CONFIGS)))
def test_maxpool_gradcheck(backend, seed, config):
    H, W, k, s, p = config
    rng = np.random.default_rng(seed)
    x = no_tie_input(rng, (2, 2, H, W))
    layer = MaxPool2d(k, s, p, backend=backend)
    layer.forward(x)
    assert layer.max_margin() > 10 * H_STEP  # the finite differences cross no kink
    assert gradcheck_layer(layer, x, rng) < 1e-7


@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize("H, W, k, s, p", MAX_CONFIGS)
def test_avgpool_gradcheck(cip, H, W, k, s, p):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 2, H, W))
    assert gradcheck_layer(AvgPool2d(k, s, p, count_include_pad=cip), x, rng) < 1e-7


@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 2, 3, 5), (1, 2, 2, 3, 2), (2, 2, 1)])
def test_global_pools_gradcheck(shape):
    rng = np.random.default_rng(3)
    x = no_tie_input(rng, shape)
    gmp = GlobalMaxPool()
    gmp.forward(x)
    assert gmp.max_margin() > 10 * H_STEP
    assert gradcheck_layer(gmp, x, rng) < 1e-7
    assert gradcheck_layer(GlobalAvgPool(), x, rng) < 1e-7


def test_global_avgpool_region_gradcheck():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 6, 5))
    assert gradcheck_layer(GlobalAvgPool(kohler_index_set(6, 5, 3)), x, rng) < 1e-7
    assert gradcheck_layer(GlobalAvgPool((slice(1, None, 2), slice(0, 3))), x, rng) < 1e-7


# ------------------------------------------------------------------ known answers
def test_maxpool_overlapping_windows_accumulate():
    # The centre wins all four 2x2 windows: its gradient is the sum of the four douts
    # (a backward that assigns instead of accumulating would give just one of them).
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    for backend in ("numba", "numpy"):
        layer = MaxPool2d(2, 1, backend=backend)
        out = layer.forward(x)
        assert np.all(out == 5.0)
        dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
        dx = layer.backward(dout)
        expected = np.zeros((1, 1, 3, 3))
        expected[0, 0, 1, 1] = 10.0
        np.testing.assert_array_equal(dx, expected)


def test_maxpool_padding_never_wins():
    # All inputs negative: zero padding would win the border windows; −∞ padding never does.
    x = -1.0 - np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    for backend in ("numba", "numpy"):
        layer = MaxPool2d(3, 1, 1, backend=backend)
        out = layer.forward(x)
        assert out[0, 0, 0, 0] == -1.0 and np.all(out < 0)
        dx = layer.backward(np.ones_like(out))
        assert dx.sum() == out.size  # every window's gradient lands on a real pixel


def test_maxpool_padding_zero_crop():
    # pad = 0 with a window that does not tile the input: the last column/row is never pooled.
    x = no_tie_input(np.random.default_rng(0), (1, 1, 5, 5))
    layer = AvgPool2d(2, 2, 0)
    out = layer.forward(x)
    assert out.shape == (1, 1, 2, 2)
    dx = layer.backward(np.ones_like(out))
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx[0, 0, 4, :], 0.0)
    np.testing.assert_array_equal(dx[0, 0, :, 4], 0.0)
    np.testing.assert_allclose(dx[0, 0, :4, :4], 0.25, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_maxpool_ties_first_winner(backend):
    # Window [[0, 1], [1, 0]]: the first maximum in row-major order is (0, 1).
    x = np.array([[[[0.0, 1.0], [1.0, 0.0]]]])
    layer = MaxPool2d(2, backend=backend)
    layer.forward(x)
    dx = layer.backward(np.array([[[[3.0]]]]))
    np.testing.assert_array_equal(dx, [[[[0.0, 3.0], [0.0, 0.0]]]])
    assert layer.max_margin() == 0.0
    # Constant input, overlapping 2x2 windows, stride 1 on 3x3: each window's top-left wins.
    layer = MaxPool2d(2, 1, backend=backend)
    layer.forward(np.zeros((1, 1, 3, 3)))
    dx = layer.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    np.testing.assert_array_equal(dx, [[[[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]]])


def test_global_maxpool_ties_first_winner():
    x = np.array([[[[0.0, 2.0], [2.0, 2.0]]]])
    layer = GlobalMaxPool()
    layer.forward(x)
    dx = layer.backward(np.array([[5.0]]))
    np.testing.assert_array_equal(dx, [[[[0.0, 5.0], [0.0, 0.0]]]])
    assert layer.max_margin() == 0.0


def test_max_margin_brute_force():
    rng = np.random.default_rng(11)
    for H, W, k, s, p in MAX_CONFIGS:
        kh, kw = (k, k) if isinstance(k, int) else k
        s = (kh, kw) if s is None else ((s, s) if isinstance(s, int) else s)
        ph, pw = (p, p) if isinstance(p, int) else p
        x = rng.standard_normal((2, 2, H, W))
        layer = MaxPool2d(k, s, p)
        out = layer.forward(x)
        best = np.inf
        for n in range(2):
            for c in range(2):
                for oh in range(out.shape[2]):
                    for ow in range(out.shape[3]):
                        r0, c0 = oh * s[0] - ph, ow * s[1] - pw
                        vals = sorted(
                            (x[n, c, i, j] for i in range(max(r0, 0), min(r0 + kh, H))
                             for j in range(max(c0, 0), min(c0 + kw, W))), reverse=True)
                        assert vals[0] == out[n, c, oh, ow]
                        if len(vals) > 1:
                            best = min(best, vals[0] - vals[1])
        assert layer.max_margin() == best
    layer = MaxPool2d(1)
    layer.forward(rng.standard_normal((1, 1, 3, 3)))
    assert layer.max_margin() == np.inf
    g = GlobalMaxPool()
    g.forward(np.array([[[1.0, 4.0, 3.5]], [[0.0, -1.0, -3.0]]]))
    assert g.max_margin() == 0.5


def test_max_margin_predicts_kink():
    # A step larger than the margin changes a winner; the central difference is then wrong.
    x = np.array([[[[0.0, 1e-3], [-1.0, -2.0]]]])
    layer = MaxPool2d(2)
    layer.forward(x)
    assert layer.max_margin() == pytest.approx(1e-3)
    layer.backward(np.ones((1, 1, 1, 1)))
    f = lambda z: float(layer.forward(z).sum())  # noqa: E731
    assert rel_error(numeric_grad(f, x.copy(), h=1e-4), np.array([[[[0, 1.0], [0, 0]]]])) < 1e-7
    assert rel_error(numeric_grad(f, x.copy(), h=1e-2), np.array([[[[0, 1.0], [0, 0]]]])) > 1e-2


def test_avgpool_known_values():
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    out = AvgPool2d(2, 1, 1, count_include_pad=True).forward(x)
    assert out[0, 0, 0, 0] == 1.0 / 4
    out = AvgPool2d(2, 1, 1, count_include_pad=False).forward(x)
    assert out[0, 0, 0, 0] == 1.0
    assert out[0, 0, 1, 1] == (1 + 2 + 4 + 5) / 4
    assert out[0, 0, 3, 3] == 9.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows", [5, 4000])                 # serial and parallel kernels
def test_region_mean_numba_equals_reference(dtype, rows):
    """The Kohler model's pooling over I_κ (Numba, one pass, no gathered copy) equals the reference
    bit for bit, forward and backward (into an uninitialised ``out`` too), and the plain mean."""
    rng = np.random.default_rng(rows)
    d1, d2 = 9, 8
    pos = np.flatnonzero(kohler_index_set(d1, d2, 4).ravel())
    x = rng.standard_normal((rows, d1 * d2)).astype(dtype)
    out = pool_numba.region_mean_forward(x, pos)
    np.testing.assert_array_equal(out, pool_reference.region_mean_forward(x, pos))
    assert out.dtype == dtype
    exact = x[:, pos].astype(np.float64).mean(axis=1)            # summed in float64, rounded once
    np.testing.assert_allclose(out, exact, rtol=1e-12 if dtype == np.float64 else 1e-7)
    d = rng.standard_normal(rows).astype(dtype)
    dx = pool_numba.region_mean_backward(d, pos, d1 * d2)
    np.testing.assert_array_equal(dx, pool_reference.region_mean_backward(d, pos, d1 * d2))
    garbage = np.full((rows, d1 * d2), np.nan, dtype=dtype)
    np.testing.assert_array_equal(pool_numba.region_mean_backward(d, pos, d1 * d2, out=garbage), dx)
    # the adjoint pair: <dout, mean(x)> = <dx, x>
    assert abs(np.dot(d.astype(np.float64), out) - np.sum(dx.astype(np.float64) * x)) < 1e-4 * rows


def test_global_avgpool_kohler_equals_manual_average():
    rng = np.random.default_rng(5)
    d1, d2, kappa = 7, 6, 3
    mask = kohler_index_set(d1, d2, kappa)
    assert mask.shape == (d1, d2) and mask.sum() == (d1 - kappa + 1) * (d2 - kappa + 1)
    assert mask[d1 - kappa, d2 - kappa] and not mask[d1 - kappa + 1, 0] and not mask[0, d2 - kappa + 1]
    x = rng.standard_normal((3, 2, d1, d2))
    manual = np.zeros((3, 2))
    for i in range(d1 - kappa + 1):
        for j in range(d2 - kappa + 1):
            manual += x[:, :, i, j]
    manual /= (d1 - kappa + 1) * (d2 - kappa + 1)
    np.testing.assert_allclose(GlobalAvgPool(mask).forward(x), manual, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(
        GlobalAvgPool((slice(0, d1 - kappa + 1), slice(0, d2 - kappa + 1))).forward(x), manual,
        rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(kohler_index_set(4, 5, 1), np.ones((4, 5), bool))
    full = GlobalAvgPool().forward(x)
    np.testing.assert_allclose(full, x.mean(axis=(2, 3)), rtol=1e-14, atol=1e-15)


# ------------------------------------------------------------------ Numba == reference
def _random_config(rng):
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
    H = int(rng.integers(max(1, kh - 2 * ph), 9))
    W = int(rng.integers(max(1, kw - 2 * pw), 9))
    return (int(rng.integers(1, 3)), int(rng.integers(1, 4)), H, W), (kh, kw), (sh, sw), (ph, pw)


@pytest.mark.parametrize("parallel", [False, True])
def test_numba_equals_reference(parallel, monkeypatch):
    if parallel:  # force the prange kernels even on these small shapes
        monkeypatch.setattr(pool_numba, "PARALLEL_MIN_WORK", 0)
    rng = np.random.default_rng(2024 + parallel)
    for trial in range(60):
        shape, kernel, stride, padding = _random_config(rng)
        dtype = np.float32 if trial % 4 == 3 else np.float64
        if trial % 2:  # integer values: many exact ties
            x = rng.integers(-2, 3, size=shape).astype(dtype)
        else:
            x = rng.standard_normal(shape).astype(dtype)
        if trial % 5 == 0:  # a non-contiguous input
            x = np.asfortranarray(x)
        o1, a1 = pool_reference.maxpool2d_forward(x, kernel, stride, padding)
        o2, a2 = pool_numba.maxpool2d_forward(x, kernel, stride, padding)
        assert o1.dtype == o2.dtype == dtype
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(a1, a2)
        dout = rng.standard_normal(o1.shape).astype(dtype)
        d1 = pool_reference.maxpool2d_backward(dout, a1, shape[2:])
        d2 = pool_numba.maxpool2d_backward(dout, a2, shape[2:])
        assert d1.dtype == d2.dtype == dtype
        np.testing.assert_array_equal(d1, d2)


def test_numba_reference_edge_values():
    # All −∞ windows: the first real pixel wins (never a padded position); NaN wins and propagates.
    x = np.full((1, 1, 3, 3), -np.inf)
    x[0, 0, 2, 2] = np.nan
    for mod in (pool_reference, pool_numba):
        out, arg = mod.maxpool2d_forward(x, (2, 2), (1, 1), (1, 1))
        # Window (oh, ow) covers rows oh−1..oh and columns ow−1..ow; the NaN sits at index 8.
        np.testing.assert_array_equal(arg[0, 0], [[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 8, 8], [6, 6, 8, 8]])
        assert np.all(np.isnan(out[0, 0, 2:, 2:]))
        assert np.all(out[0, 0, :2] == -np.inf) and np.all(out[0, 0, 2:, :2] == -np.inf)


# ------------------------------------------------------------------ protocol
def _layers():
    return [
        (MaxPool2d(3, 2, 1), (2, 3, 7, 6)),
        (MaxPool2d(3, 2, 1, backend="numpy"), (2, 3, 7, 6)),
        (AvgPool2d(3, 1, 1, count_include_pad=False), (2, 3, 5, 4)),
        (GlobalMaxPool(), (2, 3, 4, 5)),
        (GlobalAvgPool(kohler_index_set(4, 5, 2)), (2, 3, 4, 5)),
    ]


@pytest.mark.parametrize("i", range(5))
def test_backward_twice_inputs_and_cache_unmodified(i):
    layer, shape = _layers()[i]
    rng = np.random.default_rng(i)
    x = rng.standard_normal(shape)
    x0 = x.copy()
    out = layer.forward(x)
    cache0 = copy.deepcopy(layer.cache)
    dout = rng.standard_normal(out.shape)
    dout0 = dout.copy()
    dx1 = layer.backward(dout)
    dx2 = layer.backward(dout)
    np.testing.assert_array_equal(dx1, dx2)
    assert dx1 is not dx2 and dx1.shape == x.shape and dx1.dtype == x.dtype
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dout, dout0)
    for a, b in zip(layer.cache, cache0):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b
    assert layer.grads == {} and layer.params == {} and layer.gram() == {}
    # Backward is linear in dout and does not accumulate across calls.
    np.testing.assert_allclose(layer.backward(2 * dout), 2 * dx1, rtol=1e-15, atol=0)
    # jvp is the adjoint of backward: ⟨J u, v⟩ = ⟨u, Jᵀ v⟩ (winners fixed at the last forward).
    u = rng.standard_normal(shape)
    np.testing.assert_allclose(np.sum(layer.jvp(u) * dout), np.sum(u * dx1), rtol=1e-12)
    assert np.all(layer.jvp(None) == 0) and layer.jvp(None).shape == out.shape


@pytest.mark.parametrize("i", range(5))
def test_float32(i):
    layer, shape = _layers()[i]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = layer.forward(x)
    assert out.dtype == np.float32
    dx = layer.backward(np.ones_like(out))
    assert dx.dtype == np.float32
    ref = _layers()[i][0]
    out64 = ref.forward(x.astype(np.float64))
    np.testing.assert_allclose(out, out64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, ref.backward(np.ones_like(out64)), rtol=1e-6, atol=1e-6)


def test_pure_functions_match_layers():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 2, 6, 5))
    out, cache = maxpool2d_forward(x, 3, 2, 1)
    layer = MaxPool2d(3, 2, 1)
    np.testing.assert_array_equal(out, layer.forward(x))
    dout = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(maxpool2d_backward(dout, cache), layer.backward(dout))
    out, cache = avgpool2d_forward(x, (2, 3), 1, (1, 0))
    assert out.shape == (2, 2, 7, 3)
    assert avgpool2d_backward(np.ones_like(out), cache).shape == x.shape


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("make, shape", [
    (lambda: MaxPool2d(2, name="pool1"), (1, 1, 4, 4)),
    (lambda: AvgPool2d(2, name="pool1"), (1, 1, 4, 4)),
    (lambda: GlobalMaxPool(name="pool1"), (1, 1, 4)),
    (lambda: GlobalAvgPool(name="pool1"), (1, 1, 4)),
])
def test_bad_input_names_layer(make, shape):
    layer = make()
    x = np.random.default_rng(0).standard_normal(shape)
    with pytest.raises(RuntimeError, match="pool1.*before forward"):
        layer.backward(np.ones((1, 1)))
    with pytest.raises(ValueError, match="pool1.*ndim"):
        layer.forward(x[0])
    with pytest.raises(TypeError, match="pool1.*float"):
        layer.forward(np.ones(shape, dtype=np.int64))
    with pytest.raises(TypeError, match="pool1.*ndarray"):
        layer.forward(x.tolist())
    bad = x.copy()
    bad.flat[1] = np.nan
    with pytest.raises(ValueError, match="pool1.*non-finite"):
        layer.forward(bad)
    out = layer.forward(x)
    with pytest.raises(ValueError, match="pool1.*dout must have the shape"):
        layer.backward(np.ones(out.shape + (1,)))
    with pytest.raises(TypeError, match="pool1.*dout"):
        layer.backward(np.ones(out.shape, dtype=np.float32))
    with pytest.raises(ValueError, match="pool1.*non-finite"):
        layer.backward(np.full(out.shape, np.inf))


def test_bad_geometry_names_layer():
    x = np.zeros((1, 1, 2, 3))
    with pytest.raises(ValueError, match=r"pl: window \(3, 3\) is larger than the padded input \(2, 3\)"):
        MaxPool2d(3, name="pl").forward(x)
    with pytest.raises(ValueError, match=r"pl: window \(4, 4\) is larger than the padded input \(3, 5\)"):
        AvgPool2d(4, 1, 1, name="pl").forward(x[:, :, :1])
    MaxPool2d(3, 1, 1).forward(x)  # fits once padded
    with pytest.raises(ValueError, match="pl: padding .* at most half"):
        MaxPool2d(3, padding=2, name="pl")
    with pytest.raises(ValueError, match="pl: padding .* at most half"):
        AvgPool2d(1, padding=1, name="pl")
    with pytest.raises(ValueError, match="pl: padding must be >= 0"):
        MaxPool2d(3, padding=-1, name="pl")
    for bad in (0, -2, True, 1.5, (2, 2, 2)):
        with pytest.raises(ValueError, match="pl: kernel_size"):
            MaxPool2d(bad, name="pl")
    with pytest.raises(ValueError, match="pl: stride"):
        AvgPool2d(2, stride=0, name="pl")
    with pytest.raises(ValueError, match="pl: backend"):
        MaxPool2d(2, backend="cuda", name="pl")
    with pytest.raises(ValueError, match="maxpool2d_forward: window"):
        maxpool2d_forward(x, 4)
    with pytest.raises(ValueError, match="GlobalMaxPool: input has an empty spatial axis"):
        GlobalMaxPool().forward(np.zeros((1, 2, 0)))
    with pytest.raises(RuntimeError, match="MaxPool2d: max_margin called before forward"):
        MaxPool2d(2).max_margin()


def test_bad_region():
    x = np.zeros((1, 1, 4, 5))
    with pytest.raises(ValueError, match=r"gap: region mask has shape \(4, 4\).*\(4, 5\)"):
        GlobalAvgPool(np.ones((4, 4), bool), name="gap").forward(x)
    with pytest.raises(ValueError, match="gap: region mask selects no position"):
        GlobalAvgPool(np.zeros((4, 5), bool), name="gap")
    with pytest.raises(TypeError, match="gap: region must be None"):
        GlobalAvgPool(np.ones((4, 5)), name="gap")
    with pytest.raises(TypeError, match="gap: region must be None"):
        GlobalAvgPool(3, name="gap")
    with pytest.raises(ValueError, match="gap: region has 1 slices but the input has 2 spatial axes"):
        GlobalAvgPool(slice(0, 2), name="gap").forward(x)
    with pytest.raises(ValueError, match="gap: region .* selects no position"):
        GlobalAvgPool((slice(5, None), slice(None)), name="gap").forward(x)
    # The layer keeps its own copy of the mask.
    m = np.ones((4, 5), bool)
    layer = GlobalAvgPool(m)
    m[:] = False
    assert layer.forward(np.ones((1, 1, 4, 5)))[0, 0] == 1.0
    with pytest.raises(ValueError, match="kohler_index_set: kappa must be at most"):
        kohler_index_set(4, 5, 5)
    with pytest.raises(ValueError, match="kohler_index_set: kappa must be a positive"):
        kohler_index_set(4, 5, 0)
