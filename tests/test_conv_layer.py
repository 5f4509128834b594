"""Conv2d and Conv1d: gradients by central differences, exact Gram shares, jvp, the protocol, errors."""
import numpy as np
import pytest

from refnets.layers.base import Layer
from refnets.layers.conv import (Conv1d, Conv2d, conv2d_backward, conv2d_forward, conv2d_gram,
                                 patches1d, resolve_padding)


# --------------------------------------------------------------------------- helpers
def central_diff(f, a, h=1e-5):
    """∂f/∂a by central differences; a is perturbed in place and restored."""
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + h
        fp = f()
        flat[k] = old - h
        fm = f()
        flat[k] = old
        gflat[k] = (fp - fm) / (2 * h)
    return g


def rel(a, b):
    """CS231n relative error over the tensor's scale: max |a−b| / max(|a| + |b|)."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-300))


def gradcheck(layer, x, rng):
    """Check dx and every parameter gradient of ⟨r, layer(x)⟩ for a random r."""
    r = rng.standard_normal(layer.forward(x).shape)

    def loss():
        return float(np.sum(r * layer.forward(x)))

    layer.forward(x)
    dx = layer.backward(r)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    assert rel(dx, central_diff(loss, x)) < 1e-7
    for name, p in layer.params.items():
        assert rel(grads[name], central_diff(loss, p)) < 1e-7, name


CONV2D_CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2),
         groups=2, scale=0.7),
    dict(in_channels=2, out_channels=8, kernel_size=3, padding="bottom_right", groups=2),   # direct strategy
    dict(in_channels=2, out_channels=3, kernel_size=(2, 4), padding="same"),                # even: asymmetric
    dict(in_channels=3, out_channels=2, kernel_size=1, stride=2, bias=False),
]


@pytest.mark.parametrize("kw", CONV2D_CASES)
def test_conv2d_gradcheck(kw, rng):
    layer = Conv2d(**kw, rng=1, bias_init=lambda g, s, d: g.standard_normal(s).astype(d))
    x = rng.standard_normal((2, kw["in_channels"], 5, 6))
    gradcheck(layer, x, rng)


@pytest.mark.parametrize("kw", [dict(kernel_size=3, padding="same"),
                                dict(kernel_size=2, stride=2, padding=(1, 0), dilation=1, groups=3),
                                dict(kernel_size=3, dilation=2, padding=1, scale=1.3)])
def test_conv1d_gradcheck(kw, rng):
    layer = Conv1d(3, 6, **kw, rng=2, bias_init=lambda g, s, d: g.standard_normal(s).astype(d))
    gradcheck(layer, rng.standard_normal((3, 3, 7)), rng)


# ---------------------------------------------------------------------------- shapes
def test_output_size_formula_and_padding_modes():
    x = np.zeros((1, 1, 7, 8))
    c = Conv2d(1, 1, (3, 2), stride=(2, 3), padding=(1, 2, 0, 1), dilation=(2, 1))
    H_out = (7 + 1 + 2 - 2 * (3 - 1) - 1) // 2 + 1
    W_out = (8 + 0 + 1 - 1 * (2 - 1) - 1) // 3 + 1
    assert c(x).shape == (1, 1, H_out, W_out)
    assert resolve_padding("t", "same", (4, 3)) == (1, 2, 1, 1)          # extra at bottom, like PyTorch
    assert resolve_padding("t", "same", (3, 3), dilation=(2, 1)) == (2, 2, 1, 1)
    assert resolve_padding("t", "bottom_right", (3, 5)) == (0, 2, 0, 4)
    assert resolve_padding("t", "valid", (3, 5)) == (0, 0, 0, 0)
    assert resolve_padding("t", (1, 2), (3, 3)) == (1, 1, 2, 2)
    assert Conv2d(1, 1, 4, padding="same")(x).shape == x.shape
    assert Conv2d(1, 1, 3, padding="bottom_right")(x).shape == x.shape


def test_bottom_right_anchors_the_filter_at_its_top_left_tap(rng):
    """Kohler et al. 2024: o_(i,j) = Σ_{t1,t2} w_{t1,t2} x_(i+t1, j+t2), inside the image only."""
    x = rng.standard_normal((1, 1, 5, 4))
    c = Conv2d(1, 1, 3, padding="bottom_right", bias=False, rng=0)
    w = c.params["W"][0, 0]
    want = np.zeros((5, 4))
    for i in range(5):
        for j in range(4):
            for t1 in range(3):
                for t2 in range(3):
                    if i + t1 < 5 and j + t2 < 4:
                        want[i, j] += w[t1, t2] * x[0, 0, i + t1, j + t2]
    np.testing.assert_allclose(c(x)[0, 0], want, rtol=0, atol=1e-14)


def test_grouped_conv_is_parallel_independent_convs(rng):
    """Kohler's K_n parallel nets as one grouped conv: group g only sees its input channels."""
    x = rng.standard_normal((2, 3, 6, 6))
    c = Conv2d(3, 6, 3, padding=1, groups=3, rng=0)
    out = c(x)
    for g in range(3):
        single = Conv2d(1, 2, 3, padding=1, rng=0)
        single.params["W"][...] = c.params["W"][2 * g:2 * g + 2]
        single.params["b"][...] = c.params["b"][2 * g:2 * g + 2]
        np.testing.assert_allclose(out[:, 2 * g:2 * g + 2], single(x[:, g:g + 1]), rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------- Du's φ
def test_patches1d_by_definition(rng):
    x = rng.standard_normal((2, 3, 5))
    phi = patches1d(x, 3)
    assert phi.shape == (2, 9, 5)
    for c in range(3):
        for t in range(3):
            for l in range(5):
                pos = l + t - 1                             # positions l-(q-1)/2 .. l+(q-1)/2
                want = x[:, c, pos] if 0 <= pos < 5 else 0.0
                np.testing.assert_array_equal(phi[:, c * 3 + t, l], want)


@pytest.mark.parametrize("q", [1, 3, 5, 4])
def test_conv1d_is_W_times_phi(q, rng):
    """Du et al. 2019 Eq. (3): W⁽ʰ⁾ φ_h(x) = Conv1d(kernel q, stride 1, 'same', no bias)(x)."""
    x = rng.standard_normal((3, 4, 9))
    conv = Conv1d(4, 5, q, padding="same", bias=False, scale=0.5, rng=3)
    Wh = conv.params["W"].reshape(5, 4 * q)
    want = 0.5 * np.einsum("mk,nkl->nml", Wh, patches1d(x, q))
    np.testing.assert_allclose(conv(x), want, rtol=0, atol=1e-13)


# ----------------------------------------------------------------- Gram and forward mode
def per_sample_grads(layer, x, dout):
    """Explicit ∂u_i/∂θ: backward with dout kept only in row i."""
    layer.forward(x)
    out = []
    for i in range(x.shape[0]):
        di = np.zeros_like(dout)
        di[i] = dout[i]
        layer.backward(di)
        out.append({k: v.copy() for k, v in layer.grads.items()})
    return out


def explicit_gram(grads, name):
    J = np.stack([g[name].ravel() for g in grads])
    return J @ J.T


@pytest.mark.parametrize("layer", [
    Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=2, scale=0.7, rng=0),
    Conv2d(2, 8, 3, padding="bottom_right", groups=2, rng=0),
    Conv1d(4, 6, 3, padding="same", groups=2, scale=1.5, rng=0),
], ids=["conv2d", "conv2d-direct", "conv1d"])
def test_gram_equals_gram_of_per_sample_gradients(layer, rng):
    x = rng.standard_normal((4, 4 if layer.in_channels == 4 else 2) + ((7,) if layer.ndim == 3 else (5, 6)))
    dout = rng.standard_normal(layer.forward(x).shape)
    grads = per_sample_grads(layer, x, dout)
    layer.forward(x)
    layer.backward(dout)
    G = layer.gram()
    for name in ("W", "b"):
        want = explicit_gram(grads, name)
        assert G[name].shape == (4, 4)
        assert np.max(np.abs(G[name] - want)) < 1e-10 * np.max(np.abs(want))
    # both exact forms, forced
    dout4 = dout if dout.ndim == 4 else dout[:, :, None, :]
    for method in ("per_sample", "trace"):
        Gm = conv2d_gram(dout4, layer.cache, method=method)["W"]
        assert np.max(np.abs(Gm - explicit_gram(grads, "W"))) < 1e-10 * np.max(np.abs(Gm))


@pytest.mark.parametrize("layer, xshape", [
    (Conv2d(6, 4, (2, 3), stride=(2, 3), padding=(1, 2, 0, 1), dilation=(2, 1), groups=2, rng=1), (5, 6, 7, 8)),
    (Conv2d(3, 5, 3, padding=1, rng=2), (3, 3, 4, 4)),
    (Conv1d(4, 6, 3, stride=2, padding=(2, 1), dilation=2, rng=3), (5, 4, 9)),
], ids=["conv2d-strided-grouped", "conv2d", "conv1d-strided"])
def test_gram_per_sample_in_blocks_exact_and_thread_independent(layer, xshape, rng, monkeypatch):
    """The blocked per-sample form (many patch-row blocks and slots) is exact and bit-identical for any
    number of threads."""
    import numba

    from refnets.kernels import conv_numba
    monkeypatch.setattr(conv_numba, "GRAM_BLOCK_BYTES", 1)      # kb = 1: one block per patch row
    monkeypatch.setattr(conv_numba, "GRAM_ROW_BLOCK", 1)        # J Jᵀ in 3-4 row blocks, upper ones mirrored
    monkeypatch.setattr(conv_numba, "SERIAL_MAX_MACS", 0)       # the parallel region even for tiny shapes
    x = rng.standard_normal(xshape)
    dout = rng.standard_normal(layer.forward(x).shape)
    grads = per_sample_grads(layer, x, dout)
    layer.forward(x)
    dout4 = dout if dout.ndim == 4 else dout[:, :, None, :]
    want = explicit_gram(grads, "W")
    runs = []
    saved = numba.get_num_threads()
    try:
        for t in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(t)
            runs.append(conv2d_gram(dout4, layer.cache, method="per_sample")["W"])
    finally:
        numba.set_num_threads(saved)
    assert np.max(np.abs(runs[0] - want)) < 1e-10 * np.max(np.abs(want))
    np.testing.assert_array_equal(runs[0], runs[0].T)
    for G in runs[1:]:
        np.testing.assert_array_equal(G, runs[0])
    xc, Wc, _, scale, st, pad, dil, groups = layer.cache            # the 4-D views, also for Conv1d
    G32 = conv_numba.conv2d_gram_weight(dout4.astype(np.float32), xc.astype(np.float32), Wc.shape, st, pad, dil,
                                        groups)
    assert G32.dtype == np.float32
    assert np.max(np.abs(scale * scale * G32 - runs[0])) < 1e-4 * np.max(np.abs(runs[0]))


@pytest.mark.parametrize("layer, xshape", [
    (Conv2d(4, 6, 3, stride=(1, 2), padding=(0, 1, 1, 2), groups=2, scale=0.7, rng=0), (2, 4, 6, 5)),
    (Conv1d(3, 4, 3, padding="same", scale=1.3, rng=0), (2, 3, 6)),
])
def test_jvp_against_finite_differences(layer, xshape, rng):
    x = rng.standard_normal(xshape)
    layer.params["b"][...] = rng.standard_normal(layer.params["b"].shape)
    dx = rng.standard_normal(xshape)
    dp = {k: rng.standard_normal(v.shape) for k, v in layer.params.items()}
    saved = {k: v.copy() for k, v in layer.params.items()}
    h = 1e-5

    def f(t):
        for k, v in layer.params.items():
            v[...] = saved[k] + t * dp[k]
        return layer.forward(x + t * dx)

    fd = (f(h) - f(-h)) / (2 * h)
    f(0.0)
    assert rel(layer.jvp(dx, dp), fd) < 1e-8
    assert rel(layer.jvp(None, {"W": dp["W"]}) + layer.jvp(dx, None), layer.jvp(dx, {"W": dp["W"]})) < 1e-14
    np.testing.assert_array_equal(layer.jvp(None, None), np.zeros_like(fd))


# ------------------------------------------------------------------------ the protocol
@pytest.mark.parametrize("layer, xshape", [
    (Conv2d(4, 6, 3, padding=1, groups=2, rng=0), (3, 4, 5, 5)),
    (Conv2d(4, 8, 3, padding=1, groups=4, rng=0), (3, 4, 5, 5)),
    (Conv1d(2, 3, 3, rng=0), (3, 2, 6)),
])
def test_backward_twice_identical_and_nothing_modified(layer, xshape, rng):
    assert isinstance(layer, Layer)
    x = rng.standard_normal(xshape)
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    saved = [a.copy() for a in (x, dout, *layer.params.values())]
    cache_saved = [a.copy() if isinstance(a, np.ndarray) else a for a in layer.cache]
    dx1 = layer.backward(dout)
    g1 = {k: v.copy() for k, v in layer.grads.items()}
    dx2 = layer.backward(dout)
    np.testing.assert_array_equal(dx1, dx2)
    for k in g1:
        np.testing.assert_array_equal(g1[k], layer.grads[k])         # overwritten, not accumulated
    for a, s in zip((x, dout, *layer.params.values()), saved):
        np.testing.assert_array_equal(a, s)
    for a, s in zip(layer.cache, cache_saved):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, s)
        else:
            assert a == s


def test_float32_layer(rng):
    c64 = Conv2d(3, 4, 3, padding=1, rng=5)
    c32 = Conv2d(3, 4, 3, padding=1, rng=5, dtype=np.float32)
    x = rng.standard_normal((2, 3, 6, 6))
    o32 = c32(x.astype(np.float32))
    assert o32.dtype == np.float32
    assert rel(o32, c64(x)) < 1e-6
    dx = c32.backward(np.ones_like(o32))
    assert dx.dtype == np.float32 and c32.grads["W"].dtype == np.float32


def test_same_seed_same_bits_and_default_init():
    a, b = Conv2d(3, 8, 3), Conv2d(3, 8, 3)
    np.testing.assert_array_equal(a.params["W"], b.params["W"])
    assert a.params["W"].shape == (8, 3, 3, 3) and np.all(a.params["b"] == 0)
    assert Conv2d(4, 8, 3, groups=2).params["W"].shape == (8, 2, 3, 3)
    assert Conv1d(4, 8, 5, groups=4).params["W"].shape == (8, 1, 5)


# ------------------------------------------------------------------------------ errors
@pytest.fixture(params=["conv2d", "conv1d"])
def named(request):
    if request.param == "conv2d":
        return Conv2d(3, 4, 3, name="conv_a"), (2, 3, 5, 5)
    return Conv1d(3, 4, 3, name="conv_a"), (2, 3, 5)


def test_error_wrong_ndim(named):
    layer, shape = named
    with pytest.raises(ValueError, match=r"conv_a.*ndim"):
        layer.forward(np.zeros(shape[:-1]))


def test_error_wrong_channels(named):
    layer, shape = named
    bad = (shape[0], 5) + shape[2:]
    with pytest.raises(ValueError, match=r"conv_a.*in_channels.*3.*5"):
        layer.forward(np.zeros(bad))


def test_error_wrong_dtype(named):
    layer, shape = named
    with pytest.raises(TypeError, match=r"conv_a.*float32"):
        layer.forward(np.zeros(shape, dtype=np.float32))
    with pytest.raises(TypeError, match=r"conv_a"):
        layer.forward(np.zeros(shape, dtype=np.int64))


def test_error_nan(named):
    layer, shape = named
    x = np.zeros(shape)
    x[(0,) * len(shape)] = np.nan
    with pytest.raises(ValueError, match=r"conv_a.*non-finite"):
        layer.forward(x)


def test_error_backward_before_forward(named):
    layer, shape = named
    with pytest.raises(RuntimeError, match=r"conv_a.*before forward"):
        layer.backward(np.zeros(shape))


def test_error_wrong_dout_shape(named):
    layer, shape = named
    out = layer.forward(np.zeros(shape))
    with pytest.raises(ValueError, match=r"conv_a.*dout.*shape"):
        layer.backward(np.zeros(out.shape[:-1] + (out.shape[-1] + 1,)))


def test_error_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"conv_b: kernel 5x3 .*larger than the padded input 4x6 \(input 2x4"):
        Conv2d(1, 1, (5, 3), padding=1, name="conv_b").forward(np.zeros((1, 1, 2, 4)))
    with pytest.raises(ValueError, match=r"conv_c: kernel 3 \(dilated extent 5\).*padded input 4"):
        Conv1d(1, 1, 3, dilation=2, padding=(0, 1), name="conv_c").forward(np.zeros((1, 1, 3)))
    # a kernel larger than the unpadded input is fine when the padding makes room
    assert Conv2d(1, 1, 5, padding=2)(np.zeros((1, 1, 2, 2))).shape == (1, 1, 2, 2)


def test_error_bad_construction():
    with pytest.raises(ValueError, match=r"conv_d: groups=3 must divide in_channels=4"):
        Conv2d(4, 6, 3, groups=3, name="conv_d")
    with pytest.raises(ValueError, match=r"conv_d: padding='same' needs stride 1"):
        Conv2d(4, 6, 3, stride=2, padding="same", name="conv_d")
    with pytest.raises(ValueError, match=r"conv_d: padding must be"):
        Conv2d(4, 6, 3, padding="full", name="conv_d")
    with pytest.raises(ValueError, match=r"conv_d: padding must be >= 0"):
        Conv2d(4, 6, 3, padding=(1, -1, 0, 0), name="conv_d")
    with pytest.raises(ValueError, match=r"conv_d: stride"):
        Conv2d(4, 6, 3, stride=0, name="conv_d")
    with pytest.raises(ValueError, match=r"conv_d: kernel_size"):
        Conv1d(4, 6, (3, 3), name="conv_d")
    with pytest.raises(TypeError, match=r"conv_d: dtype"):
        Conv2d(4, 6, 3, dtype=np.int32, name="conv_d")


def test_gram_before_backward_names_layer():
    layer = Conv2d(1, 2, 3, name="conv_e")
    with pytest.raises(RuntimeError, match="conv_e"):
        layer.gram()
    layer.forward(np.zeros((1, 1, 4, 4)))
    with pytest.raises(RuntimeError, match="conv_e.*before backward"):
        layer.gram()


def test_pure_functions_round_trip(rng):
    x, W, b = rng.standard_normal((2, 2, 4, 4)), rng.standard_normal((3, 2, 2, 2)), rng.standard_normal(3)
    out, cache = conv2d_forward(x, W, b, padding="same", scale=2.0)
    dx, dW, db = conv2d_backward(np.ones_like(out), cache)
    assert out.shape == (2, 3, 4, 4) and dx.shape == x.shape and dW.shape == W.shape
    np.testing.assert_allclose(db, np.full(3, 2 * 16.0))
