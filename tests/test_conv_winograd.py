"""The Winograd F(2×2, 3×3) kernels equal the NumPy reference kernels.

float64 to 1e-12 relative (the project's gradcheck needs < 1e-7). float32 to 1e-5 relative to the
reference's max|·|: Winograd mixes up to 4 inputs (V), 9 taps (U) and 9 products (Aᵀ M A) before
rounding, which measures 1–5e-7 of max|out| for C up to 256 — the level of im2col's own float32
error — so 1e-5 leaves a 20× margin. The reference runs in float64 on the same float32 inputs.

Geometries: odd and even H, W, H ≠ W, padding 0/1/2, asymmetric and one-sided per-side padding,
a single output pixel, N = 1, C = 1, C_out = 1, and batches that end in a partial chunk.
"""
import numba
import numpy as np
import pytest

from refnets.kernels import conv_reference as R
from refnets.kernels import conv_winograd as WG

S1 = (1, 1)


def rel(a, b):
    """max |a − b| / max |b|: the error relative to the scale of the reference tensor."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# (N, C_in, C_out, H, W, (pt, pb, pl, pr))
FIXED = [
    (2, 3, 4, 6, 6, (1, 1, 1, 1)),        # even sizes, "same" padding
    (3, 2, 5, 7, 9, (1, 1, 1, 1)),        # odd H_out, W_out: the last tiles half outside
    (2, 4, 3, 8, 5, (0, 0, 0, 0)),        # H ≠ W, no padding
    (1, 1, 1, 3, 3, (0, 0, 0, 0)),        # N = C = C_out = 1, a single output pixel
    (2, 3, 2, 5, 4, (2, 2, 2, 2)),        # padding 2: border outputs see only padding rows
    (3, 2, 3, 6, 7, (2, 0, 1, 2)),        # asymmetric per-side padding
    (2, 2, 2, 5, 6, (0, 2, 0, 2)),        # bottom/right padding only
    (9, 3, 2, 4, 4, (1, 1, 1, 1)),        # 9 samples: chunks of 2 and a last chunk of 1
    (1, 5, 6, 2, 1, (1, 2, 2, 1)),        # input smaller than the kernel
    (2, 32, 16, 8, 7, (1, 1, 1, 1)),      # more channels: longer sums in float32
]


def random_configs(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        pad = tuple(int(v) for v in rng.integers(0, 3, size=4))
        H, W = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        if H + pad[0] + pad[1] >= 3 and W + pad[2] + pad[3] >= 3:
            out.append((int(rng.integers(1, 6)), int(rng.integers(1, 5)), int(rng.integers(1, 5)), H, W, pad))
    return out


CONFIGS = FIXED + random_configs(12, seed=0)


def make(cfg, dtype, seed=0):
    N, C, Co, H, W, pad = cfg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    Wt = rng.standard_normal((Co, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(Co).astype(dtype)
    Ho, Wo = H + pad[0] + pad[1] - 2, W + pad[2] + pad[3] - 2
    d = rng.standard_normal((N, Co, Ho, Wo)).astype(dtype)
    return x, Wt, b, d, pad


def reference(x, Wt, b, d, pad):
    """forward, dx, dW, db of the reference kernels, in float64."""
    x, Wt, b, d = (a.astype(np.float64) for a in (x, Wt, b, d))
    geo = (S1, pad, S1, 1)
    return (R.conv2d_forward(x, Wt, b, *geo), R.conv2d_grad_input(d, Wt, x.shape, *geo),
            R.conv2d_grad_weight(d, x, Wt.shape, *geo), R.conv2d_grad_bias(d))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_matches_reference(cfg, dtype, tol):
    x, Wt, b, d, pad = make(cfg, dtype)
    want = reference(x, Wt, b, d, pad)
    out = WG.winograd_forward(x, Wt, b, pad)
    dx, dW, db = WG.winograd_backward(d, x, Wt, pad)
    for name, got, ref in zip(("out", "dx", "dW", "db"), (out, dx, dW, db), want):
        assert got.dtype == dtype and got.shape == ref.shape, name
        assert rel(got, ref) < tol, (name, rel(got, ref))


def test_no_bias():
    x, Wt, b, d, pad = make(FIXED[1], np.float64)
    ref = R.conv2d_forward(x, Wt, None, S1, pad, S1, 1)
    assert rel(WG.winograd_forward(x, Wt, None, pad), ref) < 1e-12


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_need_flags(dtype):
    """need_dx / need_dw False return None and leave the other results bit-identical."""
    x, Wt, b, d, pad = make(FIXED[5], dtype)
    dx, dW, db = WG.winograd_backward(d, x, Wt, pad)
    dx1, dW1, db1 = WG.winograd_backward(d, x, Wt, pad, need_dw=False)
    dx2, dW2, db2 = WG.winograd_backward(d, x, Wt, pad, need_dx=False)
    assert dW1 is None and dx2 is None
    np.testing.assert_array_equal(dx1, dx)
    np.testing.assert_array_equal(dW2, dW)
    np.testing.assert_array_equal(db1, db)
    np.testing.assert_array_equal(db2, db)
    _, _, db3 = WG.winograd_backward(d, x, Wt, pad, need_dx=False, need_dw=False)
    np.testing.assert_array_equal(db3, db)


@pytest.mark.parametrize("slots, chunk", [(2, 1 << 30), (2, 1), (3, 50_000), (1, 1 << 30)])
def test_chunks(monkeypatch, slots, chunk):
    """Several samples per chunk (the samples-innermost layout, m > 1), unequal chunks, one sample
    per chunk and the whole batch in one chunk all give the reference (float64)."""
    monkeypatch.setattr(WG, "MAX_SLOTS", slots)
    monkeypatch.setattr(WG, "CHUNK_BYTES", chunk)
    x, Wt, b, d, pad = make((7, 3, 4, 6, 5, (1, 0, 2, 1)), np.float64)
    want = reference(x, Wt, b, d, pad)
    got = (WG.winograd_forward(x, Wt, b, pad),) + WG.winograd_backward(d, x, Wt, pad)
    for g, r in zip(got, want):
        assert rel(g, r) < 1e-12


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_thread_count_does_not_change_bits(dtype):
    """Large enough for the parallel path (> SERIAL_MAX_MACS); 20 samples in 16 slots of 1 or 2."""
    x, Wt, b, d, pad = make((20, 8, 16, 10, 9, (1, 1, 0, 2)), dtype)
    old = numba.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            results.append((WG.winograd_forward(x, Wt, b, pad),) + WG.winograd_backward(d, x, Wt, pad))
    finally:
        numba.set_num_threads(old)
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)


def test_empty_batch():
    x = np.zeros((0, 2, 5, 5))
    Wt = np.ones((3, 2, 3, 3))
    assert WG.winograd_forward(x, Wt, None, (1, 1, 1, 1)).shape == (0, 3, 5, 5)
    dx, dW, db = WG.winograd_backward(np.zeros((0, 3, 5, 5)), x, Wt, (1, 1, 1, 1))
    assert dx.shape == x.shape and not dW.any() and not db.any()


def test_transform_tables():
    """The kernels' (index, sign) tables are Bᵀ, Aᵀ, A and B, and G g Gᵀ is the weight transform."""
    def dense(idx, sgn, cnt=None, width=4):
        M = np.zeros((idx.shape[0], width))
        for r in range(idx.shape[0]):
            for k in range(idx.shape[1] if cnt is None else cnt[r]):
                M[r, idx[r, k]] += sgn[r, k]
        return M
    np.testing.assert_array_equal(dense(WG._BT_IDX, WG._BT_SGN), WG.BT)
    np.testing.assert_array_equal(dense(WG._AT_IDX, WG._AT_SGN), WG.AT)
    np.testing.assert_array_equal(dense(WG._A_IDX, WG._A_SGN, WG._A_CNT, width=2), WG.AT.T)
    np.testing.assert_array_equal(dense(WG._B_IDX, WG._B_SGN, WG._B_CNT), WG.BT.T)
    # F(2, 3) in 1-D: Aᵀ[(G g) ⊙ (Bᵀ d)] is the correlation of d (4) with g (3)
    rng = np.random.default_rng(1)
    g, d4 = rng.standard_normal(3), rng.standard_normal(4)
    np.testing.assert_allclose(WG.AT @ ((WG.G @ g) * (WG.BT @ d4)), np.correlate(d4, g, "valid"), rtol=1e-14)
    Wt = rng.standard_normal((2, 3, 3, 3))
    U = WG.weight_transform(Wt).reshape(4, 4, 2, 3)
    np.testing.assert_allclose(U[:, :, 1, 2], WG.G @ Wt[1, 2] @ WG.G.T, rtol=1e-15)


def test_applies():
    assert WG.applies((32, 16, 3, 3), (1, 1), (1, 1), 1)
    assert WG.applies((64, 64, 3, 3), (1, 1), (1, 1), 1)
    assert WG.applies((32, 8, 3, 3), (1, 1), (1, 1), 1)      # C_in 8 with C_out ≤ 32
    assert not WG.applies((64, 8, 3, 3), (1, 1), (1, 1), 1)  # C_in 8, C_out 64: im2col is as fast
    assert not WG.applies((64, 3, 3, 3), (1, 1), (1, 1), 1)  # few input channels: im2col
    assert not WG.applies((8, 8, 3, 3), (1, 1), (1, 1), 1)   # few channel pairs: direct loops
    assert not WG.applies((32, 16, 5, 5), (1, 1), (1, 1), 1)
    assert not WG.applies((32, 16, 3, 1), (1, 1), (1, 1), 1)
    assert not WG.applies((32, 16, 3, 3), (2, 2), (1, 1), 1)
    assert not WG.applies((32, 16, 3, 3), (1, 2), (1, 1), 1)
    assert not WG.applies((32, 16, 3, 3), (1, 1), (2, 2), 1)
    assert not WG.applies((64, 16, 3, 3), (1, 1), (1, 1), 2)


def test_bad_input():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match="3, 3"):
        WG.winograd_forward(x, np.zeros((3, 2, 5, 5)), None, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="does not fit"):
        WG.winograd_forward(np.zeros((1, 2, 1, 5)), np.zeros((3, 2, 3, 3)), None, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="dout has shape"):
        WG.winograd_backward(np.zeros((1, 3, 4, 4)), x, np.zeros((3, 2, 3, 3)), (0, 0, 0, 0))
    with pytest.raises(ValueError, match="float32 or float64"):
        WG.winograd_forward(x.astype(np.int64), np.zeros((3, 2, 3, 3)), None, (0, 0, 0, 0))
