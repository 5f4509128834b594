"""The Numba convolution kernels equal the NumPy reference kernels (1e-12 relative in float64).

Random geometries from a seeded generator: odd sizes, strides, asymmetric and bottom/right-only
padding, dilation, groups, 1×1 kernels and kernels larger than the unpadded input. Both
strategies ("gemm" and "direct") are run explicitly on every configuration, and the "gemm"
strategy is also run with tiny chunks so that several sample chunks are reduced.
"""
import numpy as np
import pytest

from refnets import kernels
from refnets.kernels import conv_numba as K
from refnets.kernels import conv_reference as R

STRATEGIES = ("gemm", "direct")


def rel(a, b):
    """max |a − b| / max |b|: the error relative to the scale of the reference tensor."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def random_config(rng):
    """One random valid geometry (shapes, stride, per-side padding, dilation, groups)."""
    while True:
        G = int(rng.choice([1, 1, 2, 3]))
        cig, cog = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        kind = rng.integers(0, 3)
        if kind == 0:
            pad = tuple(int(v) for v in rng.integers(0, 4, size=4))          # asymmetric
        elif kind == 1:
            pad = (0, dil[0] * (kh - 1), 0, dil[1] * (kw - 1))               # bottom_right
        else:
            pad = (0, 0, 0, 0)
        H, W = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        if H + pad[0] + pad[1] >= dil[0] * (kh - 1) + 1 and W + pad[2] + pad[3] >= dil[1] * (kw - 1) + 1:
            N = int(rng.integers(1, 5))
            return (N, G * cig, H, W), (G * cog, cig, kh, kw), (stride, pad, dil, G)


FIXED = [
    # 1x1 kernel, stride 2
    ((2, 4, 5, 7), (6, 4, 1, 1), ((2, 2), (0, 0, 0, 0), (1, 1), 1)),
    # kernel larger than the unpadded input (3x2 input, 4x4 kernel)
    ((2, 2, 3, 2), (4, 2, 4, 4), ((1, 1), (1, 1, 2, 1), (1, 1), 1)),
    # Kohler's anchoring: bottom/right padding only, grouped like the K_n parallel nets
    ((3, 4, 6, 5), (8, 1, 3, 3), ((1, 1), (0, 2, 0, 2), (1, 1), 4)),
    # dilation with asymmetric padding and odd sizes
    ((2, 3, 9, 7), (5, 3, 3, 2), ((1, 2), (3, 0, 1, 2), (2, 3), 1)),
    # channel-heavy (the gemm strategy's home ground)
    ((3, 12, 6, 6), (10, 6, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 2)),
]


def reference_all(x, W, b, d, geo):
    return (R.conv2d_forward(x, W, b, *geo), R.conv2d_grad_input(d, W, x.shape, *geo),
            R.conv2d_grad_weight(d, x, W.shape, *geo), R.conv2d_grad_bias(d))


def numba_all(x, W, b, d, geo, strategy):
    out = K.conv2d_forward(x, W, b, *geo, strategy=strategy)
    dx, dW, db = K.conv2d_backward(d, x, W, *geo, strategy=strategy)
    dx2 = K.conv2d_grad_input(d, W, x.shape, *geo, strategy=strategy)
    dW2 = K.conv2d_grad_weight(d, x, W.shape, *geo, strategy=strategy)
    # the fused backward and the separate kernels agree; fastmath may vectorise the two loop
    # bodies differently, so the last bit can differ (each is deterministic on its own)
    np.testing.assert_allclose(dx, dx2, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dW, dW2, rtol=1e-13, atol=1e-15)
    return out, dx, dW, db


def configs(n, seed):
    rng = np.random.default_rng(seed)
    return FIXED + [random_config(rng) for _ in range(n)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_numba_equals_reference_float64(strategy):
    rng = np.random.default_rng(7)
    for xs, ws, geo in configs(60, 11):
        x, W = rng.standard_normal(xs), rng.standard_normal(ws)
        b = rng.standard_normal(ws[0])
        d = rng.standard_normal(R.conv2d_forward(x, W, b, *geo).shape)
        refs = reference_all(x, W, b, d, geo)
        got = numba_all(x, W, b, d, geo, strategy)
        for what, g, r in zip(("out", "dx", "dW", "db"), got, refs):
            assert g.shape == r.shape and g.dtype == np.float64, (what, xs, ws, geo)
            assert rel(g, r) < 1e-12, (strategy, what, xs, ws, geo, rel(g, r))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_numba_equals_reference_float32(strategy):
    rng = np.random.default_rng(8)
    for xs, ws, geo in configs(25, 12):
        x, W = rng.standard_normal(xs), rng.standard_normal(ws)
        b = rng.standard_normal(ws[0])
        d = rng.standard_normal(R.conv2d_forward(x, W, b, *geo).shape)
        refs = reference_all(x, W, b, d, geo)                      # float64 truth
        f32 = [a.astype(np.float32) for a in (x, W, b, d)]
        got = numba_all(*f32, geo, strategy)
        for what, g, r in zip(("out", "dx", "dW", "db"), got, refs):
            assert g.dtype == np.float32, what
            assert rel(g, r) < 2e-6, (strategy, what, xs, ws, geo, rel(g, r))


@pytest.mark.parametrize("partial_bytes", [None, 1])
def test_gemm_with_more_samples_than_slots(monkeypatch, partial_bytes):
    """Slots own several samples (and, with PARTIAL_BYTES = 1, one slot owns them all): the slots'
    weight gradients are reduced in order, dx assembled per sample."""
    rng = np.random.default_rng(9)
    xs, ws, geo = (K.MAX_SLOTS * 2 + 3, 4, 5, 6), (6, 2, 3, 2), ((1, 2), (1, 0, 2, 1), (1, 1), 2)
    x, W, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(6)
    d = rng.standard_normal(R.conv2d_forward(x, W, b, *geo).shape)
    refs = reference_all(x, W, b, d, geo)
    if partial_bytes:
        monkeypatch.setattr(K, "PARTIAL_BYTES", partial_bytes)
    got = numba_all(x, W, b, d, geo, "gemm")
    for g, r in zip(got, refs):
        assert rel(g, r) < 1e-12


def test_direct_with_more_samples_than_chunks():
    rng = np.random.default_rng(10)
    xs, ws, geo = (K.MAX_SLOTS * 2 + 3, 2, 4, 5), (4, 1, 2, 3), ((1, 1), (0, 1, 0, 2), (1, 1), 2)
    x, W, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(4)
    d = rng.standard_normal(R.conv2d_forward(x, W, b, *geo).shape)
    for g, r in zip(numba_all(x, W, b, d, geo, "direct"), reference_all(x, W, b, d, geo)):
        assert rel(g, r) < 1e-12


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_serial_path_for_tiny_calls_is_bit_identical_to_the_parallel_one(strategy, monkeypatch):
    """Calls below SERIAL_MAX_MACS run on one thread: same kernels, same slots, same bits; both match
    the reference."""
    import numba
    threads = []
    real_set = numba.set_num_threads

    def spy(n):
        threads.append(n)
        real_set(n)
    monkeypatch.setattr(numba, "set_num_threads", spy)      # refnets.kernels.threads calls it
    for xs, ws, geo in FIXED[:3] + [((2, 2, 5, 5), (2, 2, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 1))]:
        rng = np.random.default_rng(11)
        x, W, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
        d = rng.standard_normal(R.conv2d_forward(x, W, b, *geo).shape)
        runs = []
        for limit in (0, 1 << 62):                          # always parallel, always serial
            monkeypatch.setattr(K, "SERIAL_MAX_MACS", limit)
            runs.append((K.conv2d_forward(x, W, b, *geo, strategy=strategy),)
                        + K.conv2d_backward(d, x, W, *geo, strategy=strategy))
        for a, c in zip(*runs):
            np.testing.assert_array_equal(a, c)
        for g, r in zip(runs[1], (R.conv2d_forward(x, W, b, *geo),) + reference_all(x, W, b, d, geo)[1:]):
            assert rel(g, r) < 1e-12
    if numba.get_num_threads() > 1:
        assert 1 in threads                                  # the serial path was taken


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_deterministic_and_inputs_untouched(strategy):
    rng = np.random.default_rng(3)
    x, W = rng.standard_normal((5, 4, 7, 6)), rng.standard_normal((4, 2, 3, 3))
    geo = ((1, 1), (1, 1, 1, 1), (1, 1), 2)
    d = rng.standard_normal((5, 4, 7, 6))
    copies = [a.copy() for a in (x, W, d)]
    first = K.conv2d_backward(d, x, W, *geo, strategy=strategy)
    second = K.conv2d_backward(d, x, W, *geo, strategy=strategy)
    for a, c in zip((x, W, d), copies):
        np.testing.assert_array_equal(a, c)
    for a, c in zip(first, second):
        np.testing.assert_array_equal(a, c)


def test_im2col_layout_matches_reference():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 5, 7))
    geo = dict(stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2))
    ref = R.im2col(x, 3, 2, **geo)                                  # (N, C, kh, kw, Ho, Wo)
    got = kernels.im2col_kernel(x, 3, 2, **geo)                      # (C·kh·kw, N, Ho·Wo)
    N, C, kh, kw, Ho, Wo = ref.shape
    np.testing.assert_array_equal(got, ref.transpose(1, 2, 3, 0, 4, 5).reshape(C * kh * kw, N, Ho * Wo))


def test_col2im_is_the_adjoint_of_im2col():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 5))
    geo = ((2, 1), (1, 2, 0, 1), (1, 2))
    cols = R.im2col(x, 2, 3, *geo)
    c = rng.standard_normal(cols.shape)
    lhs = np.sum(cols * c)
    rhs = np.sum(x * R.col2im(c, x.shape, *geo))
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)


def test_dispatch_api_and_strategy_choice():
    assert kernels.choose_strategy(1, 4) == "direct"          # Kohler's K_n nets: groups of 1 -> 4
    assert kernels.choose_strategy(16, 32) == "gemm"
    rng = np.random.default_rng(6)
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((2, 4, 5, 5)).astype(dt)
        W = rng.standard_normal((8, 2, 3, 3)).astype(dt)
        geo = ((1, 1), (1, 1, 1, 1), (1, 1), 2)
        out = kernels.conv2d_forward_kernel(x, W, None, *geo)
        assert out.dtype == dt and out.shape == (2, 8, 5, 5)
        dx, dW, db = kernels.conv2d_backward_kernel(out, x, W, *geo)
        assert dx.dtype == dW.dtype == db.dtype == dt
        np.testing.assert_array_equal(kernels.conv2d_grad_bias_kernel(out), db)
        np.testing.assert_array_equal(kernels.conv2d_grad_input_kernel(out, W, x.shape, *geo), dx)
        np.testing.assert_array_equal(kernels.conv2d_grad_weight_kernel(out, x, W.shape, *geo), dW)


def test_dispatch_refuses_bad_arrays():
    x = np.zeros((1, 2, 4, 4))
    W = np.zeros((2, 2, 3, 3), dtype=np.float32)
    geo = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(TypeError, match="one dtype"):
        kernels.conv2d_forward_kernel(x, W, None, *geo)
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.conv2d_forward_kernel(x.astype(np.int64), W, None, *geo)
    with pytest.raises(ValueError, match="does not fit"):
        kernels.conv2d_forward_kernel(x, W.astype(np.float64), None, (1, 1), (0, 0, 0, 0), (2, 2), 1)
    with pytest.raises(ValueError, match="strategy"):
        K.conv2d_forward(x, W.astype(np.float64), None, *geo, strategy="fft")


def test_winograd_dispatch():
    """3×3 stride-1 kernels with enough channels take the Winograd kernels, through every entry point
    (the backward, dx alone and dW alone give the same bits); forcing it elsewhere is an error."""
    assert kernels.choose_strategy(16, 32, (3, 3)) == "winograd"
    assert kernels.choose_strategy(16, 32, (3, 3), stride=(2, 2)) == "gemm"
    assert kernels.choose_strategy(16, 32, (5, 5)) == "gemm"
    assert kernels.choose_strategy(1, 4, (3, 3), groups=128) == "direct"
    # measured crossovers (choose_strategy's docstring): few output channels stay direct up to 256
    # pairs at stride 1; strided convolutions unfold unless depthwise
    assert kernels.choose_strategy(32, 8, (5, 5)) == "direct"
    assert kernels.choose_strategy(8, 32, (5, 5)) == "gemm"
    assert kernels.choose_strategy(2, 8, (3, 3), stride=(2, 2)) == "gemm"
    assert kernels.choose_strategy(1, 1, (3, 3), stride=(2, 2), groups=64) == "direct"
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 16, 7, 6))
    W = rng.standard_normal((32, 16, 3, 3)) / 12
    b = rng.standard_normal(32)
    geo = ((1, 1), (1, 0, 2, 1), (1, 1), 1)
    out = kernels.conv2d_forward_kernel(x, W, b, *geo)
    np.testing.assert_array_equal(out, kernels.conv2d_forward_kernel(x, W, b, *geo, strategy="winograd"))
    assert rel(out, R.conv2d_forward(x, W, b, *geo)) < 1e-12
    assert rel(out, kernels.conv2d_forward_kernel(x, W, b, *geo, strategy="gemm")) > 0   # another sum order
    d = rng.standard_normal(out.shape)
    dx, dW, db = kernels.conv2d_backward_kernel(d, x, W, *geo)
    np.testing.assert_array_equal(kernels.conv2d_grad_input_kernel(d, W, x.shape, *geo), dx)
    np.testing.assert_array_equal(kernels.conv2d_grad_weight_kernel(d, x, W.shape, *geo), dW)
    for g, r in zip((dx, dW, db), reference_all(x, W, b, d, geo)[1:]):
        assert rel(g, r) < 1e-12
    with pytest.raises(ValueError, match="strategy 'winograd' needs a 3x3 kernel, stride 1"):
        kernels.conv2d_forward_kernel(x, W, b, (2, 2), (1, 0, 2, 1), (1, 1), 1, strategy="winograd")
