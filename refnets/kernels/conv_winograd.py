"""Winograd F(2×2, 3×3) convolution in Numba: forward, dx and dW of 3×3, stride-1 kernels.

Same geometry and notation as :mod:`refnets.kernels.conv_reference` (x (N, C, H, W), W (C_out, C, 3, 3),
zero padding (pt, pb, pl, pr), H_out = H + pt + pb − 2, W_out = W + pl + pr − 2), groups = 1 and
dilation 1 only; tested equal to the reference (1e-12 relative in float64).

Tiles and transforms
--------------------
The output is cut into 2×2 tiles: th = ⌈H_out/2⌉ tile rows, tw = ⌈W_out/2⌉ tile columns. Output
tile (ty, tx) needs the 4×4 input tile d = x̃[2ty : 2ty+4, 2tx : 2tx+4] (x̃ zero-padded); neighbouring
input tiles overlap by two rows / columns. With g the 3×3 kernel of one (o, c) pair, the 2×2
outputs of a tile are Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, with

         ⎡1  0 −1  0⎤         ⎡ 1    0    0 ⎤
    Bᵀ = ⎢0  1  1  0⎥,    G = ⎢1/2  1/2  1/2⎥,    Aᵀ = ⎡1  1  1  0⎤
         ⎢0 −1  1  0⎥         ⎢1/2 −1/2  1/2⎥          ⎣0  1 −1 −1⎦.
         ⎣0  1  0 −1⎦         ⎣ 0    0    1 ⎦

(Bᵀ d B needs only additions, the 1/2 of G is applied once to the weights.) Summed over the
input channels, and with U = G g Gᵀ (4×4 per (o, c)), V = Bᵀ d B (4×4 per (c, tile)), every one of
the 16 positions ξ = 4i + j of the 4×4 "Winograd domain" is an independent matrix product

    M[ξ] (C_out × T) = U[ξ] (C_out × C) · V[ξ] (C × T),       out tile = Aᵀ M A + b,

over all T tiles: 16 GEMMs of C_out·C·T multiply-adds each replace the 36·C_out·C·T of direct
convolution (2.25× fewer), and the transforms cost O((C + C_out)·T).

Backward (chain rule through the same steps; dY the 2×2 dout tiles, zero beyond H_out, W_out):

    dM = A dY Aᵀ                                   (16 values per (o, tile))
    dU[ξ] (C_out × C) = Σ_t dM[ξ][o, t] V[ξ][c, t]   16 GEMMs dM[ξ] · V[ξ]ᵀ, V recomputed from x
    dg = Gᵀ dU G                                   (3×3 per (o, c): dW)
    dV[ξ] (C × T) = U[ξ]ᵀ · dM[ξ]                    16 GEMMs
    dd = B dV Bᵀ                                   (4×4 per (c, tile)), added into the
                                                   overlapping input tiles: dx̃ → dx (cropped)

db = Σ dout as in :mod:`refnets.kernels.conv_numba`.

Layout: parity planes, wide tiles, samples innermost
----------------------------------------------------
A chunk of m samples is transformed one channel at a time. Its padded planes are split by row
and column parity into four "parity planes" X[2p + q] holding x̃[n, c, 2ry + p, 2k + q] at index
(ry·tw1 + k)·m + n: tile rows of tw1 = tw + 1 columns (one junk tile per tile row) with the m
samples innermost. Tile f = (ty·tw1 + tx)·m + n then finds its element d[a, b] at

    X[2(a%2) + b%2][f + ((a//2)·tw1 + b//2)·m],

a constant offset per (a, b). So each of the 16 entries of V is one flat loop over all L = m·Tw
tiles of the chunk (Tw = th·tw1), V[ξ][c, f] = Σ ± X…[f + offset] with four terms, on unit-stride
arrays: LLVM vectorises it (one destination per loop keeps its runtime alias checks few). The
offsets never cross into another sample's tiles because the samples are innermost; the planes
just hold one more row pair (th + 1) than there are tile rows. The same layout serves every
transform: the output and dout tiles are parity planes Y, D of L entries, and dx̃ is accumulated
in parity planes (each dd[a, b] added at the offset it was read from) before being copied out.

Edges. The padding is not materialised: x's values sit in the planes at their padded positions
(offset by pt, pl) and every other plane entry stays 0, written once per chunk. When H_out (or
W_out) is odd the last tile row (column) reads zeros past the padded image and its extra output
row (column) is dropped; in the backward the dout planes hold 0 beyond H_out, W_out (and at the
junk tiles), so those positions add nothing to dW or dx.

The price: tw1/tw more GEMM columns (7 % at W_out = 28, 14 % at W_out = 14; the junk tiles are
computed and dropped, or carry dout = 0 so they add nothing), and scalar "mover" passes that copy
x and dout into the parity planes and out and dx out of them (strided; rows too short to vectorise).
With 16 input channels the forward and dx GEMMs, of inner length C and C_out, run at ~60 % of
BLAS's peak and take about half of the time; the transforms and movers most of the rest. The dW
products dU[ξ] = dM[ξ]·V[ξ]ᵀ (e.g. a 32 × 16 output summed over ~10³ tiles) run in
:func:`refnets.kernels.gemm_nt.dot_nt`, which keeps a 4 × 4 block of sums in registers: 2× BLAS on
them.

Tried and not kept: the samples outermost (parity planes per sample, V's columns in sample order).
The movers become contiguous de-interleaves, 1.8× faster, but the offset transforms then run per
sample over th·tw1 tiles (56 at 16 × 16): the forward gained 5 % at 28 × 28, and the backward lost
7 % at 28 × 28 and 30 % at 16 × 16 (float32, 2 threads).

Why not F(4×4, 3×3)
-------------------
36 GEMMs over a quarter of the tiles: 1.78× fewer multiply-adds than F(2×2) in principle, but
with 6×6 tiles, partial tiles and the junk column the saving on these layers is 1.25–1.7×, the
transforms cost more, and float32 loses a factor 10–20 in accuracy (measured 1–9e-6 of max|out|
against 1–5e-7). A prototype on the same layout was 15 % faster than F(2×2) at 28×28 outputs and
no faster at 30×30 or 14×14 (float32, 2 threads), so F(2×2) is the one implemented.

Threads and determinism
-----------------------
As in :mod:`refnets.kernels.conv_numba`: one ``prange`` over a fixed number of slots (from the
shapes only); slot s owns the samples s·N/S … (s+1)·N/S − 1, in chunks whose V and M take at most
CHUNK_BYTES; BLAS (``np.dot``) runs single-threaded inside the slots; dU and db are summed per
slot and the slots' partial sums added in slot order. Bit-identical for any thread count.

Accuracy
--------
Winograd is not the same sum as direct convolution: V adds 4 inputs, U mixes the 9 taps, and
Aᵀ M A adds 9 products. The error stays at the level of im2col's: measured 1–5e-7 of max|out|
in float32 (im2col: 1–5e-7) for forward, dx and dW with C up to 256, ~4e-16 in float64. The tests
bound it by 1e-5 (float32) and 1e-12 (float64) relative to the reference's max. Non-finite inputs
give non-finite results but, as inputs are mixed before the products, possibly NaN where the
direct sum gives ±inf.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv_numba import MAX_SLOTS, PARTIAL_BYTES, _FM, _add_into, _one_blas_thread, _serial_if_tiny, _sum_in_order
from .gemm_nt import dot_nt

# Bytes of one chunk's V and M (16·(C + C_out)·m·Tw values). Measured (2 threads): 4 MiB is 5 % faster
# than 2 MiB, 10 % faster than 1 MiB, and as fast as 6–8 MiB.
CHUNK_BYTES = 4 << 20
# applies(): at least this many C_in·C_out channel pairs (fewer: conv_numba's direct loops are faster).
MIN_PAIRS = 256

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)

# The transforms as (index, sign) lists, for the kernels' table-driven loops.
# Bᵀ row i = sign0·e[idx0] + sign1·e[idx1]   (V = Bᵀ d B: rows, then columns)
_BT_IDX = np.array([[0, 2], [1, 2], [2, 1], [1, 3]], dtype=np.int64)
_BT_SGN = np.array([[1, -1], [1, 1], [1, -1], [1, -1]], dtype=np.float64)
# Aᵀ row a = Σ_k sign_k·e[idx_k]               (Y = Aᵀ M A)
_AT_IDX = np.array([[0, 1, 2], [1, 2, 3]], dtype=np.int64)
_AT_SGN = np.array([[1, 1, 1], [1, -1, -1]], dtype=np.float64)
# A row i (column i of Aᵀ): _A_CNT[i] terms  (dM = A dY Aᵀ)
_A_IDX = np.array([[0, 0], [0, 1], [0, 1], [1, 1]], dtype=np.int64)
_A_SGN = np.array([[1, 0], [1, 1], [1, -1], [-1, 0]], dtype=np.float64)
_A_CNT = np.array([1, 2, 2, 1], dtype=np.int64)
# B row a (column a of Bᵀ): _B_CNT[a] terms   (dd = B dV Bᵀ)
_B_IDX = np.array([[0, 0, 0], [1, 2, 3], [0, 1, 2], [3, 3, 3]], dtype=np.int64)
_B_SGN = np.array([[1, 0, 0], [1, -1, 1], [-1, 1, 1], [-1, 0, 0]], dtype=np.float64)
_B_CNT = np.array([1, 3, 3, 1], dtype=np.int64)


# ------------------------------------------------------------------ flat unit-stride loops
# One destination and a few sources per loop: LLVM's runtime alias checks stay few and the loop
# vectorises (16 destinations in one loop would not). Signs are ±1 of the array's dtype, so the
# products are exact and the sums are the plain ± sums.
@njit(cache=True, inline="always")
def _set1(dst, a, sa, n):
    for f in range(n):
        dst[f] = sa * a[f]


@njit(cache=True, inline="always")
def _set2(dst, a, sa, b, sb, n):
    for f in range(n):
        dst[f] = sa * a[f] + sb * b[f]


@njit(cache=True, inline="always")
def _set3(dst, a, sa, b, sb, c, sc, n):
    for f in range(n):
        dst[f] = sa * a[f] + sb * b[f] + sc * c[f]


@njit(cache=True, inline="always")
def _set3b(dst, a, sa, b, sb, c, sc, bias, n):
    for f in range(n):
        dst[f] = sa * a[f] + sb * b[f] + sc * c[f] + bias


@njit(cache=True, inline="always")
def _set4(dst, a, sa, b, sb, c, sc, d, sd, n):
    for f in range(n):
        dst[f] = sa * a[f] + sb * b[f] + sc * c[f] + sd * d[f]


@njit(cache=True, inline="always")
def _add1(dst, a, sa, n):
    for f in range(n):
        dst[f] += sa * a[f]


@njit(cache=True, inline="always")
def _add3(dst, a, sa, b, sb, c, sc, n):
    for f in range(n):
        dst[f] += sa * a[f] + sb * b[f] + sc * c[f]


# ------------------------------------------------------------------------ tile transforms
@njit(cache=True, inline="always")
def _plane(P, a, b, m, tw1):
    """Tile element d[a, b] of all wide tiles: parity plane (a%2, b%2) read from (a//2·tw1 + b//2)·m on."""
    return P[(a % 2) * 2 + b % 2, ((a // 2) * tw1 + b // 2) * m:]


@njit(cache=True, inline="always")
def _u(i):
    """i as an unsigned index: Numba then emits no negative-index wraparound test (2× faster scalar loops)."""
    return np.uint64(i)


# The four "movers" below copy between NCHW planes and the parity planes (flat, stride m between
# neighbouring tiles): scatters/gathers too short per row to vectorise, so they are written as
# tight scalar loops over flat arrays (no per-row views, which cost more than a row's copy).
@njit(cache=True)
def _fill_planes(x, n0, m, c, pt, pl, tw1, X):
    """X[2p + q, (ry·tw1 + k)·m + n] = x̃[n0 + n, c, 2ry + p, 2k + q] for the positions inside x.

    X (4, P ≥ (th + 1)·tw1·m + m): the zero padding around x is set by the caller (once per chunk).
    """
    H, W = x.shape[2], x.shape[3]
    P = X.shape[1]
    Xf = X.reshape(4 * P)
    qa = pl % 2                          # the plane that gets x's even columns
    ka, kb = pl // 2, (pl + 1) // 2      # k of x's columns 0 and 1
    h, mu = W // 2, _u(m)
    for n in range(m):
        src = x[n0 + n, c].reshape(H * W)
        for r in range(H):
            R = r + pt
            ia = _u(((R % 2) * 2 + qa) * P + ((R // 2) * tw1 + ka) * m + n)
            ib = _u(((R % 2) * 2 + 1 - qa) * P + ((R // 2) * tw1 + kb) * m + n)
            s0 = _u(r * W)
            for u in range(h):
                uu = _u(u)
                Xf[ia + uu * mu] = src[s0 + uu + uu]
                Xf[ib + uu * mu] = src[s0 + uu + uu + _u(1)]
            if W % 2:
                Xf[ia + _u(h) * mu] = src[s0 + _u(W - 1)]


@njit(cache=True, fastmath={"contract"})
def _input_transform(X, m, tw1, L, sg, V, c):
    """V[ξ, c, f] = (Bᵀ d_f B)[i, j] (ξ = 4i + j) for the L wide tiles f; X the parity planes, sg = ±1 table."""
    for i in range(4):
        a0, a1 = _BT_IDX[i, 0], _BT_IDX[i, 1]
        s0, s1 = sg[i, 0], sg[i, 1]
        for j in range(4):
            b0, b1 = _BT_IDX[j, 0], _BT_IDX[j, 1]
            t0, t1 = sg[j, 0], sg[j, 1]
            _set4(V[4 * i + j, c], _plane(X, a0, b0, m, tw1), s0 * t0, _plane(X, a0, b1, m, tw1), s0 * t1,
                  _plane(X, a1, b0, m, tw1), s1 * t0, _plane(X, a1, b1, m, tw1), s1 * t1, L)


@njit(cache=True, fastmath={"contract"})
def _output_transform(M, o, L, sg, bias, Z, Y):
    """Y[2a + b, f] = (Aᵀ M_f A)[a, b] + bias for channel o; Z (4, L) scratch (the row stage)."""
    for a in range(2):
        i0, i1, i2 = _AT_IDX[a, 0], _AT_IDX[a, 1], _AT_IDX[a, 2]
        for j in range(4):
            _set3(Z[j], M[4 * i0 + j, o], sg[a, 0], M[4 * i1 + j, o], sg[a, 1], M[4 * i2 + j, o], sg[a, 2], L)
        for b in range(2):
            _set3b(Y[2 * a + b], Z[_AT_IDX[b, 0]], sg[b, 0], Z[_AT_IDX[b, 1]], sg[b, 1], Z[_AT_IDX[b, 2]], sg[b, 2],
                   bias, L)


@njit(cache=True)
def _store_output(Y, n0, m, o, tw1, out):
    """out[n0 + n, o, y, x] = Y[2(y%2) + x%2, ((y//2)·tw1 + x//2)·m + n]; tiles past H_out, W_out dropped."""
    Ho, Wo = out.shape[2], out.shape[3]
    P = Y.shape[1]
    Yf = Y.reshape(4 * P)
    h, mu = Wo // 2, _u(m)
    for n in range(m):
        dst = out[n0 + n, o].reshape(Ho * Wo)
        for y in range(Ho):
            i = _u((y % 2) * 2 * P + (y // 2) * tw1 * m + n)
            d0 = _u(y * Wo)
            for u in range(h):
                uu = _u(u)
                dst[d0 + uu + uu] = Yf[i + uu * mu]
                dst[d0 + uu + uu + _u(1)] = Yf[i + _u(P) + uu * mu]
            if Wo % 2:
                dst[d0 + _u(Wo - 1)] = Yf[i + _u(h) * mu]


@njit(cache=True)
def _fill_dout(dout, n0, m, o, tw1, D):
    """D[2a + b, (ty·tw1 + tx)·m + n] = dout[n0 + n, o, 2ty + a, 2tx + b]; other entries untouched (0)."""
    Ho, Wo = dout.shape[2], dout.shape[3]
    P = D.shape[1]
    Df = D.reshape(4 * P)
    h, mu = Wo // 2, _u(m)
    for n in range(m):
        src = dout[n0 + n, o].reshape(Ho * Wo)
        for y in range(Ho):
            i = _u((y % 2) * 2 * P + (y // 2) * tw1 * m + n)
            s0 = _u(y * Wo)
            for u in range(h):
                uu = _u(u)
                Df[i + uu * mu] = src[s0 + uu + uu]
                Df[i + _u(P) + uu * mu] = src[s0 + uu + uu + _u(1)]
            if Wo % 2:
                Df[i + _u(h) * mu] = src[s0 + _u(Wo - 1)]


@njit(cache=True, fastmath={"contract"})
def _dout_transform(D, L, sg, dM, o):
    """dM[ξ, o, f] = (A dY_f Aᵀ)[i, j] (ξ = 4i + j) from the dout parity planes D (4, ≥ L)."""
    for i in range(4):
        for j in range(4):
            ci, cj = _A_CNT[i], _A_CNT[j]
            a0, a1, b0, b1 = _A_IDX[i, 0], _A_IDX[i, 1], _A_IDX[j, 0], _A_IDX[j, 1]
            s0, s1, t0, t1 = sg[i, 0], sg[i, 1], sg[j, 0], sg[j, 1]
            dst = dM[4 * i + j, o]
            if ci == 1 and cj == 1:
                _set1(dst, D[2 * a0 + b0], s0 * t0, L)
            elif ci == 1:
                _set2(dst, D[2 * a0 + b0], s0 * t0, D[2 * a0 + b1], s0 * t1, L)
            elif cj == 1:
                _set2(dst, D[2 * a0 + b0], s0 * t0, D[2 * a1 + b0], s1 * t0, L)
            else:
                _set4(dst, D[2 * a0 + b0], s0 * t0, D[2 * a0 + b1], s0 * t1, D[2 * a1 + b0], s1 * t0,
                      D[2 * a1 + b1], s1 * t1, L)


@njit(cache=True, fastmath={"contract"})
def _grad_input_transform(dV, c, m, tw1, L, sg, Q, Gx):
    """Gx (4, ≥ L + (tw1 + 1)·m): parity planes of dx̃ for channel c, dd_f = B dV_f Bᵀ added at every tile.

    dd[a, b] of tile f goes to plane (a%2, b%2) at f + (a//2·tw1 + b//2)·m, as it was read in
    :func:`_input_transform`; the (0, 0)-offset pass of each plane sets it (and zeroes its tail), the
    other three add. Row stage first: (B dV)[a, j] = Q[j] (4, ≥ L), or ±dV[4i + j, c] itself when
    row a of B has one term (then sa carries its sign).
    """
    Q3 = Q.reshape((4, 1, Q.shape[1]))
    for a in range(4):
        i0 = _B_IDX[a, 0]
        if _B_CNT[a] == 1:
            _column_stage(dV, 4 * i0, c, sg[a, 0], a, m, tw1, L, sg, Gx)
        else:
            for j in range(4):
                _set3(Q[j], dV[4 * i0 + j, c], sg[a, 0], dV[4 * _B_IDX[a, 1] + j, c], sg[a, 1],
                      dV[4 * _B_IDX[a, 2] + j, c], sg[a, 2], L)
            _column_stage(Q3, 0, 0, sg[0, 0], a, m, tw1, L, sg, Gx)      # sg[0, 0] = +1


@njit(cache=True, inline="always")
def _column_stage(S, r0, c, sa, a, m, tw1, L, sg, Gx):
    """Row a of dd = (sa·S[r0 + j, c])_j · Bᵀ, each dd[a, b] set or added into its parity plane (see above)."""
    size = Gx.shape[1]
    for b in range(4):              # (a, b) = (0|1, 0|1) set their planes before any adds to them
        plane = Gx[(a % 2) * 2 + b % 2]
        k0, k1, k2 = _B_IDX[b, 0], _B_IDX[b, 1], _B_IDX[b, 2]
        if a < 2 and b < 2:
            for f in range(L, size):
                plane[f] = 0
            if _B_CNT[b] == 1:
                _set1(plane, S[r0 + k0, c], sa * sg[b, 0], L)
            else:
                _set3(plane, S[r0 + k0, c], sa * sg[b, 0], S[r0 + k1, c], sa * sg[b, 1], S[r0 + k2, c],
                      sa * sg[b, 2], L)
        else:
            dst = plane[((a // 2) * tw1 + b // 2) * m:]
            if _B_CNT[b] == 1:
                _add1(dst, S[r0 + k0, c], sa * sg[b, 0], L)
            else:
                _add3(dst, S[r0 + k0, c], sa * sg[b, 0], S[r0 + k1, c], sa * sg[b, 1], S[r0 + k2, c],
                      sa * sg[b, 2], L)


@njit(cache=True)
def _store_dx(Gx, n0, m, c, pt, pl, tw1, dx):
    """dx[n0 + n, c, r, w] = Gx[2p + q, (ry·tw1 + k)·m + n] with (2ry + p, 2k + q) = (r + pt, w + pl)."""
    H, W = dx.shape[2], dx.shape[3]
    P = Gx.shape[1]
    Gf = Gx.reshape(4 * P)
    qa = pl % 2
    ka, kb = pl // 2, (pl + 1) // 2
    h, mu = W // 2, _u(m)
    for n in range(m):
        dst = dx[n0 + n, c].reshape(H * W)
        for r in range(H):
            R = r + pt
            ia = _u(((R % 2) * 2 + qa) * P + ((R // 2) * tw1 + ka) * m + n)
            ib = _u(((R % 2) * 2 + 1 - qa) * P + ((R // 2) * tw1 + kb) * m + n)
            d0 = _u(r * W)
            for u in range(h):
                uu = _u(u)
                dst[d0 + uu + uu] = Gf[ia + uu * mu]
                dst[d0 + uu + uu + _u(1)] = Gf[ib + uu * mu]
            if W % 2:
                dst[d0 + _u(W - 1)] = Gf[ia + _u(h) * mu]


# ----------------------------------------------------------------------- parallel kernels
@njit(cache=True, inline="always")
def _slot_chunk(slot, nslots, N, nc, k):
    """(first sample, samples) of chunk k of slot, and the slot's number of chunks: slot s owns samples
    s·N//S … (s+1)·N//S − 1 (balanced to one sample), cut into equal chunks of at most nc."""
    lo = slot * N // nslots
    ns = (slot + 1) * N // nslots - lo
    nch = (ns + nc - 1) // nc
    n0 = lo + k * ns // max(nch, 1)
    return n0, lo + (k + 1) * ns // max(nch, 1) - n0, nch


@njit(cache=True, parallel=True)
def _wino_forward(x, U, b, pt, pl, th, tw1, nc, nslots, out):
    """out (N, C_out, H_out, W_out) = W ⋆ x + b by chunks of ≤ nc samples; U (16, C_out, C) = G W Gᵀ."""
    N, C = x.shape[0], x.shape[1]
    Co = U.shape[1]
    Tw = th * tw1
    bt = _BT_SGN.astype(x.dtype)
    at = _AT_SGN.astype(x.dtype)
    for slot in prange(nslots):
        Xb = np.empty(4 * ((th + 1) * tw1 + 1) * nc, dtype=x.dtype)
        Vb = np.empty(16 * C * nc * Tw, dtype=x.dtype)
        Mb = np.empty(16 * Co * nc * Tw, dtype=x.dtype)
        Z = np.empty((4, nc * Tw), dtype=x.dtype)
        Y = np.empty((4, nc * Tw), dtype=x.dtype)
        nch = _slot_chunk(slot, nslots, N, nc, 0)[2]
        for k in range(nch):
            n0, m, _ = _slot_chunk(slot, nslots, N, nc, k)
            L = m * Tw
            X = Xb[:4 * ((th + 1) * tw1 + 1) * m].reshape((4, ((th + 1) * tw1 + 1) * m))
            X[:] = 0                                       # the zero padding; x's positions are rewritten per channel
            V = Vb[:16 * C * L].reshape((16, C, L))
            M = Mb[:16 * Co * L].reshape((16, Co, L))
            for c in range(C):
                _fill_planes(x, n0, m, c, pt, pl, tw1, X)
                _input_transform(X, m, tw1, L, bt, V, c)
            for xi in range(16):
                np.dot(U[xi], V[xi], M[xi])
            for o in range(Co):
                _output_transform(M, o, L, at, b[o], Z, Y)
                _store_output(Y, n0, m, o, tw1, out)


@njit(cache=True, parallel=True, fastmath=_FM)
def _wino_backward(dout, x, U, pt, pl, th, tw1, nc, need_dx, need_dw, dx, dUpart, dbpart):
    """dx (if need_dx), per-slot partial dU (16, C_out, C) (if need_dw) and db by chunks of ≤ nc samples.

    dout (N, C_out, H_out, W_out); U (16, C_out, C); dUpart (S, 16, C_out, C); dbpart (S, C_out)
    float64. x may be a (1, C, H, W) stand-in when need_dw is False, dx when need_dx is False.
    """
    N, Co = dout.shape[0], dout.shape[1]
    C = U.shape[2]
    Tw = th * tw1
    nslots = dbpart.shape[0]
    bt = _BT_SGN.astype(dout.dtype)
    bb = _B_SGN.astype(dout.dtype)
    aa = _A_SGN.astype(dout.dtype)
    size = ((th + 1) * tw1 + 1) * nc
    for slot in prange(nslots):
        Db = np.empty(4 * nc * Tw, dtype=dout.dtype)
        Xb = np.empty(4 * size, dtype=dout.dtype)
        Gb = np.empty(4 * size, dtype=dout.dtype)
        Q = np.empty((4, nc * Tw), dtype=dout.dtype)
        Vb = np.empty(16 * C * nc * Tw, dtype=dout.dtype)
        Mb = np.empty(16 * Co * nc * Tw, dtype=dout.dtype)
        tmp = np.empty((Co, C), dtype=dout.dtype)
        for o in range(Co):
            dbpart[slot, o] = 0
        if need_dw:
            dUpart[slot] = 0
        nch = _slot_chunk(slot, nslots, N, nc, 0)[2]
        for k in range(nch):
            n0, m, _ = _slot_chunk(slot, nslots, N, nc, k)
            L = m * Tw
            sz = ((th + 1) * tw1 + 1) * m
            D = Db[:4 * L].reshape((4, L))
            D[:] = 0                                       # junk tiles and tiles past H_out, W_out stay 0
            V = Vb[:16 * C * L].reshape((16, C, L))
            dM = Mb[:16 * Co * L].reshape((16, Co, L))
            for o in range(Co):
                s = 0.0
                for n in range(m):
                    plane = dout[n0 + n, o].reshape(dout.shape[2] * dout.shape[3])
                    for u in range(plane.shape[0]):
                        s += plane[u]
                dbpart[slot, o] += s
                _fill_dout(dout, n0, m, o, tw1, D)
                _dout_transform(D, L, aa, dM, o)
            if need_dw:
                X = Xb[:4 * sz].reshape((4, sz))
                X[:] = 0
                for c in range(C):
                    _fill_planes(x, n0, m, c, pt, pl, tw1, X)
                    _input_transform(X, m, tw1, L, bt, V, c)
                for xi in range(16):
                    dot_nt(dM[xi], V[xi], tmp)                 # small output, long rows: 2× BLAS here
                    _add_into(dUpart[slot, xi], tmp)
            if need_dx:
                Gx = Gb[:4 * sz].reshape((4, sz))
                dV = V                                     # V is no longer needed: reuse its memory
                for xi in range(16):
                    np.dot(U[xi].T, dM[xi], dV[xi])
                for c in range(C):
                    _grad_input_transform(dV, c, m, tw1, L, bb, Q, Gx)
                    _store_dx(Gx, n0, m, c, pt, pl, tw1, dx)


# ========================================================================== Python drivers
def applies(w_shape, stride, dilation, groups) -> bool:
    """Whether the Winograd kernels handle, and pay off for, this convolution.

    3×3 kernels, stride (1, 1), dilation (1, 1), one group, and enough channels: C_in·C_out ≥
    MIN_PAIRS, and C_in ≥ 16, or C_in ≥ 8 with C_out ≤ 32. The forward GEMMs have inner length C_in
    and the dx GEMMs C_in rows (im2col's GEMM has inner length 9·C_in): with fewer input channels
    im2col is faster, and with few channel pairs the "direct" loops of conv_numba are (measured,
    float32 and float64, 2 threads).
    """
    Co, Cg, kh, kw = (int(v) for v in w_shape)
    if (kh, kw) != (3, 3) or int(groups) != 1:
        return False
    if tuple(int(v) for v in stride) != (1, 1) or tuple(int(v) for v in dilation) != (1, 1):
        return False
    return Cg * Co >= MIN_PAIRS and (Cg >= 16 or (Cg >= 8 and Co <= 32))


def _tiles(H, W, padding):
    """(H_out, W_out, th, tw1) of a 3×3 stride-1 kernel: th = ⌈H_out/2⌉ tile rows of tw1 = ⌈W_out/2⌉ + 1."""
    pt, pb, pl, pr = (int(p) for p in padding)
    Ho, Wo = H + pt + pb - 2, W + pl + pr - 2
    if Ho < 1 or Wo < 1 or min(pt, pb, pl, pr) < 0:
        raise ValueError(f"winograd conv: 3x3 kernel does not fit the padded input (input {H}x{W}, "
                         f"padding {tuple(padding)})")
    return Ho, Wo, (Ho + 1) // 2, (Wo + 1) // 2 + 1


def _chunks(N, per_sample, dw_bytes=0):
    """(most samples per chunk, slots), from the shapes only.

    min(N, MAX_SLOTS) slots (fewer if their partial dU would pass PARTIAL_BYTES) own N/S samples each
    (±1: balanced, whatever the thread count), cut into chunks whose V and M take at most CHUNK_BYTES
    (one sample at least).
    """
    slots = max(1, min(N, MAX_SLOTS))
    if dw_bytes:
        slots = max(1, min(slots, PARTIAL_BYTES // dw_bytes))
    return max(1, min(CHUNK_BYTES // max(per_sample, 1), -(-N // slots))), slots


def _check(x, W, where):
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"winograd conv: {where} needs float32 or float64 arrays, got {x.dtype}")
    if x.ndim != 4 or W.ndim != 4 or W.shape[1:] != (x.shape[1], 3, 3):
        raise ValueError(f"winograd conv: {where} needs x (N, C, H, W) and W (C_out, C, 3, 3), "
                         f"got {x.shape} and {W.shape}")


def weight_transform(W):
    """U (16, C_out, C_in) with U[4i + j, o, c] = (G W[o, c] Gᵀ)[i, j]; W (C_out, C_in, 3, 3). In float64."""
    U = G @ np.asarray(W, dtype=np.float64) @ G.T                     # (C_out, C_in, 4, 4)
    return np.ascontiguousarray(U.transpose(2, 3, 0, 1)).reshape(16, W.shape[0], W.shape[1])


def winograd_forward(x, W, b, padding):
    """out = W ⋆ x + b for a 3×3, stride-1, dilation-1, one-group kernel.

    Parameters
    ----------
    x : (N, C_in, H, W), float32 or float64
    W : (C_out, C_in, 3, 3), cast to x's dtype
    b : (C_out,) or None
    padding : (pt, pb, pl, pr)

    Returns
    -------
    out : (N, C_out, H_out, W_out), H_out = H + pt + pb − 2, W_out = W + pl + pr − 2
    """
    x = np.ascontiguousarray(x)
    W = np.ascontiguousarray(W, dtype=x.dtype)
    _check(x, W, "winograd_forward")
    N, C, H, Wd = x.shape
    Co = W.shape[0]
    Ho, Wo, th, tw1 = _tiles(H, Wd, padding)
    bb = np.zeros(Co, dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    out = np.empty((N, Co, Ho, Wo), dtype=x.dtype)
    if N == 0:
        return out
    U = weight_transform(W).astype(x.dtype)
    nc, slots = _chunks(N, 16 * (C + Co) * th * tw1 * x.itemsize)
    with _one_blas_thread(), _serial_if_tiny(N * Co * C * 9 * Ho * Wo):
        _wino_forward(x, U, bb, int(padding[0]), int(padding[2]), th, tw1, nc, slots, out)
    return out


def winograd_backward(dout, x, W, padding, need_dx=True, need_dw=True):
    """Gradients of ⟨dout, W ⋆ x + b⟩ for a 3×3, stride-1, dilation-1, one-group kernel.

    Parameters
    ----------
    dout : (N, C_out, H_out, W_out), float32 or float64
    x : (N, C_in, H, W), cast to dout's dtype (only its shape is used when need_dw is False)
    W : (C_out, C_in, 3, 3)
    padding : (pt, pb, pl, pr)
    need_dx, need_dw : skip what is not wanted (returned as None).

    Returns
    -------
    dx : (N, C_in, H, W) or None
    dW : (C_out, C_in, 3, 3) or None
    db : (C_out,), summed in float64 in a fixed order and cast back
    """
    dout = np.ascontiguousarray(dout)
    dt = dout.dtype
    x = np.ascontiguousarray(x, dtype=dt) if need_dw else x          # without dW only x's shape is read
    W = np.ascontiguousarray(W, dtype=dt)
    _check(x, W, "winograd_backward")
    N, C, H, Wd = x.shape
    Co = W.shape[0]
    Ho, Wo, th, tw1 = _tiles(H, Wd, padding)
    if dout.shape != (N, Co, Ho, Wo):
        raise ValueError(f"winograd conv: dout has shape {dout.shape}, expected {(N, Co, Ho, Wo)}")
    dx = np.empty(x.shape, dtype=dt) if need_dx else None           # every entry is written
    if N == 0:
        return dx, (np.zeros(W.shape, dtype=dt) if need_dw else None), np.zeros(Co, dtype=dt)
    U = weight_transform(W).astype(dt)
    xk = x if need_dw else np.empty((1, C, H, Wd), dtype=dt)          # not read; only its geometry is
    per_sample = 16 * (C + Co) * th * tw1 * dt.itemsize
    nc, slots = _chunks(N, per_sample, 16 * Co * C * dt.itemsize if need_dw else 0)
    dUpart = np.empty((slots, 16, Co, C) if need_dw else (slots, 0, 0, 0), dtype=dt)
    dbpart = np.empty((slots, Co), dtype=np.float64)
    macs = N * Co * C * 9 * Ho * Wo * (int(bool(need_dx)) + int(bool(need_dw)))
    with _one_blas_thread(), _serial_if_tiny(macs):
        _wino_backward(dout, xk, U, int(padding[0]), int(padding[2]), th, tw1, nc, bool(need_dx), bool(need_dw),
                       dx if need_dx else np.empty((0, 0, 0, 0), dtype=dt), dUpart, dbpart)
    dW = None
    if need_dw:
        dU = _sum_in_order(dUpart).astype(np.float64).reshape(4, 4, Co, C).transpose(2, 3, 0, 1)
        dW = (G.T @ dU @ G).astype(dt)                                 # dg = Gᵀ dU G, (C_out, C_in, 3, 3)
    return dx, dW, _sum_in_order(dbpart).astype(dt)
