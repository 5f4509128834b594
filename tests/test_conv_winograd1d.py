"""The Winograd F(m, 3) kernels for 1×3 kernels (Conv1d) equal the NumPy reference kernels.

Both tile sizes, m = 2 and m = 4, and the default (tile_size()); float64 to 1e-12 relative; float32
to 1e-5 relative to the reference's max|·| (the reference runs in float64 on the same float32
inputs; measured ≤ 3e-7 with m = 2, ≤ 6e-7 with m = 4, 3e-6 at C = 256). The transforms come from the Cook–Toom
construction in exact arithmetic (tested for several F(m, r)); the kernels' hand-written transforms
are tested through the results.

Geometries: odd and even L_out (the last tile half outside), L_in smaller than the kernel,
asymmetric and one-sided padding, padded rows (pt, pb > 0: bias only), several input rows (H > 1),
N = C = C_out = 1, and batches that end in a partial chunk. That one and two threads give the same
bits is tested with the other strategies in test_determinism.py.
"""
import numpy as np
import pytest

from refnets.kernels import conv_numba as K
from refnets.kernels import conv_reference as R
from refnets.kernels import conv_winograd1d as W1
from test_conv_winograd import reference, rel     # the 2-D kernels' test: float64 reference, max-relative error

S1 = (1, 1)


# (N, C_in, C_out, H, L, (pt, pb, pl, pr))
FIXED = [
    (2, 3, 4, 1, 8, (0, 0, 1, 1)),        # even L_out, "same" padding
    (3, 2, 5, 1, 9, (0, 0, 1, 1)),        # odd L_out: the last tile's second output is dropped
    (2, 4, 3, 1, 6, (0, 0, 0, 0)),        # no padding
    (1, 1, 1, 1, 3, (0, 0, 0, 0)),        # N = C = C_out = 1, one output
    (2, 3, 2, 1, 1, (0, 0, 1, 1)),        # input shorter than the kernel
    (3, 2, 3, 1, 7, (0, 0, 2, 0)),        # left padding only, odd
    (2, 2, 2, 1, 6, (0, 0, 0, 2)),        # right padding only
    (2, 3, 4, 3, 5, (1, 2, 1, 1)),        # H = 3 rows, padded rows above and below (bias only)
    (9, 3, 2, 2, 4, (0, 0, 1, 1)),        # 18 rows: several chunks per slot
    (2, 33, 17, 1, 10, (0, 0, 1, 1)),     # more channels: longer sums in float32
]


def random_configs(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        pad = (int(rng.integers(0, 2)), int(rng.integers(0, 2)), int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        L = int(rng.integers(1, 12))
        if L + pad[2] + pad[3] >= 3:
            out.append((int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 6)),
                        int(rng.integers(1, 3)), L, pad))
    return out


CONFIGS = FIXED + random_configs(12, seed=0)


def make(cfg, dtype, seed=0):
    N, C, Co, H, L, pad = cfg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, L)).astype(dtype)
    Wt = rng.standard_normal((Co, C, 1, 3)).astype(dtype)
    b = rng.standard_normal(Co).astype(dtype)
    d = rng.standard_normal((N, Co, H + pad[0] + pad[1], L + pad[2] + pad[3] - 2)).astype(dtype)
    return x, Wt, b, d, pad


@pytest.mark.parametrize("m", [None, 2, 4])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_matches_reference(cfg, dtype, tol, m):
    x, Wt, b, d, pad = make(cfg, dtype)
    want = reference(x, Wt, b, d, pad)
    out = W1.winograd1d_forward(x, Wt, b, pad, m=m)
    dx, dW, db = W1.winograd1d_backward(d, x, Wt, pad, m=m)
    for name, got, ref in zip(("out", "dx", "dW", "db"), (out, dx, dW, db), want):
        assert got.dtype == dtype and got.shape == ref.shape, name
        assert rel(got, ref) < tol, (name, rel(got, ref))


def test_no_bias_and_the_dispatcher():
    """Without a bias; and conv_numba's dispatcher takes this strategy by name and by choice."""
    x, Wt, b, d, pad = make((2, 16, 16, 1, 9, (0, 0, 1, 1)), np.float64)
    ref = R.conv2d_forward(x, Wt, None, S1, pad, S1, 1)
    assert rel(W1.winograd1d_forward(x, Wt, None, pad), ref) < 1e-12
    assert K.choose_strategy(16, 16, (1, 3)) == "winograd1d"
    want = reference(x, Wt, b, d, pad)
    got = (K.conv2d_forward(x, Wt, b, S1, pad, S1, 1, strategy="winograd1d"),
           *K.conv2d_backward(d, x, Wt, S1, pad, S1, 1, strategy="winograd1d"))
    for g, r in zip(got, want):
        assert rel(g, r) < 1e-12
    assert rel(K.conv2d_grad_input(d, Wt, x.shape, S1, pad, S1, 1, strategy="winograd1d"), want[1]) < 1e-12
    with pytest.raises(ValueError, match="'winograd1d' needs a 1x3 kernel"):
        K.conv2d_forward(x, Wt[:4], b[:4], S1, pad, S1, 1, strategy="winograd1d")   # C_out 4: too few


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_need_flags(dtype):
    """need_dx / need_dw False return None and leave the other results bit-identical."""
    x, Wt, b, d, pad = make(FIXED[7], dtype)
    dx, dW, db = W1.winograd1d_backward(d, x, Wt, pad)
    dx1, dW1, db1 = W1.winograd1d_backward(d, x, Wt, pad, need_dw=False)
    dx2, dW2, db2 = W1.winograd1d_backward(d, x, Wt, pad, need_dx=False)
    assert dW1 is None and dx2 is None
    np.testing.assert_array_equal(dx1, dx)
    np.testing.assert_array_equal(dW2, dW)
    np.testing.assert_array_equal(db1, db)
    np.testing.assert_array_equal(db2, db)
    dx3, dW3, db3 = W1.winograd1d_backward(d, x, Wt, pad, need_dx=False, need_dw=False)
    assert dx3 is None and dW3 is None
    np.testing.assert_array_equal(db3, db)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("slots, chunk", [(2, 1 << 30), (2, 1), (3, 2_000), (1, 1 << 30)])
def test_chunks(monkeypatch, slots, chunk, m):
    """Several rows per chunk, a short last chunk (the per-slot buffers cut to it), one row per chunk
    and all rows in one chunk all give the reference (float64)."""
    monkeypatch.setattr(W1, "MAX_SLOTS", slots)
    monkeypatch.setattr(W1, "MIN_SLOT_ROWS", 1)
    monkeypatch.setattr(W1, "CHUNK_BYTES", chunk)
    x, Wt, b, d, pad = make((7, 3, 4, 2, 9, (1, 0, 2, 1)), np.float64)
    want = reference(x, Wt, b, d, pad)
    got = (W1.winograd1d_forward(x, Wt, b, pad, m=m),) + W1.winograd1d_backward(d, x, Wt, pad, m=m)
    for g, r in zip(got, want):
        assert rel(g, r) < 1e-12


def test_empty_batch():
    x = np.zeros((0, 2, 1, 5))
    Wt = np.ones((3, 2, 1, 3))
    assert W1.winograd1d_forward(x, Wt, None, (0, 0, 1, 1)).shape == (0, 3, 1, 5)
    dx, dW, db = W1.winograd1d_backward(np.zeros((0, 3, 1, 5)), x, Wt, (0, 0, 1, 1))
    assert dx.shape == x.shape and not dW.any() and not db.any()


def test_weight_transform_and_the_classic_matrices():
    """m = 2 gives Lavin & Gray's F(2, 3) (conv_winograd's), with the sign of the point ∞ flipped;
    U = G g plane by plane."""
    from refnets.kernels import conv_winograd as W2
    AT, G, BT = W1.winograd_matrices(2)
    S = np.diag([1.0, 1.0, 1.0, -1.0])
    np.testing.assert_array_equal(AT, W2.AT @ S)
    np.testing.assert_array_equal(G, W2.G)
    np.testing.assert_array_equal(BT, S @ W2.BT)
    rng = np.random.default_rng(1)
    Wt = rng.standard_normal((2, 3, 1, 3))
    for m in (2, 4):
        G = W1.winograd_matrices(m)[1]
        U = W1.weight_transform(Wt, np.float64, m)
        assert U.shape == (m + 2, 2, 3)
        np.testing.assert_allclose(U[:, 1, 2], G @ Wt[1, 2, 0], rtol=1e-15)
        assert W1.weight_transform(Wt, np.float32, m).dtype == np.float32


@pytest.mark.parametrize("m, r", [(1, 3), (2, 3), (3, 3), (4, 3), (5, 3), (6, 3), (2, 2), (3, 5), (4, 4)])
def test_winograd_matrices_compute_the_correlation(m, r):
    """Aᵀ[(G g) ⊙ (Bᵀ d)] = the m outputs of d (m + r − 1) correlated with g (r); Bᵀ is integer."""
    AT, G, BT = W1.winograd_matrices(m, r)
    a = m + r - 1
    assert AT.shape == (m, a) and G.shape == (a, r) and BT.shape == (a, a)
    np.testing.assert_array_equal(BT, np.round(BT))
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(3):
        g, d = rng.standard_normal(r), rng.standard_normal(a)
        want = np.correlate(d, g, "valid")
        assert rel(AT @ ((G @ g) * (BT @ d)), want) < 1e-13
    # a wrong point set must break it: the identity is not a tautology of the test
    AT2 = AT.copy()
    AT2[0, 0] += 1
    assert rel(AT2 @ ((G @ g) * (BT @ d)), want) > 1e-3


def test_tile_size_and_bad_m():
    assert W1.tile_size(np.float64, W1.MIN_ROWS_M4) == 4
    assert W1.tile_size(np.float64, W1.MIN_ROWS_M4 - 1) == 2       # few rows: short GEMMs, U the larger
    assert W1.tile_size(np.float32, 10 ** 6) == 2                  # float32 keeps the smaller error
    x, Wt, b, d, pad = make(FIXED[0], np.float64)
    with pytest.raises(ValueError, match="m = 2 or 4"):
        W1.winograd1d_forward(x, Wt, b, pad, m=3)
    with pytest.raises(ValueError, match="F\\(m, r\\) needs"):
        W1.winograd_matrices(9)


def test_applies():
    assert W1.applies((16, 16, 1, 3), (1, 1), (1, 1), 1)
    assert W1.applies((256, 256, 1, 3), (1, 1), (1, 1), 1)
    assert not W1.applies((8, 16, 1, 3), (1, 1), (1, 1), 1)      # few output channels: direct loops
    assert not W1.applies((32, 8, 1, 3), (1, 1), (1, 1), 1)      # few input channels
    assert not W1.applies((32, 32, 1, 5), (1, 1), (1, 1), 1)
    assert not W1.applies((32, 32, 3, 3), (1, 1), (1, 1), 1)     # 3×3: the 2-D Winograd's
    assert not W1.applies((32, 32, 1, 3), (1, 2), (1, 1), 1)
    assert not W1.applies((32, 32, 1, 3), (1, 1), (1, 2), 1)
    assert not W1.applies((32, 32, 1, 3), (1, 1), (1, 1), 2)


def test_bad_input():
    x = np.zeros((1, 2, 1, 5))
    with pytest.raises(ValueError, match="W \\(C_out, C, 1, 3\\)"):
        W1.winograd1d_forward(x, np.zeros((3, 2, 1, 5)), None, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="does not fit"):
        W1.winograd1d_forward(np.zeros((1, 2, 1, 1)), np.zeros((3, 2, 1, 3)), None, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="dout has shape"):
        W1.winograd1d_backward(np.zeros((1, 3, 1, 4)), x, np.zeros((3, 2, 1, 3)), (0, 0, 0, 0))
    with pytest.raises(ValueError, match="float32 or float64"):
        W1.winograd1d_forward(x.astype(np.int64), np.zeros((3, 2, 1, 3)), None, (0, 0, 0, 0))
