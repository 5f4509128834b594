"""Numba kernels for 2-D max pooling (NCHW) and the average over a set of positions, equal bit for
bit to :mod:`refnets.kernels.pool_reference`.

Same geometry and conventions as the reference (read its module docstring): −∞ padding (a padded
position never wins), the winner is the first maximum in row-major scan order of the window,
``argmax`` is the winner's flat index i·W + j in the H×W plane, backward scatter-adds.

Parallel over the N·C planes only, for large calls (small ones run on one thread, see
``PARALLEL_MIN_WORK``). Every output of a plane, and every gradient pixel of a plane, is written by
the one thread that owns the plane, in a fixed order, so the results do not depend on the number of
threads or their scheduling (the backward scatter is race-free and its sums run in the reference's
row-major order of (oh, ow)).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _maxpool2d_forward_plane(x, out, arg, p, kh, kw, sh, sw, ph, pw):
    H, W = x.shape[1], x.shape[2]
    OH, OW = out.shape[1], out.shape[2]
    for oh in range(OH):
        h0 = oh * sh - ph
        hs = max(h0, 0)
        he = min(h0 + kh, H)
        for ow in range(OW):
            w0 = ow * sw - pw
            ws = max(w0, 0)
            we = min(w0 + kw, W)
            # Padding is −∞ and never wins: scan only the real pixels; the first real pixel is
            # the winner when all of them are −∞.
            best = x[p, hs, ws]
            bi = hs * W + ws
            isnan = best != best
            for i in range(hs, he):
                if isnan:
                    break
                for j in range(ws, we):
                    v = x[p, i, j]
                    if v > best:  # strict: ties keep the earlier pixel
                        best = v
                        bi = i * W + j
                    elif v != v:  # a NaN wins and ends the scan (first NaN)
                        best = v
                        bi = i * W + j
                        isnan = True
                        break
            out[p, oh, ow] = best
            arg[p, oh, ow] = bi


@njit(cache=True)
def _maxpool2d_forward_serial(x, out, arg, kh, kw, sh, sw, ph, pw):
    for p in range(x.shape[0]):
        _maxpool2d_forward_plane(x, out, arg, p, kh, kw, sh, sw, ph, pw)


@njit(cache=True, parallel=True)
def _maxpool2d_forward_parallel(x, out, arg, kh, kw, sh, sw, ph, pw):
    for p in prange(x.shape[0]):
        _maxpool2d_forward_plane(x, out, arg, p, kh, kw, sh, sw, ph, pw)


@njit(cache=True)
def _maxpool2d_backward_plane(dout, arg, dx, p):
    # One plane, one thread, row-major (oh, ow): the reference's order of additions.
    for oh in range(dout.shape[1]):
        for ow in range(dout.shape[2]):
            dx[p, arg[p, oh, ow]] += dout[p, oh, ow]


@njit(cache=True)
def _maxpool2d_backward_serial(dout, arg, dx):
    for p in range(dout.shape[0]):
        _maxpool2d_backward_plane(dout, arg, dx, p)


@njit(cache=True, parallel=True)
def _maxpool2d_backward_parallel(dout, arg, dx):
    for p in prange(dout.shape[0]):
        _maxpool2d_backward_plane(dout, arg, dx, p)


# Below this many pixel reads a thread launch costs more than it saves (and much more on a
# loaded machine), so small calls run on one thread. Results are identical either way.
PARALLEL_MIN_WORK = 1 << 18


def maxpool2d_forward(x, kernel, stride, padding):
    """Max pooling with winner bookkeeping; same contract as
    :func:`refnets.kernels.pool_reference.maxpool2d_forward`.

    x : (N, C, H, W) float32/float64 -> out (N, C, OH, OW), argmax (N, C, OH, OW) int64.
    """
    N, C, H, W = x.shape
    kh, kw = (int(k) for k in kernel)
    sh, sw = (int(s) for s in stride)
    ph, pw = (int(q) for q in padding)
    OH = (H + 2 * ph - kh) // sh + 1
    OW = (W + 2 * pw - kw) // sw + 1
    planes = np.ascontiguousarray(x).reshape(N * C, H, W)
    out = np.empty((N * C, OH, OW), dtype=x.dtype)
    arg = np.empty((N * C, OH, OW), dtype=np.int64)
    parallel = N * C > 1 and N * C * OH * OW * kh * kw >= PARALLEL_MIN_WORK
    run = _maxpool2d_forward_parallel if parallel else _maxpool2d_forward_serial
    run(planes, out, arg, kh, kw, sh, sw, ph, pw)
    return out.reshape(N, C, OH, OW), arg.reshape(N, C, OH, OW)


def maxpool2d_backward(dout, argmax, input_hw):
    """Scatter-add of dout into the winners; same contract as
    :func:`refnets.kernels.pool_reference.maxpool2d_backward`.

    dout, argmax : (N, C, OH, OW) -> dx (N, C, H, W), dtype of dout.
    """
    N, C, OH, OW = dout.shape
    H, W = (int(v) for v in input_hw)
    d = np.ascontiguousarray(dout).reshape(N * C, OH, OW)
    a = np.ascontiguousarray(argmax, dtype=np.int64).reshape(N * C, OH, OW)
    dx = np.zeros((N * C, H * W), dtype=d.dtype)
    parallel = N * C > 1 and N * C * max(OH * OW, H * W) >= PARALLEL_MIN_WORK
    run = _maxpool2d_backward_parallel if parallel else _maxpool2d_backward_serial
    run(d, a, dx)
    return dx.reshape(N, C, H, W)


# ====================================================== global average over a set of positions
@njit(cache=True, parallel=True)
def _region_mean_rows(x, positions, nblocks, out):
    rows = x.shape[0]
    npos = positions.shape[0]
    for blk in prange(nblocks):
        for r in range(blk * rows // nblocks, (blk + 1) * rows // nblocks):
            row = x[r]
            s = 0.0                                    # float64, left to right, as the reference
            for k in range(npos):
                s += row[positions[k]]
            out[r] = s / npos


@njit(cache=True, parallel=True)
def _region_mean_backward_rows(dout, positions, nblocks, dx):
    rows, S = dx.shape
    npos = positions.shape[0]
    for blk in prange(nblocks):
        for r in range(blk * rows // nblocks, (blk + 1) * rows // nblocks):
            row = dx[r]
            for p in range(S):
                row[p] = 0
            g = dout[r] / npos
            for k in range(positions.shape[0]):
                row[positions[k]] = g


def _region_blocks(work):
    """Parallel blocks for a region-mean call of ``work`` element reads (1 below PARALLEL_MIN_WORK)."""
    return 1 if work < PARALLEL_MIN_WORK else 16


def region_mean_forward(x, positions):
    """out[r] = (1/|R|) Σ_{p ∈ R} x[r, p]; same contract as
    :func:`refnets.kernels.pool_reference.region_mean_forward`.

    x : (rows, S) float32/float64, positions : (|R|,) int flat indices -> out (rows,).
    One pass reading only the positions (no gathered copy); each row is summed by one thread.
    """
    x = np.ascontiguousarray(x)
    pos = np.ascontiguousarray(positions, dtype=np.int64)
    out = np.empty(x.shape[0], dtype=x.dtype)
    _region_mean_rows(x, pos, _region_blocks(x.shape[0] * pos.size), out)
    return out


def region_mean_backward(dout, positions, size, out=None):
    """dx[r, p] = dout[r] / |R| on the positions, 0 elsewhere; same contract as
    :func:`refnets.kernels.pool_reference.region_mean_backward`.

    dout : (rows,) -> dx (rows, size), written into ``out`` when given (every entry is set, so
    ``out`` may be uninitialised: one pass instead of a zero fill and a scatter).
    """
    dout = np.ascontiguousarray(dout)
    pos = np.ascontiguousarray(positions, dtype=np.int64)
    dx = np.empty((dout.shape[0], int(size)), dtype=dout.dtype) if out is None else out
    _region_mean_backward_rows(dout, pos, _region_blocks(dx.size), dx)
    return dx
