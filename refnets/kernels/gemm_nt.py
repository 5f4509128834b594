"""out = A·Bᵀ for short, wide matrices (few rows, long rows): a register-blocked Numba kernel.

A (M, L) and B (N, L) have their long axis L contiguous, and the contraction runs along it:
out[o, c] = Σ_f A[o, f] B[c, f]. The Winograd weight gradient is such a product, dU[ξ] = dM[ξ]·V[ξ]ᵀ
(:mod:`refnets.kernels.conv_winograd`): 32 × 16 outputs, each a sum over ~10³ tiles. BLAS packs
both operands for it and then does only M·N multiply-adds per packed column; the kernel below
reads each column once and keeps a 4 × 4 block of sums in registers (16 running sums, SIMD over
f: LLVM turns each into a vector accumulator, ``reassoc``). Measured against OpenBLAS's
``np.dot(A, B.T)`` on one thread: 2.3× (float32) and 2.0× (float64) faster at 32 × 16 outputs
with L = 840, 1.4–1.7× at 16 × 16 with L = 8192, as fast at 64 × 64, and 1.2–2.2× slower at
256 × 256 or 256 × 576, where BLAS's cache blocking of the output wins. So it is used where the
output is small: the Winograd dU above and the sample blocks of the convolution NTK Gram
(:func:`refnets.kernels.conv_numba.conv2d_gram_weight`: J Jᵀ in blocks of n/4 samples, 16 × 16 at
n = 64, over rows of C_out·kb entries).

L is cut into stretches of L_BLOCK_BYTES per row so that the eight rows of a 4 × 4 block stay in
L1; the block sums are added into out in block order. The order of every sum depends only on
the shapes, so the result is the same in every call (and for any thread count of a caller); it
differs from BLAS's in rounding only (tested against ``A @ B.T``).
"""
from __future__ import annotations

from numba import njit

_FM = {"reassoc", "contract"}

# Bytes of each row's stretch per pass: the eight rows of a 4 × 4 block take 32 KiB, an L1 data cache.
# Measured (one thread, float32 and float64, outputs 32 × 16, 16 × 16, 64 × 64, L = 840 … 8192): 4 KiB
# is the fastest or within 20 % of it; 512 B is 1.5–2× slower (loop overhead), and no blocking is
# 1.4–1.7× slower at 64 × 64 × 8192.
L_BLOCK_BYTES = 4096


@njit(cache=True, fastmath=_FM)
def _block4x4(A, B, o, c, lo, hi, out):
    """out[o:o+4, c:c+4] += A[o:o+4, lo:hi] · B[c:c+4, lo:hi]ᵀ: 16 sums kept in registers."""
    a0, a1, a2, a3 = A[o, lo:hi], A[o + 1, lo:hi], A[o + 2, lo:hi], A[o + 3, lo:hi]
    b0, b1, b2, b3 = B[c, lo:hi], B[c + 1, lo:hi], B[c + 2, lo:hi], B[c + 3, lo:hi]
    z = A.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
    for f in range(hi - lo):
        x0, x1, x2, x3 = a0[f], a1[f], a2[f], a3[f]
        y0, y1, y2, y3 = b0[f], b1[f], b2[f], b3[f]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
        s20 += x2 * y0
        s21 += x2 * y1
        s22 += x2 * y2
        s23 += x2 * y3
        s30 += x3 * y0
        s31 += x3 * y1
        s32 += x3 * y2
        s33 += x3 * y3
    out[o, c] += s00
    out[o, c + 1] += s01
    out[o, c + 2] += s02
    out[o, c + 3] += s03
    out[o + 1, c] += s10
    out[o + 1, c + 1] += s11
    out[o + 1, c + 2] += s12
    out[o + 1, c + 3] += s13
    out[o + 2, c] += s20
    out[o + 2, c + 1] += s21
    out[o + 2, c + 2] += s22
    out[o + 2, c + 3] += s23
    out[o + 3, c] += s30
    out[o + 3, c + 1] += s31
    out[o + 3, c + 2] += s32
    out[o + 3, c + 3] += s33


@njit(cache=True, fastmath=_FM)
def _block4x1(A, B, o, c, lo, hi, out):
    """out[o:o+4, c] += A[o:o+4, lo:hi] · B[c, lo:hi]: an edge column (N not a multiple of 4)."""
    a0, a1, a2, a3 = A[o, lo:hi], A[o + 1, lo:hi], A[o + 2, lo:hi], A[o + 3, lo:hi]
    b = B[c, lo:hi]
    z = A.dtype.type(0)
    s0 = s1 = s2 = s3 = z
    for f in range(hi - lo):
        y = b[f]
        s0 += a0[f] * y
        s1 += a1[f] * y
        s2 += a2[f] * y
        s3 += a3[f] * y
    out[o, c] += s0
    out[o + 1, c] += s1
    out[o + 2, c] += s2
    out[o + 3, c] += s3


@njit(cache=True, fastmath=_FM)
def _dot1(a, b, lo, hi):
    """Σ_{lo ≤ f < hi} a[f]·b[f]: the corner that fills neither a row nor a column block."""
    s = a.dtype.type(0)
    for f in range(lo, hi):
        s += a[f] * b[f]
    return s


@njit(cache=True, fastmath=_FM)
def dot_nt(A, B, out):
    """out = A·Bᵀ, overwritten.

    Parameters
    ----------
    A : (M, L) C-contiguous, float32 or float64
    B : (N, L) C-contiguous, same dtype
    out : (M, N), same dtype

    Blocks of 4 × 4 outputs over stretches of L_BLOCK_BYTES; the edge columns (N not a multiple of
    4) in blocks of 4 × 1, the edge rows as 1 × 4 (the 4 × 1 kernel on Bᵀ·Aᵀ), the corner as dot products.
    """
    M, L = A.shape
    N = B.shape[0]
    lb = max(1, L_BLOCK_BYTES // A.itemsize)
    M4, N4 = M - M % 4, N - N % 4
    out[:] = 0
    for lo in range(0, L, lb):
        hi = min(L, lo + lb)
        for o in range(0, M4, 4):
            for c in range(0, N4, 4):
                _block4x4(A, B, o, c, lo, hi, out)
            for c in range(N4, N):
                _block4x1(A, B, o, c, lo, hi, out)
        for o in range(M4, M):
            for c in range(0, N4, 4):
                _block4x1(B, A, c, o, lo, hi, out.T)
            for c in range(N4, N):
                out[o, c] += _dot1(A[o], B[c], lo, hi)
