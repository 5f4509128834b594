"""The register-blocked A·Bᵀ kernel equals NumPy's ``A @ B.T``.

Shapes cover full 4 × 4 blocks, the edge column (N % 4), the edge row (M % 4), the corner, a
single row or column, rows longer than one L block (several passes added in order) and L = 0.
float64 to 1e-13 and float32 to 1e-5 relative to the largest entry (a different summation order
from BLAS, so not bit-equal).
"""
import numpy as np
import pytest

from refnets.kernels import gemm_nt
from refnets.kernels.gemm_nt import dot_nt

SHAPES = [(4, 4, 7), (32, 16, 840), (33, 18, 841), (5, 3, 2), (1, 1, 9), (1, 7, 300), (7, 1, 300),
          (6, 10, 3000), (4, 8, 0)]


@pytest.mark.parametrize("M, N, L", SHAPES)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-13), (np.float32, 1e-5)])
def test_dot_nt_equals_numpy(M, N, L, dtype, tol):
    rng = np.random.default_rng(M * 1000 + N * 10 + L)
    A = rng.standard_normal((M, L)).astype(dtype)
    B = rng.standard_normal((N, L)).astype(dtype)
    out = np.full((M, N), np.nan, dtype=dtype)             # overwritten, not added to
    dot_nt(A, B, out)
    want = A.astype(np.float64) @ B.astype(np.float64).T
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1.0)
    assert float(np.max(np.abs(out - want), initial=0.0)) / scale < tol


def test_dot_nt_several_l_blocks_and_same_bits():
    """Rows of 3 L_BLOCK_BYTES stretches and a partial one (four passes, their sums added in order);
    two calls give the same bits."""
    L = 3 * (gemm_nt.L_BLOCK_BYTES // 8) + 17
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((9, L)), rng.standard_normal((6, L))
    one, two = np.empty((9, 6)), np.empty((9, 6))
    dot_nt(A, B, one)
    dot_nt(A, B, two)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one, A @ B.T, rtol=0, atol=1e-13 * np.abs(A @ B.T).max())
