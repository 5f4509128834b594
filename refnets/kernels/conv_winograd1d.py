"""Winograd F(2, 3) convolution in Numba: forward, dx and dW of 1×3, stride-1 kernels (Conv1d with q = 3).

The one-dimensional sibling of :mod:`refnets.kernels.conv_winograd`, for the wide Conv1d layers of
Du et al. (2019)'s convolutional ResNet (m = 256 channels, patch size q = 3). Same geometry and
notation as :mod:`refnets.kernels.conv_reference`: x (N, C, H, L_in), W (C_out, C, 1, 3), zero
padding (pt, pb, pl, pr), H_out = H + pt + pb, L_out = L_in + pl + pr − 2; groups = 1, dilation 1.
Every input row x[n, :, h, :] is an independent 1-D convolution (the kernel is one row high) whose
output is row pt + h; the pt + pb padded output rows hold the bias only. Tested equal to the
reference (1e-12 relative in float64).

Tiles and transforms
--------------------
Each output row is cut into T = ⌈L_out/2⌉ tiles of two outputs; tile t reads the four padded inputs
d = x̃[2t : 2t + 4] (neighbouring tiles overlap by two). For one (o, c) pair with taps g (3,), the
two outputs are y = Aᵀ [(G g) ⊙ (Bᵀ d)], with

         ⎡1  0 −1  0⎤         ⎡ 1    0    0 ⎤
    Bᵀ = ⎢0  1  1  0⎥,    G = ⎢1/2  1/2  1/2⎥,    Aᵀ = ⎡1  1  1  0⎤
         ⎢0 −1  1  0⎥         ⎢1/2 −1/2  1/2⎥          ⎣0  1 −1 −1⎦.
         ⎣0  1  0 −1⎦         ⎣ 0    0    1 ⎦

Summed over the input channels, with U = G g (4 per (o, c)) and V = Bᵀ d (4 per (c, tile)), each of
the 4 positions ξ of the transformed domain is a matrix product over all tiles of a chunk of rows:

    M[ξ] (C_out × T·m) = U[ξ] (C_out × C) · V[ξ] (C × T·m),       out tile = Aᵀ M + b:

4 multiply-adds per tile where direct convolution needs 6 (1.5× fewer), in GEMMs with inner length
C; the transforms are additions only.

Backward (chain rule through the same steps; dy the two dout values of a tile, 0 beyond L_out):

    dM = A dy                                       (4 per (o, tile))
    dU[ξ] (C_out × C) = dM[ξ] · V[ξ]ᵀ               summed over chunks; dW = Gᵀ dU
    dV[ξ] (C × T·m) = U[ξ]ᵀ · dM[ξ]
    dd = B dV                                       (4 per (c, tile)), added into the overlapping
                                                    inputs of the padded row, then cropped to dx

db = Σ dout over all outputs (the padded rows too).

Layout and threads
------------------
Rows r = n·H + h are shared out over min(N·H, MAX_SLOTS) slots (from the shapes only); a slot cuts
its rows into chunks of m rows whose V and M take at most CHUNK_BYTES, transforms them one padded row
at a time (in L1), and runs the four GEMMs with single-threaded BLAS. dU is summed per slot and the
slots in order, so the results do not depend on the number of threads.

Measured on Du's layer (N = 64, C = C_out = 256, L = 64, float64, 2 threads): the forward takes
11 ms against 16 ms for im2col + GEMM (:mod:`refnets.kernels.conv_numba`).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv_numba import MAX_SLOTS, _FM, _add_into, _one_blas_thread, _serial_if_tiny, _sum_bias, _sum_in_order
from .conv_winograd import CHUNK_BYTES, G, PARTIAL_BYTES

# From these channel counts on the kernels beat im2col + GEMM and the direct loops (forward + backward,
# N = 64, L = 64 and N = 32, L = 200, float64 and float32, 2 threads: 1.3–1.8× gemm from 16 → 16 to
# 256 → 256); below, the direct loops win (8 → 8, 32 → 8) or it is a toss-up (8 → 32).
MIN_C_IN = 16
MIN_C_OUT = 16


@njit(cache=True, inline="always")
def _fill_row(src, pl, row):
    """row ← the zero-padded input row: row[pl + i] = src[i], 0 elsewhere."""
    for i in range(row.shape[0]):
        row[i] = 0
    for i in range(src.shape[0]):
        row[pl + i] = src[i]


@njit(cache=True, inline="always")
def _input_tiles(row, T, V, c, s):
    """V[ξ, c, s + t] = (Bᵀ d)[ξ] with d = row[2t : 2t + 4], for the T tiles of one padded row."""
    v0, v1, v2, v3 = V[0, c, s:s + T], V[1, c, s:s + T], V[2, c, s:s + T], V[3, c, s:s + T]
    for t in range(T):
        d0, d1, d2, d3 = row[2 * t], row[2 * t + 1], row[2 * t + 2], row[2 * t + 3]
        v0[t] = d0 - d2
        v1[t] = d1 + d2
        v2[t] = d2 - d1
        v3[t] = d1 - d3


@njit(cache=True, inline="always")
def _row(r, H):
    n = r // H
    return n, r - n * H


@njit(cache=True, inline="always")
def _input_transform(x, c0, m, H, pl, T, row, V):
    """V (4, C, m·T) ← Bᵀ d for every tile of the m input rows c0 … c0 + m − 1, channel by channel."""
    for c in range(x.shape[1]):
        for j in range(m):
            n, h = _row(c0 + j, H)
            _fill_row(x[n, c, h], pl, row)
            _input_tiles(row, T, V, c, j * T)


@njit(cache=True, parallel=True, fastmath={"contract"})
def _w1_forward(x, U, b, pt, pl, T, nc, nslots, out):
    """out[n, :, pt + h] for every input row (n, h): chunks of nc rows per slot, 4 GEMMs per chunk."""
    N, C, H, _ = x.shape
    Co = U.shape[1]
    Lout = out.shape[3]
    R = N * H
    for slot in prange(nslots):
        r0, r1 = slot * R // nslots, (slot + 1) * R // nslots
        row = np.empty(2 * T + 2, dtype=x.dtype)
        Vbuf = np.empty(4 * C * nc * T, dtype=x.dtype)        # once per slot: no allocation per chunk
        Mbuf = np.empty(4 * Co * nc * T, dtype=x.dtype)
        for c0 in range(r0, r1, nc):
            m = min(nc, r1 - c0)
            V = Vbuf[:4 * C * m * T].reshape((4, C, m * T))    # contiguous for any m: V[ξ] feeds BLAS
            M = Mbuf[:4 * Co * m * T].reshape((4, Co, m * T))
            _input_transform(x, c0, m, H, pl, T, row, V)
            for xi in range(4):
                np.dot(U[xi], V[xi], M[xi])
            for j in range(m):
                n, h = _row(c0 + j, H)
                s = j * T
                for o in range(Co):
                    dst = out[n, o, pt + h]
                    m0, m1, m2, m3 = M[0, o, s:s + T], M[1, o, s:s + T], M[2, o, s:s + T], M[3, o, s:s + T]
                    bo = b[o]
                    for t in range(Lout // 2):
                        dst[2 * t] = m0[t] + m1[t] + m2[t] + bo
                        dst[2 * t + 1] = m1[t] - m2[t] - m3[t] + bo
                    if Lout % 2:                                 # the last tile's second output is past the row
                        t = Lout // 2
                        dst[2 * t] = m0[t] + m1[t] + m2[t] + bo


@njit(cache=True, parallel=True, fastmath=_FM)
def _w1_backward(dout, x, U, pt, pl, H, T, nc, need_dx, need_dw, dx, dUpart):
    """dx (if need_dx) and the per-slot partial dU (if need_dw); x may be a stand-in when not need_dw."""
    N, Co, _, Lout = dout.shape
    C = U.shape[2]
    R = N * H
    nslots = dUpart.shape[0]
    for slot in prange(nslots):
        r0, r1 = slot * R // nslots, (slot + 1) * R // nslots
        row = np.empty(2 * T + 2, dtype=dout.dtype)
        dy = np.zeros(2 * T, dtype=dout.dtype)
        tmp = np.empty((Co, C) if need_dw else (0, 0), dtype=dout.dtype)
        if need_dw:
            for xi in range(4):
                for o in range(Co):
                    for c in range(C):
                        dUpart[slot, xi, o, c] = 0
        dMbuf = np.empty(4 * Co * nc * T, dtype=dout.dtype)
        Vbuf = np.empty(4 * C * nc * T, dtype=dout.dtype)     # V, then dV
        for c0 in range(r0, r1, nc):
            m = min(nc, r1 - c0)
            dM = dMbuf[:4 * Co * m * T].reshape((4, Co, m * T))
            for j in range(m):
                n, h = _row(c0 + j, H)
                s = j * T
                for o in range(Co):
                    src = dout[n, o, pt + h]
                    for i in range(Lout):                    # dy ends in a 0 when L_out is odd: the
                        dy[i] = src[i]                       # last tile's second output is past the row
                    d0, d1, d2, d3 = dM[0, o, s:s + T], dM[1, o, s:s + T], dM[2, o, s:s + T], dM[3, o, s:s + T]
                    for t in range(T):
                        y0, y1 = dy[2 * t], dy[2 * t + 1]
                        d0[t] = y0
                        d1[t] = y0 + y1
                        d2[t] = y0 - y1
                        d3[t] = -y1
            if need_dw:
                V = Vbuf[:4 * C * m * T].reshape((4, C, m * T))
                _input_transform(x, c0, m, H, pl, T, row, V)
                for xi in range(4):
                    np.dot(dM[xi], V[xi].T, tmp)
                    _add_into(dUpart[slot, xi], tmp)
            if need_dx:
                dV = Vbuf[:4 * C * m * T].reshape((4, C, m * T))       # V is no longer needed
                for xi in range(4):
                    np.dot(U[xi].T, dM[xi], dV[xi])
                for c in range(C):
                    for j in range(m):
                        n, h = _row(c0 + j, H)
                        s = j * T
                        for i in range(row.shape[0]):
                            row[i] = 0
                        for t in range(T):
                            a0, a1, a2, a3 = dV[0, c, s + t], dV[1, c, s + t], dV[2, c, s + t], dV[3, c, s + t]
                            row[2 * t] += a0
                            row[2 * t + 1] += a1 - a2 + a3
                            row[2 * t + 2] += a1 + a2 - a0
                            row[2 * t + 3] -= a3
                        dst = dx[n, c, h]
                        for i in range(dst.shape[0]):
                            dst[i] = row[pl + i]


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
    """(H_out, L_out, T), checking the arrays' shapes."""
    if len(x_shape) != 4 or len(w_shape) != 4 or tuple(w_shape[1:]) != (x_shape[1], 1, 3):
        raise ValueError(f"winograd1d conv: {where} needs x (N, C, H, L) and W (C_out, C, 1, 3), "
                         f"got {tuple(x_shape)} and {tuple(w_shape)}")
    pt, pb, pl, pr = (int(p) for p in padding)
    Lout = x_shape[3] + pl + pr - 2
    if Lout < 1 or min(pt, pb, pl, pr) < 0:
        raise ValueError(f"winograd1d conv: a 1x3 kernel does not fit the padded input (length {x_shape[3]}, "
                         f"padding {tuple(padding)})")
    return x_shape[2] + pt + pb, Lout, (Lout + 1) // 2


def _chunks(R, per_row, dw_bytes=0):
    """(rows per chunk, slots) from the shapes only: min(R, MAX_SLOTS) slots (fewer if their partial
    dU would pass PARTIAL_BYTES), chunks whose transformed rows take at most CHUNK_BYTES."""
    slots = max(1, min(R, MAX_SLOTS))
    if dw_bytes:
        slots = max(1, min(slots, PARTIAL_BYTES // dw_bytes))
    return max(1, min(CHUNK_BYTES // max(per_row, 1), -(-R // slots))), slots


def weight_transform(W, dtype=np.float64):
    """U (4, C_out, C_in) with U[ξ, o, c] = (G W[o, c, 0])[ξ]; W (C_out, C_in, 1, 3).

    Written plane by plane into U (no (C_out, C_in, 4) temporaries: U is 4/3 the size of W)."""
    w = np.asarray(W)[:, :, 0, :]
    U = np.empty((4,) + w.shape[:2], dtype=dtype)
    U[0] = w[..., 0]
    U[3] = w[..., 2]
    np.add(w[..., 0], w[..., 2], out=U[1])
    U[2] = U[1]
    U[1] += w[..., 1]
    U[2] -= w[..., 1]
    U[1:3] *= 0.5                                                     # rows 1 and 2 of G: ½(g0 ± g1 + g2)
    return U


def winograd1d_forward(x, W, b, padding):
    """out = W ⋆ x + b for a 1×3, stride-1, dilation-1, one-group kernel.

    Parameters
    ----------
    x : (N, C_in, H, L_in), float32 or float64
    W : (C_out, C_in, 1, 3), cast to x's dtype
    b : (C_out,) or None
    padding : (pt, pb, pl, pr)

    Returns
    -------
    out : (N, C_out, H + pt + pb, L_in + pl + pr − 2)
    """
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"winograd1d conv: winograd1d_forward needs float32 or float64 arrays, got {x.dtype}")
    Ho, Lout, T = _geometry(x.shape, np.shape(W), padding, "winograd1d_forward")
    N, C, H, _ = x.shape
    Co = W.shape[0]
    pt = int(padding[0])
    bb = np.zeros(Co, dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    out = np.empty((N, Co, Ho, Lout), dtype=x.dtype)
    out[:, :, :pt] = bb[:, None, None]                  # padded rows: the bias only
    out[:, :, pt + H:] = bb[:, None, None]
    if N * H == 0:
        return out
    U = weight_transform(W, x.dtype)
    nc, slots = _chunks(N * H, 4 * (C + Co) * T * x.itemsize)
    with _one_blas_thread(), _serial_if_tiny(N * H * Co * C * 3 * Lout):
        _w1_forward(x, U, bb, pt, int(padding[2]), T, nc, slots, out)
    return out


def winograd1d_backward(dout, x, W, padding, need_dx=True, need_dw=True):
    """Gradients of ⟨dout, W ⋆ x + b⟩ for a 1×3, stride-1, dilation-1, one-group kernel.

    Parameters
    ----------
    dout : (N, C_out, H_out, L_out), float32 or float64
    x : (N, C_in, H, L_in), cast to dout's dtype (only its shape is used when need_dw is False)
    W : (C_out, C_in, 1, 3)
    padding : (pt, pb, pl, pr)
    need_dx, need_dw : skip what is not wanted (returned as None).

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
    Ho, Lout, T = _geometry(x.shape, np.shape(W), padding, "winograd1d_backward")
    N, C, H, _ = x.shape
    Co = W.shape[0]
    if dout.shape != (N, Co, Ho, Lout):
        raise ValueError(f"winograd1d conv: dout has shape {dout.shape}, expected {(N, Co, Ho, Lout)}")
    db = np.empty(Co, dtype=np.float64)
    _sum_bias(dout.reshape(N, Co, Ho * Lout), db)
    dx = np.empty(x.shape, dtype=dt) if need_dx else None           # every entry is written
    if N * H == 0 or not (need_dx or need_dw):
        return dx, (np.zeros(W.shape, dtype=dt) if need_dw else None), db.astype(dt)
    U = weight_transform(W, dt)
    xk = x if need_dw else np.empty((1, C, 1, 1), dtype=dt)           # not read; only its geometry is
    nc, slots = _chunks(N * H, 4 * (C + Co) * T * dt.itemsize, 4 * Co * C * dt.itemsize if need_dw else 0)
    dUpart = np.empty((slots, 4, Co, C) if need_dw else (slots, 0, 0, 0), dtype=dt)
    macs = N * H * Co * C * 3 * Lout * (int(bool(need_dx)) + int(bool(need_dw)))
    with _one_blas_thread(), _serial_if_tiny(macs):
        _w1_backward(dout, xk, U, int(padding[0]), int(padding[2]), H, T, nc, bool(need_dx), bool(need_dw),
                     dx if need_dx else np.empty((0, 0, 0, 0), dtype=dt), dUpart)
    dW = None
    if need_dw:
        dU = _sum_in_order(dUpart).astype(np.float64)                   # (4, C_out, C_in)
        dW = np.einsum("xk,xoc->ock", G, dU)[:, :, None, :].astype(dt)  # dg = Gᵀ dU
    return dx, dW, db.astype(dt)
