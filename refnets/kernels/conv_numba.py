"""Numba kernels for 2-D cross-correlation (NCHW), tested equal to :mod:`refnets.kernels.conv_reference`.

Same geometry and notation as the reference (read its module docstring): x (N, C_in, H, W),
W (C_out, C_in/G, kh, kw), stride (sh, sw), dilation (dh, dw), zero padding per side
(pt, pb, pl, pr), G groups, H_out = ⌊(H + pt + pb − dh·(kh−1) − 1)/sh⌋ + 1 (W_out alike),
L = H_out·W_out.

Two strategies, one result
--------------------------
``"gemm"`` — im2col / col2im in Numba, the products in BLAS (``np.dot`` inside the kernel). The
    batch is cut into chunks of n_c samples; a chunk is unfolded into cols (C_in·kh·kw, n_c·L), so
    each group's product is one GEMM (C_out/G × C_in/G·kh·kw) · (C_in/G·kh·kw × n_c·L) whose result
    is copied into NCHW with the bias. Backward per chunk: dout is copied to (C_out, n_c·L) (db
    summed on the way), dW += dout_g · cols_gᵀ, dcols = W_gᵀ · dout_g, and col2im adds dcols into
    dx. Channel-heavy layers spend almost all their time in BLAS.
``"direct"`` — plain loops, for few channels per group (e.g. Kohler et al.'s K_n parallel nets as
    128 groups of 1 -> 4 channels), where a GEMM with 4 rows wastes BLAS. Each (sample, group) item
    copies its C_in/G input planes into a zero-padded scratch plane (Hp × Wp). At stride 1 the
    output is computed on "wide" rows of Wp columns so that every kernel tap (i, j) is one long
    contiguous loop ``acc[p] += w · x̃_flat[p + i·dh·Wp + j·dw]`` over p < H_out·Wp − (kw−1)·dw
    (the columns W_out..Wp−1 of each wide row are junk and dropped; in the backward they are held
    at zero). Other strides use row loops.
:func:`choose_strategy` picks one by the channels per group; both are exact and tested equal.

Threads and determinism
-----------------------
Each call is one parallel region (``prange``) over a fixed number of *slots*; slot s owns the
consecutive sample chunks s·n_chunks/S … (s+1)·n_chunks/S − 1 (S and the chunks depend on the
shapes only, never on the number of threads). Outputs and dx of different samples are written by
one slot each; the weight and bias gradients are summed per slot in sample order and the slots'
partial sums are then added in slot order. So results are bit-identical from run to run and for
any thread count. Keeping BLAS inside the Numba threads (rather than alternating Numba's thread
pool with BLAS's own) avoids two pools of spinning threads fighting over the cores. Dot products
inside a kernel use ``fastmath`` reassociation (vectorised, in an order fixed at compile time);
no NaN/inf assumptions are made.

Inner loops index 1-D slices with the loop variable only (``a = row[lo:hi]; a[u]``): an index such
as ``row[u·sw + off]`` that LLVM cannot prove non-negative keeps Numba's negative-index
wraparound test in the loop and blocks vectorisation (2–3× slower).
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

import numpy as np
from numba import njit, prange

from .conv_reference import conv_output_size
from .threads import serial_numba

# Bytes of one chunk's cols buffer in the "gemm" strategy: big enough for efficient GEMMs, small
# enough to stay in cache next to the other slot's.
CHUNK_BYTES = 2 << 20
# Most parallel slots per call (and so partial weight gradients summed in order).
MAX_SLOTS = 16
# Calls with fewer multiply-adds run on one thread: starting a parallel region costs more (tens of
# microseconds on a quiet machine, milliseconds on a busy one) than such a call's work.
SERIAL_MAX_MACS = 1 << 20
# Bytes of one slot's block of per-sample weight gradients in conv2d_gram_weight.
GRAM_BLOCK_BYTES = 4 << 20
# Bytes allowed for the slots' partial weight gradients; fewer slots beyond that.
PARTIAL_BYTES = 64 << 20
# "direct" when a group has at most this many input·output channel pairs (see choose_strategy).
DIRECT_MAX_PAIRS = 16

_FM = {"reassoc", "contract"}


# ---------------------------------------------------------------- BLAS inside Numba's threads
_BLAS_THREADS = None   # [(get_num_threads, set_num_threads)] of the BLAS that Numba's np.dot calls


def _blas_thread_controls():
    """Thread controls of SciPy's OpenBLAS (Numba's ``np.dot`` calls SciPy's BLAS), found once.

    Linux only (read from /proc/self/maps); elsewhere, or with another BLAS, the list is empty
    and the kernels run with the BLAS's own threading.
    """
    global _BLAS_THREADS
    if _BLAS_THREADS is None:
        found = []
        try:
            import scipy
            import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
            root = os.path.dirname(scipy.__file__)
            with open("/proc/self/maps") as f:
                paths = sorted({ln.split()[-1] for ln in f if "openblas" in os.path.basename(ln.split()[-1]).lower()})
            for path in paths:
                if not (path.startswith(root + os.sep) or path.startswith(root + ".libs" + os.sep)):
                    continue
                lib = ctypes.CDLL(path)
                for name in ("scipy_openblas", "scipy_openblas64_", "openblas", "openblas64_"):
                    prefix, suffix = (name[:-3], "64_") if name.endswith("64_") else (name, "")
                    get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                    put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        get.restype, get.argtypes = ctypes.c_int, []
                        put.restype, put.argtypes = None, [ctypes.c_int]
                        found.append((get, put))
                        break
        except (ImportError, OSError):
            pass
        _BLAS_THREADS = found
    return _BLAS_THREADS


@contextmanager
def _one_blas_thread():
    """Run BLAS single-threaded inside our parallel region, then restore its thread count.

    The "gemm" kernels call BLAS from every Numba thread at once; a multi-threaded OpenBLAS called
    that way oversubscribes the cores (and OpenBLAS's pthreads build warns it "may hang").
    """
    controls = _blas_thread_controls()
    saved = [get() for get, _ in controls]
    for _, put in controls:
        put(1)
    try:
        yield
    finally:
        for (_, put), n in zip(controls, saved):
            put(n)


@contextmanager
def _serial_if_tiny(macs):
    """One Numba thread (:func:`refnets.kernels.threads.serial_numba`) for calls of fewer than
    SERIAL_MAX_MACS multiply-adds; the same compiled kernels run, with bit-identical results."""
    if macs >= SERIAL_MAX_MACS:
        yield
        return
    with serial_numba():
        yield


@njit(cache=True, inline="always")
def _valid_range(off, stride, size, n_out):
    """The output positions p in [0, n_out) with 0 <= p·stride + off < size, as [lo, hi)."""
    lo = 0
    if off < 0:
        lo = (-off + stride - 1) // stride
    hi = n_out
    last = size - 1 - off
    if last < 0:
        hi = 0
    else:
        hi = min(n_out, last // stride + 1)
    if hi < lo:
        hi = lo
    return lo, hi


@njit(cache=True, inline="always")
def _fill_patch_row(src, yoff, xoff, sh, sw, oy0, oy1, ox0, ox1, Ho, Wo, dst):
    """dst[y·W_out + x] = src[y·sh + yoff, x·sw + xoff] on the valid box [oy0, oy1) × [ox0, ox1), 0 elsewhere.

    One row of the patch matrix (one channel c and kernel offset (i, j): yoff = i·dh − pt,
    xoff = j·dw − pl); the valid box comes from :func:`_valid_range`, so no index leaves src.
    """
    nv = ox1 - ox0
    ix = ox0 * sw + xoff                 # first input column read; >= 0 when nv > 0
    for oy in range(Ho):
        d = dst[oy * Wo:(oy + 1) * Wo]
        if oy < oy0 or oy >= oy1 or nv == 0:
            for u in range(Wo):
                d[u] = 0
            continue
        row = src[oy * sh + yoff]
        for u in range(ox0):
            d[u] = 0
        dv = d[ox0:ox1]
        if sw == 1:
            s1 = row[ix:ix + nv]
            for u in range(nv):
                dv[u] = s1[u]
        else:
            ss = row[ix:ix + (nv - 1) * sw + 1:sw]
            for u in range(nv):
                dv[u] = ss[u]
        for u in range(ox1, Wo):
            d[u] = 0


# ====================================================================== "gemm" strategy
@njit(cache=True)
def _im2col_serial(x, n0, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, cols):
    """cols[(c·kh + i)·kw + j, n, y·W_out + x] = x̃[n0 + n, c, y·sh + i·dh, x·sw + j·dw]; cols (K, m, L)."""
    H, W = x.shape[2], x.shape[3]
    K, m = cols.shape[0], cols.shape[1]
    khw = kh * kw
    for r in range(K):
        c = r // khw
        i = (r - c * khw) // kw
        j = r - c * khw - i * kw
        oy0, oy1 = _valid_range(i * dh - pt, sh, H, Ho)
        ox0, ox1 = _valid_range(j * dw - pl, sw, W, Wo)
        for n in range(m):
            _fill_patch_row(x[n0 + n, c], i * dh - pt, j * dw - pl, sh, sw, oy0, oy1, ox0, ox1, Ho, Wo, cols[r, n])


@njit(cache=True)
def _col2im_serial(dcols, n0, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, dx):
    """dx[n0 + n] = dcols (K, m, L) scattered back, every tap added where it was read (adjoint of im2col)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    m = dcols.shape[1]
    for n in range(m):
        for c in range(C):
            plane = dx[n0 + n, c]
            for y in range(H):
                prow = plane[y]
                for u in range(W):
                    prow[u] = 0
            for i in range(kh):
                oy0, oy1 = _valid_range(i * dh - pt, sh, H, Ho)
                for j in range(kw):
                    ox0, ox1 = _valid_range(j * dw - pl, sw, W, Wo)
                    nv = ox1 - ox0
                    if nv == 0:
                        continue
                    ix = ox0 * sw + j * dw - pl
                    src = dcols[(c * kh + i) * kw + j, n]
                    for oy in range(oy0, oy1):
                        row = plane[oy * sh + i * dh - pt]
                        s = src[oy * Wo + ox0:oy * Wo + ox1]
                        if sw == 1:
                            d1 = row[ix:ix + nv]
                            for u in range(nv):
                                d1[u] += s[u]
                        else:
                            ds = row[ix:ix + (nv - 1) * sw + 1:sw]
                            for u in range(nv):
                                ds[u] += s[u]


@njit(cache=True, parallel=True)
def _gemm_forward(x, W2, b, kh, kw, sh, sw, pt, pl, dh, dw, groups, Ho, Wo, nc, nslots, out):
    """out (N, C_out, L) = W ⋆ x + b by chunks of nc samples; W2 = W as (C_out, C_in/G·kh·kw)."""
    N, C = x.shape[0], x.shape[1]
    Co, Kg = W2.shape
    cog = Co // groups
    K = C * kh * kw
    L = Ho * Wo
    nchunks = (N + nc - 1) // nc
    for slot in prange(nslots):
        cols = np.empty((K, nc * L), dtype=x.dtype)
        res = np.empty((Co, nc * L), dtype=x.dtype)
        for ch in range(slot * nchunks // nslots, (slot + 1) * nchunks // nslots):
            n0 = ch * nc
            m = min(nc, N - n0)
            c2 = cols if m == nc else np.empty((K, m * L), dtype=x.dtype)
            r2 = res if m == nc else np.empty((Co, m * L), dtype=x.dtype)
            _im2col_serial(x, n0, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, c2.reshape(K, m, L))
            for g in range(groups):
                np.dot(W2[g * cog:(g + 1) * cog], c2[g * Kg:(g + 1) * Kg], r2[g * cog:(g + 1) * cog])
            for n in range(m):
                for o in range(Co):
                    bo = b[o]
                    src = r2[o, n * L:(n + 1) * L]
                    dst = out[n0 + n, o]
                    for l in range(L):
                        dst[l] = src[l] + bo


@njit(cache=True, parallel=True, fastmath=_FM)
def _gemm_backward(dout, x, W2, kh, kw, sh, sw, pt, pl, dh, dw, groups, Ho, Wo, nc, need_dx, need_dw,
                   dx, dWpart, dbpart):
    """dx (if need_dx), per-slot partial dW (if need_dw) and db by chunks of nc samples.

    dout (N, C_out, L); W2 (C_out, C_in/G·kh·kw); dWpart (S, C_out, C_in/G·kh·kw); dbpart (S, C_out)
    float64. x may be a (1, C_in, 1, 1) stand-in when need_dw is False, dx an empty stand-in when
    need_dx is False.
    """
    N, Co = dout.shape[0], dout.shape[1]
    Kg = W2.shape[1]
    C = W2.shape[1] // (kh * kw) * groups
    cog = Co // groups
    K = C * kh * kw
    L = Ho * Wo
    nslots = dbpart.shape[0]
    nchunks = (N + nc - 1) // nc
    for slot in prange(nslots):
        dT = np.empty((Co, nc * L), dtype=dout.dtype)
        cols = np.empty((K, nc * L), dtype=dout.dtype)
        tmp = np.empty((cog, Kg), dtype=dout.dtype)
        for o in range(Co):
            dbpart[slot, o] = 0
        if need_dw:
            dWs = dWpart[slot]
            for o in range(Co):
                for k in range(Kg):
                    dWs[o, k] = 0
        for ch in range(slot * nchunks // nslots, (slot + 1) * nchunks // nslots):
            n0 = ch * nc
            m = min(nc, N - n0)
            d2 = dT if m == nc else np.empty((Co, m * L), dtype=dout.dtype)
            c2 = cols if m == nc else np.empty((K, m * L), dtype=dout.dtype)
            for o in range(Co):
                s = 0.0
                for n in range(m):
                    src = dout[n0 + n, o]
                    dst = d2[o, n * L:(n + 1) * L]
                    for l in range(L):
                        v = src[l]
                        dst[l] = v
                        s += v
                dbpart[slot, o] += s
            if need_dw:
                _im2col_serial(x, n0, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, c2.reshape(K, m, L))
                for g in range(groups):
                    np.dot(d2[g * cog:(g + 1) * cog], c2[g * Kg:(g + 1) * Kg].T, tmp)
                    part = dWpart[slot, g * cog:(g + 1) * cog]
                    for o in range(cog):
                        pr = part[o]
                        tr = tmp[o]
                        for k in range(Kg):
                            pr[k] += tr[k]
            if need_dx:
                for g in range(groups):
                    np.dot(W2[g * cog:(g + 1) * cog].T, d2[g * cog:(g + 1) * cog], c2[g * Kg:(g + 1) * Kg])
                _col2im_serial(c2.reshape(K, m, L), n0, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, dx)


# ==================================================================== "direct" strategy
@njit(cache=True, parallel=True, fastmath=_FM)
def _sum_bias(dout, db):
    """db[o] = Σ_{n, l} dout[n, o, l], one channel per thread, samples in order; dout (N, C_out, L)."""
    N, Co, L = dout.shape
    for o in prange(Co):
        s = 0.0
        for n in range(N):
            src = dout[n, o]
            for l in range(L):
                s += src[l]
        db[o] = s


# ==================================================================== "direct" strategy kernels
@njit(cache=True)
def _copy_in(x, n, c0, Cg, pt, pl, Wp, P, xf):
    """Plane c of xf (length P = Hp·Wp, rows of Wp) gets x[n, c0 + c] at offset (pt, pl); border untouched."""
    H, W = x.shape[2], x.shape[3]
    for c in range(Cg):
        for y in range(H):
            src = x[n, c0 + c, y]
            base = c * P + (pt + y) * Wp + pl
            dst = xf[base:base + W]
            for u in range(W):
                dst[u] = src[u]


@njit(cache=True, parallel=True, fastmath=_FM)
def _direct_forward(x, W, b, sh, sw, pt, pl, dh, dw, groups, nblocks, out):
    """out = W ⋆ x + b by loops over (sample, group) items, split into ``nblocks`` parallel blocks."""
    N, C, H, Wd = x.shape
    Co, Cg, kh, kw = W.shape
    Ho, Wo = out.shape[2], out.shape[3]
    cog = Co // groups
    Hp = max(H + pt, (Ho - 1) * sh + (kh - 1) * dh + 1)
    Wp = max(Wd + pl, (Wo - 1) * sw + (kw - 1) * dw + 1)
    P = Hp * Wp
    wide = sh == 1 and sw == 1
    Lw = Ho * Wp - (kw - 1) * dw       # length of the wide-row loop at stride 1
    rs = Wp if wide else Wo            # row stride of the accumulator
    items = N * groups
    for blk in prange(nblocks):
        xf = np.zeros(Cg * P, dtype=x.dtype)
        acc = np.empty(Ho * rs, dtype=x.dtype)
        for t in range(blk * items // nblocks, (blk + 1) * items // nblocks):
            n = t // groups
            g = t - n * groups
            _copy_in(x, n, g * Cg, Cg, pt, pl, Wp, P, xf)
            for ol in range(cog):
                o = g * cog + ol
                for p in range(Ho * rs):
                    acc[p] = 0
                for c in range(Cg):
                    for i in range(kh):
                        for j in range(kw):
                            w = W[o, c, i, j]
                            if wide:
                                off = c * P + i * dh * Wp + j * dw
                                sw_ = xf[off:off + Lw]
                                aw = acc[:Lw]
                                for p in range(Lw):
                                    aw[p] += w * sw_[p]
                            else:
                                for y in range(Ho):
                                    off = c * P + (y * sh + i * dh) * Wp + j * dw
                                    ss = xf[off:off + (Wo - 1) * sw + 1:sw]
                                    ar = acc[y * Wo:(y + 1) * Wo]
                                    for u in range(Wo):
                                        ar[u] += w * ss[u]
                bo = b[o]
                for y in range(Ho):
                    a = acc[y * rs:y * rs + Wo]
                    orow = out[n, o, y]
                    for u in range(Wo):
                        orow[u] = a[u] + bo


@njit(cache=True, parallel=True, fastmath=_FM)
def _direct_backward(dout, x, W, sh, sw, pt, pl, dh, dw, groups, need_dx, need_dw, dx, dWpart):
    """dx (if need_dx) and the per-chunk partial dW (if need_dw) by loops over (sample, group).

    dWpart has shape (n_chunks, C_out, C_in/G, kh, kw); chunk k covers the samples
    [k·N/n_chunks, (k+1)·N/n_chunks) in order, and the caller adds the chunks in order. x may be
    a (1, 1, H, W) stand-in when need_dw is False, dx an empty stand-in when need_dx is False.
    """
    N, Co, Ho, Wo = dout.shape
    Cg, kh, kw = W.shape[1], W.shape[2], W.shape[3]
    H, Wd = x.shape[2], x.shape[3]
    cog = Co // groups
    nchunks = dWpart.shape[0]
    Hp = max(H + pt, (Ho - 1) * sh + (kh - 1) * dh + 1)
    Wp = max(Wd + pl, (Wo - 1) * sw + (kw - 1) * dw + 1)
    P = Hp * Wp
    wide = sh == 1 and sw == 1
    Lw = Ho * Wp - (kw - 1) * dw
    HWp = Ho * Wp
    for k in prange(nchunks):
        xf = np.zeros(Cg * P, dtype=x.dtype)
        dxf = np.empty(Cg * P, dtype=x.dtype)
        dwd = np.zeros(cog * HWp, dtype=x.dtype)     # dout on wide rows; the junk columns stay 0
        dWk = dWpart[k]
        for o in range(dWk.shape[0]):
            for c in range(Cg):
                for i in range(kh):
                    for j in range(kw):
                        dWk[o, c, i, j] = 0
        for n in range(k * N // nchunks, (k + 1) * N // nchunks):
            for g in range(groups):
                if need_dw:
                    _copy_in(x, n, g * Cg, Cg, pt, pl, Wp, P, xf)
                if need_dx:
                    for p in range(Cg * P):
                        dxf[p] = 0
                if wide:
                    for ol in range(cog):
                        for y in range(Ho):
                            src = dout[n, g * cog + ol, y]
                            dst = dwd[ol * HWp + y * Wp:ol * HWp + y * Wp + Wo]
                            for u in range(Wo):
                                dst[u] = src[u]
                for ol in range(cog):
                    o = g * cog + ol
                    for c in range(Cg):
                        for i in range(kh):
                            for j in range(kw):
                                w = W[o, c, i, j]
                                if wide:
                                    off = c * P + i * dh * Wp + j * dw
                                    d = dwd[ol * HWp:ol * HWp + Lw]
                                    if need_dw:
                                        xs = xf[off:off + Lw]
                                        s = 0.0
                                        for p in range(Lw):
                                            s += d[p] * xs[p]
                                        dWk[o, c, i, j] += s
                                    if need_dx:
                                        dst = dxf[off:off + Lw]
                                        for p in range(Lw):
                                            dst[p] += w * d[p]
                                else:
                                    s = 0.0
                                    for y in range(Ho):
                                        drow = dout[n, o, y]
                                        off = c * P + (y * sh + i * dh) * Wp + j * dw
                                        if need_dw:
                                            xss = xf[off:off + (Wo - 1) * sw + 1:sw]
                                            for u in range(Wo):
                                                s += drow[u] * xss[u]
                                        if need_dx:
                                            dss = dxf[off:off + (Wo - 1) * sw + 1:sw]
                                            for u in range(Wo):
                                                dss[u] += w * drow[u]
                                    if need_dw:
                                        dWk[o, c, i, j] += s
                if need_dx:
                    for c in range(Cg):
                        for y in range(H):
                            base = c * P + (pt + y) * Wp + pl
                            src = dxf[base:base + Wd]
                            dst = dx[n, g * Cg + c, y]
                            for u in range(Wd):
                                dst[u] = src[u]


# ========================================================================== Python drivers
def _geometry(x_shape, w_shape, stride, padding, dilation):
    N, C, H, W = x_shape
    kh, kw = w_shape[2], w_shape[3]
    pt, pb, pl, pr = padding
    Ho = conv_output_size(H, kh, stride[0], pt, pb, dilation[0])
    Wo = conv_output_size(W, kw, stride[1], pl, pr, dilation[1])
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv kernel: dilated kernel does not fit the padded input "
                         f"(input {H}x{W}, padding {tuple(padding)}, kernel {kh}x{kw}, dilation {tuple(dilation)})")
    return Ho, Wo


def choose_strategy(c_in_per_group: int, c_out_per_group: int) -> str:
    """"direct" when a group has few channel pairs (C_in/G · C_out/G ≤ DIRECT_MAX_PAIRS), else "gemm".

    A group's GEMM has C_out/G rows and an inner length C_in/G·kh·kw: with a handful of channels
    BLAS runs far below its peak and the unfold costs more than the arithmetic, while direct loops
    read each (padded) input plane from L1 once per output channel and tap.
    """
    return "direct" if c_in_per_group * c_out_per_group <= DIRECT_MAX_PAIRS else "gemm"


def _strategy(strategy, w_shape, groups):
    if strategy is None or strategy == "auto":
        return choose_strategy(w_shape[1], w_shape[0] // groups)
    if strategy not in ("gemm", "direct"):
        raise ValueError(f"conv kernel: strategy must be 'auto', 'gemm' or 'direct', got {strategy!r}")
    return strategy


def _chunks(N, K, L, itemsize, dw_bytes=0):
    """(samples per chunk, slots) for the "gemm" strategy, from the shapes only.

    Chunks hold at most CHUNK_BYTES of cols, and there are at least min(N, 8) of them so that the
    slots keep every core busy; at most MAX_SLOTS slots, and no more partial weight gradients than
    PARTIAL_BYTES.
    """
    per_sample = max(1, K * L * itemsize)
    nchunks = max(-(-N * per_sample // CHUNK_BYTES), min(N, 8))
    nc = -(-N // nchunks)
    nchunks = -(-N // nc)
    slots = min(nchunks, MAX_SLOTS)
    if dw_bytes:
        slots = max(1, min(slots, PARTIAL_BYTES // dw_bytes))
    return nc, slots


def _ints(*vals):
    return tuple(int(v) for v in vals)


def _sum_in_order(parts):
    """parts[0] + parts[1] + … in that order (a fixed-order reduction of the slots' partial sums)."""
    total = parts[0].copy()
    for k in range(1, parts.shape[0]):
        total += parts[k]
    return total


def im2col(x, kh, kw, stride, padding, dilation):
    """Patch matrix of all samples: (C·kh·kw, N, H_out·W_out), row (c·kh + i)·kw + j.

    cols[r, n, y·W_out + x] = x̃[n, c, y·sh + i·dh, x·sw + j·dw] (x̃ zero-padded). Same values as
    :func:`refnets.kernels.conv_reference.im2col`, axes ordered for GEMMs.
    """
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    Ho, Wo = _geometry(x.shape, (0, 0, kh, kw), stride, padding, dilation)
    cols = np.empty((C * kh * kw, N, Ho * Wo), dtype=x.dtype)
    sh, sw = _ints(*stride)
    dh, dw = _ints(*dilation)
    _im2col_serial(x, 0, *_ints(kh, kw, sh, sw, padding[0], padding[2], dh, dw, Ho, Wo), cols)
    return cols



# ================================================================ NTK share of the weights
@njit(cache=True)
def _im2col_rows(x, n, r0, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, dst):
    """dst[k, y·W_out + x] = im2col row r0 + k of sample n (as :func:`_im2col_serial`); dst (kb, L)."""
    H, W = x.shape[2], x.shape[3]
    khw = kh * kw
    for k in range(dst.shape[0]):
        r = r0 + k
        c = r // khw
        i = (r - c * khw) // kw
        j = r - c * khw - i * kw
        oy0, oy1 = _valid_range(i * dh - pt, sh, H, Ho)
        ox0, ox1 = _valid_range(j * dw - pl, sw, W, Wo)
        _fill_patch_row(x[n, c], i * dh - pt, j * dw - pl, sh, sw, oy0, oy1, ox0, ox1, Ho, Wo, dst[k])


@njit(cache=True, parallel=True)
def _gram_weight(x, D4, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, nkb, kb, nslots, parts):
    """parts[s] = Σ over slot s's (group g, block b of kb patch rows) items of J Jᵀ, with J (N, C_out/G·kb)
    the per-sample weight gradients of that block: J[n, (o, k)] = Σ_l D4[n, g, o, l] · X_n[g·K_g + b·kb + k, l]
    (X_n the im2col patches of sample n, unfolded one block at a time)."""
    N = x.shape[0]
    G, cog, L = D4.shape[1], D4.shape[2], D4.shape[3]
    Kg = nkb * kb
    nitems = G * nkb
    for s in prange(nslots):
        acc = parts[s]
        J = np.empty((N, cog, kb), dtype=D4.dtype)
        J2 = J.reshape(N, cog * kb)
        Xb = np.empty((kb, L), dtype=D4.dtype)
        for it in range(s * nitems // nslots, (s + 1) * nitems // nslots):
            g = it // nkb
            r0 = g * Kg + (it - g * nkb) * kb
            for n in range(N):
                _im2col_rows(x, n, r0, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, Xb)
                J[n] = np.dot(D4[n, g], Xb.T)
            acc += np.dot(J2, J2.T)

def conv2d_gram_weight(dout, x, w_shape, stride, padding, dilation, groups):
    """G_ij = Σ_g ⟨Δ_{i,g} X_{i,g}ᵀ, Δ_{j,g} X_{j,g}ᵀ⟩ (N, N): the Gram of the per-sample weight gradients.

    Δ_i = dout[i] (C_out, L), X_i the im2col patches of sample i (C_in·kh·kw, L). Work items are
    blocks of kb patch rows of one group (kb from the shapes: the per-sample gradients of a block
    take about GRAM_BLOCK_BYTES): the block is unfolded per sample, N GEMMs (C_out/G × L)·(L × kb)
    give J (N, C_out/G·kb), and J Jᵀ is added. Neither the n×P Jacobian nor the whole patch matrix
    is ever formed. Each slot sums its items in order and the slots are added in slot order, so the
    result does not depend on the number of threads; BLAS runs single-threaded inside the slots.
    """
    dout = np.ascontiguousarray(dout)
    x = np.ascontiguousarray(x, dtype=dout.dtype)
    N = x.shape[0]
    Co, Cg, kh, kw = w_shape
    G = int(groups)
    Ho, Wo = _geometry(x.shape, w_shape, stride, padding, dilation)
    L = Ho * Wo
    cog, Kg = Co // G, Cg * kh * kw
    target = max(1, GRAM_BLOCK_BYTES // max(1, N * cog * dout.itemsize))
    kb = max(d for d in range(1, min(Kg, target) + 1) if Kg % d == 0)
    nkb = Kg // kb
    nslots = max(1, min(G * nkb, MAX_SLOTS, PARTIAL_BYTES // max(1, N * N * dout.itemsize)))
    parts = np.zeros((nslots, N, N), dtype=dout.dtype)
    sh, sw = _ints(*stride)
    dh, dw = _ints(*dilation)
    with _one_blas_thread(), _serial_if_tiny(N * Co * Kg * L + N * N * Co * Kg):
        _gram_weight(x, dout.reshape(N, G, cog, L), *_ints(kh, kw, sh, sw, padding[0], padding[2], dh, dw, Ho, Wo,
                                                           nkb, kb, nslots), parts)
    return _sum_in_order(parts)


def conv2d_forward(x, W, b, stride, padding, dilation, groups, strategy=None):
    """out = W ⋆ x + b.

    Parameters
    ----------
    x : (N, C_in, H, W), float32 or float64
    W : (C_out, C_in/G, kh, kw), same dtype
    b : (C_out,) or None
    stride, dilation : pairs; padding : (pt, pb, pl, pr); groups : G.
    strategy : None/"auto", "gemm" or "direct".

    Returns
    -------
    out : (N, C_out, H_out, W_out)
    """
    x = np.ascontiguousarray(x)
    W = np.ascontiguousarray(W, dtype=x.dtype)
    N, C, H, Wd = x.shape
    Co, Cg, kh, kw = W.shape
    G = int(groups)
    Ho, Wo = _geometry(x.shape, W.shape, stride, padding, dilation)
    bb = np.zeros(Co, dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    sh, sw = _ints(*stride)
    dh, dw = _ints(*dilation)
    pt, pb, pl, pr = _ints(*padding)
    out = np.empty((N, Co, Ho, Wo), dtype=x.dtype)
    macs = N * Co * Cg * kh * kw * Ho * Wo
    if _strategy(strategy, W.shape, G) == "direct":
        with _serial_if_tiny(macs):
            _direct_forward(x, W, bb, sh, sw, pt, pl, dh, dw, G, min(N * G, 8 * MAX_SLOTS), out)
        return out
    nc, slots = _chunks(N, C * kh * kw, Ho * Wo, x.itemsize)
    with _one_blas_thread(), _serial_if_tiny(macs):
        _gemm_forward(x, W.reshape(Co, Cg * kh * kw), bb, kh, kw, sh, sw, pt, pl, dh, dw, G, Ho, Wo, nc, slots,
                      out.reshape(N, Co, Ho * Wo))
    return out


def conv2d_backward(dout, x, W, stride, padding, dilation, groups, need_dx=True, need_dw=True, strategy=None):
    """Gradients of ⟨dout, W ⋆ x + b⟩, sharing the work between them.

    Parameters
    ----------
    dout : (N, C_out, H_out, W_out)
    x : (N, C_in, H, W)
    W : (C_out, C_in/G, kh, kw)
    need_dx, need_dw : skip what is not wanted (returned as None).

    Returns
    -------
    dx : (N, C_in, H, W) or None
    dW : (C_out, C_in/G, kh, kw) or None
    db : (C_out,)
    """
    dout = np.ascontiguousarray(dout)
    x = np.ascontiguousarray(x, dtype=dout.dtype)
    return _backward(dout, x, x.shape, W, stride, padding, dilation, groups, need_dx, need_dw, strategy)


def _backward(dout, x, x_shape, W, stride, padding, dilation, groups, need_dx, need_dw, strategy):
    dt = dout.dtype
    W = np.ascontiguousarray(W, dtype=dt)
    N, C, H, Wd = x_shape
    Co, Cg, kh, kw = W.shape
    G = int(groups)
    Ho, Wo = _geometry(x_shape, W.shape, stride, padding, dilation)
    if dout.shape != (N, Co, Ho, Wo):
        raise ValueError(f"conv kernel: dout has shape {dout.shape}, expected {(N, Co, Ho, Wo)}")
    sh, sw = _ints(*stride)
    dh, dw = _ints(*dilation)
    pt, pb, pl, pr = _ints(*padding)
    dx = np.empty(x_shape, dtype=dt) if need_dx else np.empty((0, 0, 0, 0), dtype=dt)
    if not need_dw:
        x = np.empty((1, C, H, Wd), dtype=dt)            # not read; only its geometry is
    macs = N * Co * Cg * kh * kw * Ho * Wo * (int(bool(need_dx)) + int(bool(need_dw)))
    if _strategy(strategy, W.shape, G) == "direct":
        db = np.empty(Co, dtype=np.float64)
        slots = min(N, MAX_SLOTS)
        dWpart = np.empty((slots,) + W.shape if need_dw else (slots, 0, 0, 0, 0), dtype=dt)
        with _serial_if_tiny(macs):
            _sum_bias(dout.reshape(N, Co, Ho * Wo), db)
            _direct_backward(dout, x, W, sh, sw, pt, pl, dh, dw, G, bool(need_dx), bool(need_dw), dx, dWpart)
        dW = _sum_in_order(dWpart) if need_dw else None
    else:
        Kg = Cg * kh * kw
        nc, slots = _chunks(N, C * kh * kw, Ho * Wo, dt.itemsize, Co * Kg * dt.itemsize if need_dw else 0)
        dWpart = np.empty((slots, Co, Kg) if need_dw else (slots, 0, 0), dtype=dt)
        dbpart = np.empty((slots, Co), dtype=np.float64)
        with _one_blas_thread(), _serial_if_tiny(macs):
            _gemm_backward(dout.reshape(N, Co, Ho * Wo), x, W.reshape(Co, Kg), kh, kw, sh, sw, pt, pl, dh, dw, G,
                           Ho, Wo, nc, bool(need_dx), bool(need_dw), dx, dWpart, dbpart)
        dW = _sum_in_order(dWpart).reshape(W.shape) if need_dw else None
        db = _sum_in_order(dbpart)
    return (dx if need_dx else None), dW, db.astype(dt)


def conv2d_grad_input(dout, W, x_shape, stride, padding, dilation, groups, strategy=None):
    """dx (N, C_in, H, W) of ⟨dout, W ⋆ x⟩; dout (N, C_out, H_out, W_out), W (C_out, C_in/G, kh, kw)."""
    dout = np.ascontiguousarray(dout)
    return _backward(dout, None, tuple(int(v) for v in x_shape), W, stride, padding, dilation, groups,
                     True, False, strategy)[0]


def conv2d_grad_weight(dout, x, w_shape, stride, padding, dilation, groups, strategy=None):
    """dW (C_out, C_in/G, kh, kw) of ⟨dout, W ⋆ x⟩; dout (N, C_out, H_out, W_out), x (N, C_in, H, W)."""
    dout = np.ascontiguousarray(dout)
    W = np.zeros(tuple(w_shape), dtype=dout.dtype)        # only its shape is used
    x = np.ascontiguousarray(x, dtype=dout.dtype)
    return _backward(dout, x, x.shape, W, stride, padding, dilation, groups, False, True, strategy)[1]


def conv2d_grad_bias(dout):
    """db (C_out,) = Σ_{n, y, x} dout[n, :, y, x], summed in float64 in a fixed order, cast back."""
    dout = np.ascontiguousarray(dout)
    N, Co = dout.shape[:2]
    db = np.empty(Co, dtype=np.float64)
    _sum_bias(dout.reshape(N, Co, -1), db)
    return db.astype(dout.dtype)
