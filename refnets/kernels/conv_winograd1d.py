"""Winograd F(m, 3) convolution in Numba: forward, dx and dW of 1×3, stride-1 kernels (Conv1d with q = 3).

The one-dimensional sibling of :mod:`refnets.kernels.conv_winograd`, for the wide Conv1d layers of
Du et al. (2019)'s convolutional ResNet (m = 256 channels, patch size q = 3). Same geometry and
notation as :mod:`refnets.kernels.conv_reference`: x (N, C, H, L_in), W (C_out, C, 1, 3), zero
padding (pt, pb, pl, pr), H_out = H + pt + pb, L_out = L_in + pl + pr − 2; groups = 1, dilation 1.
Every input row x[n, :, h, :] is an independent 1-D convolution (the kernel is one row high) whose
output is row pt + h; the pt + pb padded output rows hold the bias only. Tested equal to the
reference (1e-12 relative in float64).

Tiles and transforms
--------------------
Each output row is cut into T = ⌈L_out/m⌉ tiles of m outputs; tile t reads the α = m + 2 padded
inputs d = x̃[m·t : m·t + α] (neighbouring tiles overlap by two). For one (o, c) pair with taps
g (3,), the m outputs are y = Aᵀ [(G g) ⊙ (Bᵀ d)]: Aᵀ (m × α), G (α × 3) and Bᵀ (α × α) come from
:func:`winograd_matrices` (Cook–Toom: evaluate at α points, multiply, interpolate). For m = 2 they
are the classic

         ⎡1  0 −1  0⎤         ⎡ 1    0    0 ⎤
    Bᵀ = ⎢0  1  1  0⎥,    G = ⎢1/2  1/2  1/2⎥,    Aᵀ = ⎡1  1  1  0⎤
         ⎢0 −1  1  0⎥         ⎢1/2 −1/2  1/2⎥          ⎣0  1 −1  1⎦
         ⎣0 −1  0  1⎦         ⎣ 0    0    1 ⎦

(Lavin & Gray's, up to the sign of the point ∞). Summed over the input channels, with U = G g (α per (o, c))
and V = Bᵀ d (α per (c, tile)), each of the α positions ξ of the transformed domain is a matrix
product over all tiles of a chunk of rows:

    M[ξ] (C_out × T·k) = U[ξ] (C_out × C) · V[ξ] (C × T·k),       out tile = Aᵀ M + b:

α multiply-adds per tile of m outputs where direct convolution needs 3m: 1.5× fewer for m = 2,
2× fewer for m = 4, in GEMMs with inner length C; the transforms are a few additions per value.

Backward (chain rule through the same steps; dy the m dout values of a tile, 0 beyond L_out):

    dM = A dy                                       (α per (o, tile))
    dU[ξ] (C_out × C) = dM[ξ] · V[ξ]ᵀ               summed over chunks; dW = Gᵀ dU
    dV[ξ] (C × T·k) = U[ξ]ᵀ · dM[ξ]
    dd = B dV                                       (α per (c, tile)), added into the overlapping
                                                    inputs of the padded row, then cropped to dx

db = Σ dout over all outputs (the padded rows too).

Tile size and accuracy
----------------------
Larger tiles need fewer products but mix more inputs, with larger coefficients (points 0, ±1, ±2,
∞ for m = 4): the error grows with them. :func:`tile_size` takes m = 4 in float64 (measured
≤ 1e-15 of max|out| at C = 256, as good as im2col's) and m = 2 in float32, where m = 4 would lose
about a decimal digit; and m = 2 for batches of few rows, where the GEMMs are short and U (α/3 the
size of W) would dominate the memory of the call (the NTK's ``block`` mode).

Layout and threads
------------------
A padded row is held by phase, P[p, q] = x̃[m·q + p] (m × Q), so that input j of tile t is
P[j mod m, t + j div m]: each transform is a few unit-stride loops over the T tiles, which LLVM
vectorises. Rows r = n·H + h are shared out over min(N·H, MAX_SLOTS) slots (from the shapes only);
a slot cuts its rows into chunks of k rows whose V and M take at most CHUNK_BYTES, transforms them
one padded row at a time (in L1), and runs the α GEMMs with single-threaded BLAS. dU is summed per
slot and the slots in order, so the results do not depend on the number of threads.

Measured on Du's layer (N = 64, C = C_out = 256, L = 64, float64, 2 threads): the forward takes
8 ms with m = 4, 10.5 ms with m = 2, against 16 ms for im2col + GEMM (:mod:`refnets.kernels.conv_numba`).
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import lcm

import numpy as np
from numba import njit, prange

from .conv_numba import MAX_SLOTS, _FM, _add_into, _one_blas_thread, _serial_if_tiny, _sum_bias, _sum_in_order
from .conv_winograd import CHUNK_BYTES, PARTIAL_BYTES

# From these channel counts on the kernels beat im2col + GEMM and the direct loops (forward + backward,
# N = 64, L = 64 and N = 32, L = 200, float64 and float32, 2 threads: 1.3–1.8× gemm from 16 → 16 to
# 256 → 256); below, the direct loops win (8 → 8, 32 → 8) or it is a toss-up (8 → 32).
MIN_C_IN = 16
MIN_C_OUT = 16
# tile_size(): m = 4 (float64) from this many input rows N·H on; below, m = 2.
MIN_ROWS_M4 = 16
# Rows per slot at least, for m = 4: the α GEMMs of a chunk need a few rows' 16 tiles (k·T columns) to
# run near BLAS's peak (Du's layer, N = 64: 16 slots of 4 rows 9.7 ms, 8 slots of 8 rows 9.25 ms).
# m = 2 (32 tiles a row) gains nothing from it (11.1 ms either way) and keeps one row per slot, so a
# batch of few rows holds the buffers of one row per thread (the NTK's block mode: its memory).
MIN_SLOT_ROWS = 8
# The α − 1 finite interpolation points, in the order they are taken (∞ is the last point).
POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))


# ------------------------------------------------------------------------------ the transforms
@lru_cache(maxsize=None)
def _exact_matrices(m, r):
    """(Aᵀ, G, Bᵀ) as tuples of Fractions: see :func:`winograd_matrices`."""
    a = m + r - 1
    if not (1 <= m and 2 <= r and a - 1 <= len(POINTS)):
        raise ValueError(f"winograd_matrices: F(m, r) needs m >= 1, r >= 2 and m + r - 2 <= {len(POINTS)}, "
                         f"got m={m}, r={r}")
    pts = [Fraction(p) for p in POINTS[:a - 1]]

    def vander(k):   # (α × k): a polynomial of degree < k evaluated at the points; at ∞ its top coefficient
        return [[p ** e for e in range(k)] for p in pts] + [[Fraction(int(e == k - 1)) for e in range(k)]]

    # Z = V_α⁻¹ (interpolation), by Gauss–Jordan elimination on Fractions: exact
    A = [row + [Fraction(int(i == j)) for j in range(a)] for i, row in enumerate(vander(a))]
    for col in range(a):
        piv = next(i for i in range(col, a) if A[i][col] != 0)
        A[col], A[piv] = A[piv], A[col]
        A[col] = [v / A[col][col] for v in A[col]]
        for i in range(a):
            if i != col and A[i][col] != 0:
                A[i] = [u - A[i][col] * v for u, v in zip(A[i], A[col])]
    Z = [row[a:] for row in A]
    BT = [[Z[j][i] for j in range(a)] for i in range(a)]       # Bᵀ = Zᵀ
    G = vander(r)
    # scale each row ξ of Bᵀ to integers, and row ξ of G by the inverse: (G g) ⊙ (Bᵀ d) is unchanged
    for i in range(a):
        den = lcm(*(v.denominator for v in BT[i]))
        BT[i] = [v * den for v in BT[i]]
        G[i] = [v / den for v in G[i]]
    AT = [list(col) for col in zip(*vander(m))]                 # Aᵀ = V_mᵀ
    return tuple(map(tuple, AT)), tuple(map(tuple, G)), tuple(map(tuple, BT))


def winograd_matrices(m, r=3):
    """Aᵀ (m × α), G (α × r), Bᵀ (α × α) of the Winograd algorithm F(m, r), α = m + r − 1, float64.

    The m outputs y[i] = Σ_k d[i + k] g[k] of a correlation of α inputs d with r taps g are
    y = Aᵀ [(G g) ⊙ (Bᵀ d)]. Construction (Cook–Toom, transposed; Lavin & Gray 2016): the linear
    convolution c = g ∗ h of h (m values) is c = Z [(V_r g) ⊙ (V_m h)], with V_k (α × k) evaluating a
    polynomial of degree < k at the points POINTS[:α − 1] and ∞, and Z = V_α⁻¹ interpolating; since
    ⟨d, g ∗ h⟩ = ⟨y, h⟩, y = V_mᵀ [(V_r g) ⊙ (Zᵀ d)]. The rows of Bᵀ are then scaled to integers (those
    of G by the inverse). Exact in rational arithmetic; entries of Aᵀ and Bᵀ are small integers for
    m ≤ 4, r = 3, so the data transforms are exact in float32 and float64.
    """
    return tuple(np.array([[float(v) for v in row] for row in M]) for M in _exact_matrices(int(m), int(r)))


def tile_size(dtype, rows) -> int:
    """m for F(m, 3): 4 in float64 from MIN_ROWS_M4 input rows on, else 2 (see "Tile size and accuracy")."""
    return 4 if np.dtype(dtype) == np.float64 and rows >= MIN_ROWS_M4 else 2


def weight_transform(W, dtype=np.float64, m=2):
    """U (α, C_out, C_in) with U[ξ, o, c] = (G W[o, c, 0])[ξ]; W (C_out, C_in, 1, 3), G of F(m, 3).

    One pass over W in Numba (G in float64, U in dtype): no temporaries, U is α/3 the size of W."""
    G = winograd_matrices(m)[1]
    W = np.ascontiguousarray(W)
    U = np.empty((G.shape[0],) + W.shape[:2], dtype=dtype)
    _weight_transform(W.reshape(W.shape[0], W.shape[1], 3), G, U)
    return U


@njit(cache=True, parallel=True)
def _weight_transform(w, G, U):
    Co, C = w.shape[0], w.shape[1]
    for o in prange(Co):
        for c in range(C):
            g0, g1, g2 = w[o, c, 0], w[o, c, 1], w[o, c, 2]
            for xi in range(G.shape[0]):
                U[xi, o, c] = G[xi, 0] * g0 + G[xi, 1] * g1 + G[xi, 2] * g2


# --------------------------------------------------------------------------------- the kernels
@njit(cache=True, inline="always")
def _row(r, H):
    n = r // H
    return n, r - n * H


@njit(cache=True, inline="always")
def _fill_row(src, pl, row):
    """row ← the zero-padded input row: row[pl + i] = src[i], 0 elsewhere."""
    for i in range(row.shape[0]):
        row[i] = 0
    for i in range(src.shape[0]):
        row[pl + i] = src[i]


# The four transforms, written out for m = 2 and m = 4 (the rows of winograd_matrices(m); a loop
# over the matrices' entries is 1.5× slower than these unit-stride loops over the tiles).
@njit(cache=True, inline="always")
def _input_tiles(row, T, m, V, c, s):
    """V[ξ, c, s + t] = (Bᵀ d)[ξ] with d = row[m·t : m·t + m + 2], for the T tiles of one padded row."""
    if m == 4:
        v0, v1, v2 = V[0, c, s:s + T], V[1, c, s:s + T], V[2, c, s:s + T]
        v3, v4, v5 = V[3, c, s:s + T], V[4, c, s:s + T], V[5, c, s:s + T]
        for t in range(T):
            d0, d1, d2, d3, d4, d5 = row[4 * t], row[4 * t + 1], row[4 * t + 2], row[4 * t + 3], row[4 * t + 4], \
                row[4 * t + 5]
            p, q = 4 * d2 - d4, 4 * d1 - d3
            u, w = d4 - d2, 2 * (d3 - d1)
            v0[t] = 4 * d0 - 5 * d2 + d4
            v1[t] = p + q
            v2[t] = p - q
            v3[t] = u + w
            v4[t] = u - w
            v5[t] = 4 * d1 - 5 * d3 + d5
    else:
        v0, v1, v2, v3 = V[0, c, s:s + T], V[1, c, s:s + T], V[2, c, s:s + T], V[3, c, s:s + T]
        for t in range(T):
            d0, d1, d2, d3 = row[2 * t], row[2 * t + 1], row[2 * t + 2], row[2 * t + 3]
            v0[t] = d0 - d2
            v1[t] = d1 + d2
            v2[t] = d2 - d1
            v3[t] = d3 - d1


@njit(cache=True, inline="always")
def _output_tiles(M, o, s, T, m, bo, orow):
    """orow[m·t + i] = (Aᵀ M[:, o, s + t])[i] + bo for the T tiles of one output row."""
    if m == 4:
        m0, m1, m2 = M[0, o, s:s + T], M[1, o, s:s + T], M[2, o, s:s + T]
        m3, m4, m5 = M[3, o, s:s + T], M[4, o, s:s + T], M[5, o, s:s + T]
        for t in range(T):
            a, b = m1[t] + m2[t], m1[t] - m2[t]
            e, f = m3[t] + m4[t], m3[t] - m4[t]
            orow[4 * t] = m0[t] + a + e + bo
            orow[4 * t + 1] = b + 2 * f + bo
            orow[4 * t + 2] = a + 4 * e + bo
            orow[4 * t + 3] = b + 8 * f + m5[t] + bo
    else:
        m0, m1, m2, m3 = M[0, o, s:s + T], M[1, o, s:s + T], M[2, o, s:s + T], M[3, o, s:s + T]
        for t in range(T):
            orow[2 * t] = m0[t] + m1[t] + m2[t] + bo
            orow[2 * t + 1] = m1[t] - m2[t] + m3[t] + bo


@njit(cache=True, inline="always")
def _dout_tiles(dy, T, m, dM, o, s):
    """dM[ξ, o, s + t] = (A dy[m·t : m·t + m])[ξ] for the T tiles of one dout row (0 past L_out)."""
    if m == 4:
        d0, d1, d2 = dM[0, o, s:s + T], dM[1, o, s:s + T], dM[2, o, s:s + T]
        d3, d4, d5 = dM[3, o, s:s + T], dM[4, o, s:s + T], dM[5, o, s:s + T]
        for t in range(T):
            y0, y1, y2, y3 = dy[4 * t], dy[4 * t + 1], dy[4 * t + 2], dy[4 * t + 3]
            a, b = y0 + y2, y1 + y3
            e, f = y0 + 4 * y2, 2 * y1 + 8 * y3
            d0[t] = y0
            d1[t] = a + b
            d2[t] = a - b
            d3[t] = e + f
            d4[t] = e - f
            d5[t] = y3
    else:
        d0, d1, d2, d3 = dM[0, o, s:s + T], dM[1, o, s:s + T], dM[2, o, s:s + T], dM[3, o, s:s + T]
        for t in range(T):
            y0, y1 = dy[2 * t], dy[2 * t + 1]
            d0[t] = y0
            d1[t] = y0 + y1
            d2[t] = y0 - y1
            d3[t] = y1


@njit(cache=True, inline="always")
def _input_grad_tiles(dV, c, s, T, m, row):
    """row[m·t : m·t + m + 2] += B dV[:, c, s + t] for the T tiles of one padded row (row zeroed first)."""
    for i in range(row.shape[0]):
        row[i] = 0
    if m == 4:
        for t in range(T):
            a0, a1, a2 = dV[0, c, s + t], dV[1, c, s + t], dV[2, c, s + t]
            a3, a4, a5 = dV[3, c, s + t], dV[4, c, s + t], dV[5, c, s + t]
            p, q = a1 + a2, a1 - a2
            u, w = a3 + a4, a3 - a4
            row[4 * t] += 4 * a0
            row[4 * t + 1] += 4 * q + 4 * a5 - 2 * w
            row[4 * t + 2] += 4 * p - 5 * a0 - u
            row[4 * t + 3] += 2 * w - q - 5 * a5
            row[4 * t + 4] += a0 - p + u
            row[4 * t + 5] += a5
    else:
        for t in range(T):
            a0, a1, a2, a3 = dV[0, c, s + t], dV[1, c, s + t], dV[2, c, s + t], dV[3, c, s + t]
            row[2 * t] += a0
            row[2 * t + 1] += a1 - a2 - a3
            row[2 * t + 2] += a1 + a2 - a0
            row[2 * t + 3] += a3


@njit(cache=True, inline="always")
def _input_transform(x, c0, k, H, pl, T, m, row, V):
    """V (α, C, k·T) ← Bᵀ d for every tile of the k input rows c0 … c0 + k − 1, channel by channel."""
    for c in range(x.shape[1]):
        for j in range(k):
            n, h = _row(c0 + j, H)
            _fill_row(x[n, c, h], pl, row)
            _input_tiles(row, T, m, V, c, j * T)


@njit(cache=True, parallel=True, fastmath={"contract"})
def _w1_forward(x, U, b, pt, pl, T, nc, nslots, out):
    """out[n, :, pt + h] for every input row (n, h): chunks of nc rows per slot, α GEMMs per chunk."""
    N, C, H, _ = x.shape
    a, Co = U.shape[0], U.shape[1]
    m = a - 2
    Lout = out.shape[3]
    R = N * H
    for slot in prange(nslots):
        r0, r1 = slot * R // nslots, (slot + 1) * R // nslots
        row = np.empty(m * T + 2, dtype=x.dtype)
        orow = np.empty(m * T, dtype=x.dtype)                 # the T tiles' outputs; the first L_out are kept
        Vbuf = np.empty(a * C * nc * T, dtype=x.dtype)        # once per slot: no allocation per chunk
        Mbuf = np.empty(a * Co * nc * T, dtype=x.dtype)
        for c0 in range(r0, r1, nc):
            k = min(nc, r1 - c0)
            V = Vbuf[:a * C * k * T].reshape((a, C, k * T))    # contiguous for any k: V[ξ] feeds BLAS
            M = Mbuf[:a * Co * k * T].reshape((a, Co, k * T))
            _input_transform(x, c0, k, H, pl, T, m, row, V)
            for xi in range(a):
                np.dot(U[xi], V[xi], M[xi])
            for j in range(k):
                n, h = _row(c0 + j, H)
                for o in range(Co):
                    _output_tiles(M, o, j * T, T, m, b[o], orow)
                    dst = out[n, o, pt + h]
                    for i in range(Lout):
                        dst[i] = orow[i]


@njit(cache=True, parallel=True, fastmath=_FM)
def _w1_backward(dout, x, U, pt, pl, H, T, nc, need_dx, need_dw, dx, dUpart):
    """dx (if need_dx) and the per-slot partial dU (if need_dw); x may be a stand-in when not need_dw."""
    N, Co, _, Lout = dout.shape
    a, C = U.shape[0], U.shape[2]
    m = a - 2
    R = N * H
    nslots = dUpart.shape[0]
    for slot in prange(nslots):
        r0, r1 = slot * R // nslots, (slot + 1) * R // nslots
        row = np.empty(m * T + 2, dtype=dout.dtype)
        dy = np.zeros(m * T, dtype=dout.dtype)                  # ends in zeros past L_out: no branch
        tmp = np.empty((Co, C) if need_dw else (0, 0), dtype=dout.dtype)
        if need_dw:
            for xi in range(a):
                for o in range(Co):
                    for c in range(C):
                        dUpart[slot, xi, o, c] = 0
        dMbuf = np.empty(a * Co * nc * T, dtype=dout.dtype)
        Vbuf = np.empty(a * C * nc * T, dtype=dout.dtype)     # V, then dV
        for c0 in range(r0, r1, nc):
            k = min(nc, r1 - c0)
            dM = dMbuf[:a * Co * k * T].reshape((a, Co, k * T))
            for j in range(k):
                n, h = _row(c0 + j, H)
                for o in range(Co):
                    src = dout[n, o, pt + h]
                    for i in range(Lout):
                        dy[i] = src[i]
                    _dout_tiles(dy, T, m, dM, o, j * T)
            if need_dw:
                V = Vbuf[:a * C * k * T].reshape((a, C, k * T))
                _input_transform(x, c0, k, H, pl, T, m, row, V)
                for xi in range(a):
                    np.dot(dM[xi], V[xi].T, tmp)
                    _add_into(dUpart[slot, xi], tmp)
            if need_dx:
                dV = Vbuf[:a * C * k * T].reshape((a, C, k * T))       # V is no longer needed
                for xi in range(a):
                    np.dot(U[xi].T, dM[xi], dV[xi])
                for c in range(C):
                    for j in range(k):
                        n, h = _row(c0 + j, H)
                        _input_grad_tiles(dV, c, j * T, T, m, row)
                        dst = dx[n, c, h]
                        for i in range(dst.shape[0]):
                            dst[i] = row[pl + i]


# ---------------------------------------------------------------------------------- the wrappers
def applies(w_shape, stride, dilation, groups) -> bool:
    """Whether the 1-D Winograd kernels handle, and pay off for, this convolution: a 1×3 kernel,
    stride (1, 1), dilation (1, 1), one group, C_in ≥ MIN_C_IN and C_out ≥ MIN_C_OUT."""
    Co, Cg, kh, kw = (int(v) for v in w_shape)
    if (kh, kw) != (1, 3) or int(groups) != 1:
        return False
    if tuple(int(v) for v in stride) != (1, 1) or tuple(int(v) for v in dilation) != (1, 1):
        return False
    return Cg >= MIN_C_IN and Co >= MIN_C_OUT


def _geometry(x_shape, w_shape, padding, where):
    """(H_out, L_out), checking the arrays' shapes."""
    if len(x_shape) != 4 or len(w_shape) != 4 or tuple(w_shape[1:]) != (x_shape[1], 1, 3):
        raise ValueError(f"winograd1d conv: {where} needs x (N, C, H, L) and W (C_out, C, 1, 3), "
                         f"got {tuple(x_shape)} and {tuple(w_shape)}")
    pt, pb, pl, pr = (int(p) for p in padding)
    Lout = x_shape[3] + pl + pr - 2
    if Lout < 1 or min(pt, pb, pl, pr) < 0:
        raise ValueError(f"winograd1d conv: a 1x3 kernel does not fit the padded input (length {x_shape[3]}, "
                         f"padding {tuple(padding)})")
    return x_shape[2] + pt + pb, Lout


def _tiles(dtype, rows, Lout, m):
    """(m, T): the outputs per tile (tile_size() unless given) and the tiles per row."""
    m = tile_size(dtype, rows) if m is None else int(m)
    if m not in (2, 4):
        raise ValueError(f"winograd1d conv: the kernels are written for m = 2 or 4 outputs per tile, got m={m}")
    return m, -(-Lout // m)


def _chunks(R, m, per_row, dw_bytes=0):
    """(rows per chunk, slots) from the shapes only: at most MAX_SLOTS slots, of at least
    MIN_SLOT_ROWS rows for m = 4 (fewer slots if their partial dU would pass PARTIAL_BYTES), chunks
    whose transformed rows take at most CHUNK_BYTES."""
    slots = max(1, min(R // (MIN_SLOT_ROWS if m == 4 else 1), MAX_SLOTS))
    if dw_bytes:
        slots = max(1, min(slots, PARTIAL_BYTES // dw_bytes))
    return max(1, min(CHUNK_BYTES // max(per_row, 1), -(-R // slots))), slots


def winograd1d_forward(x, W, b, padding, m=None):
    """out = W ⋆ x + b for a 1×3, stride-1, dilation-1, one-group kernel.

    Parameters
    ----------
    x : (N, C_in, H, L_in), float32 or float64
    W : (C_out, C_in, 1, 3), cast to x's dtype
    b : (C_out,) or None
    padding : (pt, pb, pl, pr)
    m : outputs per tile, 2 or 4; None: :func:`tile_size`.

    Returns
    -------
    out : (N, C_out, H + pt + pb, L_in + pl + pr − 2)
    """
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"winograd1d conv: winograd1d_forward needs float32 or float64 arrays, got {x.dtype}")
    Ho, Lout = _geometry(x.shape, np.shape(W), padding, "winograd1d_forward")
    N, C, H, _ = x.shape
    Co = W.shape[0]
    pt = int(padding[0])
    bb = np.zeros(Co, dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    out = np.empty((N, Co, Ho, Lout), dtype=x.dtype)
    out[:, :, :pt] = bb[:, None, None]                  # padded rows: the bias only
    out[:, :, pt + H:] = bb[:, None, None]
    if N * H == 0:
        return out
    m, T = _tiles(x.dtype, N * H, Lout, m)
    U = weight_transform(W, x.dtype, m)
    nc, slots = _chunks(N * H, m, (m + 2) * (C + Co) * T * x.itemsize)
    with _one_blas_thread(), _serial_if_tiny(N * H * Co * C * 3 * Lout):
        _w1_forward(x, U, bb, pt, int(padding[2]), T, nc, slots, out)
    return out


def winograd1d_backward(dout, x, W, padding, need_dx=True, need_dw=True, m=None):
    """Gradients of ⟨dout, W ⋆ x + b⟩ for a 1×3, stride-1, dilation-1, one-group kernel.

    Parameters
    ----------
    dout : (N, C_out, H_out, L_out), float32 or float64
    x : (N, C_in, H, L_in), cast to dout's dtype (only its shape is used when need_dw is False)
    W : (C_out, C_in, 1, 3)
    padding : (pt, pb, pl, pr)
    need_dx, need_dw : skip what is not wanted (returned as None).
    m : outputs per tile, 2 or 4; None: :func:`tile_size`.

    Returns
    -------
    dx : (N, C_in, H, L_in) or None
    dW : (C_out, C_in, 1, 3) or None
    db : (C_out,), summed in float64 in a fixed order and cast back
    """
    dout = np.ascontiguousarray(dout)
    dt = dout.dtype
    if dt not in (np.float32, np.float64):
        raise ValueError(f"winograd1d conv: winograd1d_backward needs float32 or float64 arrays, got {dt}")
    x = np.ascontiguousarray(x, dtype=dt) if need_dw else x          # without dW only x's shape is read
    Ho, Lout = _geometry(x.shape, np.shape(W), padding, "winograd1d_backward")
    N, C, H, _ = x.shape
    Co = W.shape[0]
    if dout.shape != (N, Co, Ho, Lout):
        raise ValueError(f"winograd1d conv: dout has shape {dout.shape}, expected {(N, Co, Ho, Lout)}")
    db = np.empty(Co, dtype=np.float64)
    _sum_bias(dout.reshape(N, Co, Ho * Lout), db)
    dx = np.empty(x.shape, dtype=dt) if need_dx else None           # every entry is written
    if N * H == 0 or not (need_dx or need_dw):
        return dx, (np.zeros(W.shape, dtype=dt) if need_dw else None), db.astype(dt)
    m, T = _tiles(dt, N * H, Lout, m)
    a = m + 2
    U = weight_transform(W, dt, m)
    xk = x if need_dw else np.empty((1, C, 1, 1), dtype=dt)           # not read; only its geometry is
    nc, slots = _chunks(N * H, m, a * (C + Co) * T * dt.itemsize, a * Co * C * dt.itemsize if need_dw else 0)
    dUpart = np.empty((slots, a, Co, C) if need_dw else (slots, 0, 0, 0), dtype=dt)
    macs = N * H * Co * C * 3 * Lout * (int(bool(need_dx)) + int(bool(need_dw)))
    with _one_blas_thread(), _serial_if_tiny(macs):
        _w1_backward(dout, xk, U, int(padding[0]), int(padding[2]), H, T, nc, bool(need_dx), bool(need_dw),
                     dx if need_dx else np.empty((0, 0, 0, 0), dtype=dt), dUpart)
    dW = None
    if need_dw:
        dU = _sum_in_order(dUpart).astype(np.float64)                   # (α, C_out, C_in)
        G = winograd_matrices(m)[1]
        dW = np.einsum("xk,xoc->ock", G, dU)[:, :, None, :].astype(dt)  # dg = Gᵀ dU
    return dx, dW, db.astype(dt)
