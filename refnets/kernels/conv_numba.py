"""Numba kernels for 2-D cross-correlation (NCHW), tested equal to :mod:`refnets.kernels.conv_reference`.

Same geometry and notation as the reference (read its module docstring): x (N, C_in, H, W),
W (C_out, C_in/G, kh, kw), stride (sh, sw), dilation (dh, dw), zero padding per side
(pt, pb, pl, pr), G groups, H_out = ⌊(H + pt + pb − dh·(kh−1) − 1)/sh⌋ + 1 (W_out alike),
L = H_out·W_out.

Three strategies, one result
----------------------------
``"gemm"`` — im2col / col2im in Numba, the products in BLAS (``np.dot`` inside the kernel), one
    sample at a time: its patches are unfolded into cols (C_in·kh·kw, L), small enough to stay in
    cache, and each group's product is one GEMM (C_out/G × C_in/G·kh·kw) · (C_in/G·kh·kw × L)
    written straight into the sample's NCHW output, the bias added in place. Backward per sample,
    reading dout where it lies (no copy): db sums, dW += dout_g · cols_gᵀ, dcols = W_gᵀ · dout_g,
    and col2im adds dcols into dx. Channel-heavy layers spend almost all their time in BLAS.
``"direct"`` — plain loops, for few channels per group (e.g. Kohler et al.'s K_n parallel nets as
    128 groups of 1 -> 4 channels), where a GEMM with 4 rows wastes BLAS. Each (sample, group) item
    copies its C_in/G input planes into a zero-padded scratch plane (Hp × Wp). At stride 1 the
    output is computed on "wide" rows of Wp columns so that every kernel tap (i, j) is one long
    contiguous loop ``acc[p] += w · x̃_flat[p + i·dh·Wp + j·dw]`` over p < H_out·Wp − (kw−1)·dw
    (the columns W_out..Wp−1 of each wide row are junk and dropped; in the backward they are held
    at zero). Three taps of a kernel row share one pass (one load and store of the accumulator per
    three multiply-adds; 1.25–1.3× on Kohler's layer 2). Other strides use row loops.
``"winograd"`` — Winograd F(2×2, 3×3) for 3×3 stride-1 kernels with enough channels, in
    :mod:`refnets.kernels.conv_winograd` (16 GEMMs over 4×4 transformed tiles, 2.25× fewer
    multiplications; its docstring has the algorithm and its accuracy).
``"winograd1d"`` — Winograd F(m, 3) for 1×3 stride-1 kernels (Conv1d, q = 3) with enough channels,
    in :mod:`refnets.kernels.conv_winograd1d` (m + 2 GEMMs over tiles of m outputs: 2× fewer
    multiplications with m = 4 in float64, 1.5× with m = 2 in float32).
:func:`choose_strategy` picks one by the kernel and the channels per group; all are exact up to
rounding and tested equal to the reference.

Threads and determinism
-----------------------
Each call is one parallel region (``prange``) over a fixed number of *slots*; slot s owns the
consecutive samples (or (sample, group) items) s·N/S … (s+1)·N/S − 1 (S depends on the shapes
only, never on the number of threads). Outputs and dx of different samples are written by
one slot each; the weight and bias gradients are summed per slot in sample order and the slots'
partial sums are then added in slot order. So results are bit-identical from run to run and for
any thread count. Keeping BLAS inside the Numba threads (rather than alternating Numba's thread
pool with BLAS's own) avoids two pools of spinning threads fighting over the cores. Dot products
inside a kernel use ``fastmath`` reassociation (vectorised, in an order fixed at compile time);
no NaN/inf assumptions are made.

Inner loops index 1-D slices with the loop variable only (``a = row[lo:hi]; a[u]``): an index such
as ``row[u·sw + off]`` that LLVM cannot prove non-negative keeps Numba's negative-index
wraparound test in the loop and blocks vectorisation (2–3× slower). Where the rows are short
(im2col/col2im rows of W_out elements) a slice view per row costs more than the copy itself, so
those loops index the flat plane with an unsigned index (``flat[np.uint64(base + u·sw)]``).
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

import numpy as np
from numba import njit, prange

from .conv_reference import conv_output_size
from .gemm_nt import dot_nt
from .threads import serial_numba

# Most parallel slots per call (and so partial weight gradients summed in order).
MAX_SLOTS = 16
# Calls with fewer multiply-adds run on one thread: starting a parallel region costs more (tens of
# microseconds on a quiet machine, milliseconds on a busy one) than such a call's work.
SERIAL_MAX_MACS = 1 << 20
# Bytes of one slot's block of per-sample weight gradients in conv2d_gram_weight.
GRAM_BLOCK_BYTES = 4 << 20
# Fewest samples per row block of the symmetric J Jᵀ (up to 4 blocks; only the upper ones are
# computed): smaller blocks would make inefficient GEMMs.
GRAM_ROW_BLOCK = 16
# Bytes allowed for the slots' partial weight gradients; fewer slots beyond that.
PARTIAL_BYTES = 64 << 20
# The kernels' strategies (see choose_strategy).
STRATEGIES = ("gemm", "direct", "winograd", "winograd1d")
# Stride 1: "direct" when a group has at most DIRECT_MAX_PAIRS input·output channel pairs, or up to
# DIRECT_MAX_WIDE_PAIRS with at most DIRECT_MAX_COUT output channels; strided: one pair (see choose_strategy).
DIRECT_MAX_PAIRS = 16
DIRECT_MAX_WIDE_PAIRS = 256
DIRECT_MAX_COUT = 16

_FM = {"reassoc", "contract"}


# ---------------------------------------------------------------- BLAS inside Numba's threads
_BLAS_THREADS = None   # [(get_num_threads, set_num_threads)] of the BLAS that Numba's np.dot calls


def require_scipy_blas():
    """Raise a clear ImportError unless SciPy's BLAS can be loaded.

    Numba compiles ``np.dot`` inside a kernel into a call to SciPy's BLAS (``scipy.linalg.cython_blas``),
    so every kernel that multiplies matrices needs SciPy at run time. Without it Numba refuses to
    compile the kernel, or, loading a kernel cached where SciPy was installed, aborts the interpreter
    ("Fatal Python error: BLAS wrapper returned with an error"): this check runs first.
    """
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "refnets: the convolution and Gram kernels multiply matrices with np.dot inside Numba, and Numba "
            "takes its BLAS from SciPy, which cannot be imported here; install it: pip install scipy") from e


def _blas_thread_controls():
    """Thread controls of SciPy's OpenBLAS (Numba's ``np.dot`` calls SciPy's BLAS), found once.

    Linux only (read from /proc/self/maps); elsewhere, or with another BLAS, the list is empty
    and the kernels run with the BLAS's own threading.
    """
    global _BLAS_THREADS
    if _BLAS_THREADS is None:
        require_scipy_blas()
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
    src (H, W) C-contiguous, dst (H_out·W_out,). Flat indices, unsigned where LLVM cannot see
    they are ≥ 0: a slice view per output row cost more than the copy itself (2.6 against 0.7
    ns per element at stride 2, N16 C8 31×31).
    """
    W = src.shape[1]
    flat = src.ravel()
    nv = ox1 - ox0
    for oy in range(Ho):
        o = oy * Wo
        if oy < oy0 or oy >= oy1 or nv == 0:
            for u in range(Wo):
                dst[o + u] = 0
            continue
        base = (oy * sh + yoff) * W + ox0 * sw + xoff          # >= 0 on the valid box
        for u in range(ox0):
            dst[o + u] = 0
        for u in range(nv):
            dst[o + ox0 + u] = flat[np.uint64(base + u * sw)]
        for u in range(ox1, Wo):
            dst[o + u] = 0


@njit(cache=True, inline="always")
def _add_into(dst, src):
    """dst += src for two 2-D arrays of one shape, in place (a slot's partial weight gradient)."""
    for i in range(dst.shape[0]):
        d = dst[i]
        t = src[i]
        for k in range(dst.shape[1]):
            d[k] += t[k]


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
            flat = dx[n0 + n, c].ravel()
            for u in range(H * W):
                flat[u] = 0
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
                        base = (oy * sh + i * dh - pt) * W + ix          # >= 0 on the valid box
                        o = oy * Wo + ox0
                        for u in range(nv):
                            flat[np.uint64(base + u * sw)] += src[o + u]


@njit(cache=True, parallel=True)
def _gemm_forward(x, W2, b, kh, kw, sh, sw, pt, pl, dh, dw, groups, Ho, Wo, nslots, out):
    """out (N, C_out, L) = W ⋆ x + b, slot s taking samples s·N/S … (s+1)·N/S − 1; W2 = W as (C_out, C_in/G·kh·kw)."""
    N, C = x.shape[0], x.shape[1]
    Co, Kg = W2.shape
    cog = Co // groups
    K = C * kh * kw
    L = Ho * Wo
    for slot in prange(nslots):
        cols = np.empty((K, 1, L), dtype=x.dtype)
        cn = cols.reshape(K, L)
        # one sample at a time: its patches (in cache), then one GEMM per group straight into NCHW
        for n in range(slot * N // nslots, (slot + 1) * N // nslots):
            _im2col_serial(x, n, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, cols)
            on = out[n]
            for g in range(groups):
                np.dot(W2[g * cog:(g + 1) * cog], cn[g * Kg:(g + 1) * Kg], on[g * cog:(g + 1) * cog])
            for o in range(Co):
                bo = b[o]
                dst = on[o]
                for l in range(L):
                    dst[l] += bo


@njit(cache=True, parallel=True, fastmath=_FM)
def _gemm_backward(dout, x, W2, kh, kw, sh, sw, pt, pl, dh, dw, groups, Ho, Wo, need_dx, need_dw,
                   dx, dWpart, dbpart):
    """dx (if need_dx), per-slot partial dW (if need_dw) and db; slot s takes samples s·N/S … (s+1)·N/S − 1.

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
    for slot in prange(nslots):
        cols = np.empty((K, 1, L), dtype=dout.dtype)
        cn = cols.reshape(K, L)
        tmp = np.empty((cog, Kg), dtype=dout.dtype)
        for o in range(Co):
            dbpart[slot, o] = 0
        if need_dw:
            dWs = dWpart[slot]
            for o in range(Co):
                for k in range(Kg):
                    dWs[o, k] = 0
        # one sample at a time, reading dout in place (no copy): db, dW += dout_n·colsᵀ,
        # dcols = Wᵀ·dout_n and its col2im
        for n in range(slot * N // nslots, (slot + 1) * N // nslots):
            dn = dout[n]
            for o in range(Co):
                s = 0.0
                src = dn[o]
                for l in range(L):
                    s += src[l]
                dbpart[slot, o] += s
            if need_dw:
                _im2col_serial(x, n, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, cols)
                for g in range(groups):
                    np.dot(dn[g * cog:(g + 1) * cog], cn[g * Kg:(g + 1) * Kg].T, tmp)
                    _add_into(dWpart[slot, g * cog:(g + 1) * cog], tmp)
            if need_dx:
                for g in range(groups):
                    np.dot(W2[g * cog:(g + 1) * cog].T, dn[g * cog:(g + 1) * cog], cn[g * Kg:(g + 1) * Kg])
                _col2im_serial(cols, n, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, dx)


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


@njit(cache=True)
def _padded_plane(H, Wd, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw):
    """(Hp, Wp): the zero-bordered scratch plane of the direct kernels, large enough for the input at
    offset (pt, pl) and for every tap of every output position."""
    return max(H + pt, (Ho - 1) * sh + (kh - 1) * dh + 1), max(Wd + pl, (Wo - 1) * sw + (kw - 1) * dw + 1)


@njit(cache=True, parallel=True, fastmath=_FM)
def _direct_forward(x, W, b, sh, sw, pt, pl, dh, dw, groups, nblocks, out):
    """out = W ⋆ x + b by loops over (sample, group) items, split into ``nblocks`` parallel blocks.

    The parallel loop only hands out the blocks and their scratch planes; the work is in
    :func:`_direct_forward_items`, a plain function. Numba's parallel passes then see a small loop
    body: with the backward's much larger body split off the same way, the cold start (import and a
    first Conv2d + MaxPool2d forward and backward, empty cache) went from 13.1–13.9 s to 11.3 s here.
    What is left of this kernel's ~4 s is mostly the first use of Numba's parallel machinery."""
    N, C, H, Wd = x.shape
    Co, Cg, kh, kw = W.shape
    Ho, Wo = out.shape[2], out.shape[3]
    Hp, Wp = _padded_plane(H, Wd, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw)
    rs = Wp if sh == 1 and sw == 1 else Wo       # row stride of the accumulator
    items = N * groups
    for blk in prange(nblocks):
        xf = np.zeros(Cg * Hp * Wp, dtype=x.dtype)
        acc = np.empty(Ho * rs, dtype=x.dtype)
        _direct_forward_items(x, W, b, sh, sw, pt, pl, dh, dw, groups, blk * items // nblocks,
                              (blk + 1) * items // nblocks, xf, acc, out)


@njit(cache=True, fastmath=_FM)
def _direct_forward_items(x, W, b, sh, sw, pt, pl, dh, dw, groups, t0, t1, xf, acc, out):
    """Items t0 … t1 − 1 ((sample, group) = divmod(t, groups)) of :func:`_direct_forward`, with the
    zero-bordered scratch planes xf (C_in/G · Hp · Wp) and the accumulator acc (H_out · row stride)."""
    N, C, H, Wd = x.shape
    Co, Cg, kh, kw = W.shape
    Ho, Wo = out.shape[2], out.shape[3]
    cog = Co // groups
    Hp, Wp = _padded_plane(H, Wd, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw)
    P = Hp * Wp
    wide = sh == 1 and sw == 1
    Lw = Ho * Wp - (kw - 1) * dw       # length of the wide-row loop at stride 1
    rs = Wp if wide else Wo            # row stride of the accumulator
    for t in range(t0, t1):
        n = t // groups
        g = t - n * groups
        _copy_in(x, n, g * Cg, Cg, pt, pl, Wp, P, xf)
        for ol in range(cog):
            o = g * cog + ol
            for p in range(Ho * rs):
                acc[p] = 0
            for c in range(Cg):
                for i in range(kh):
                    j0 = 0
                    if wide:
                        # three taps of a kernel row per pass: one load/store of acc per 3 FMAs
                        aw = acc[:Lw]
                        while j0 + 3 <= kw:
                            off = c * P + i * dh * Wp + j0 * dw
                            w0, w1, w2 = W[o, c, i, j0], W[o, c, i, j0 + 1], W[o, c, i, j0 + 2]
                            s0 = xf[off:off + Lw]
                            s1 = xf[off + dw:off + dw + Lw]
                            s2 = xf[off + 2 * dw:off + 2 * dw + Lw]
                            for p in range(Lw):
                                aw[p] += w0 * s0[p] + w1 * s1[p] + w2 * s2[p]
                            j0 += 3
                    for j in range(j0, kw):
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
    As in :func:`_direct_forward`, the parallel loop only hands out the chunks and their scratch
    planes; the work is in :func:`_direct_backward_samples`.
    """
    N, Co, Ho, Wo = dout.shape
    Cg, kh, kw = W.shape[1], W.shape[2], W.shape[3]
    H, Wd = x.shape[2], x.shape[3]
    cog = Co // groups
    nchunks = dWpart.shape[0]
    Hp, Wp = _padded_plane(H, Wd, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw)
    SEG = (kw - 1) * dw + Ho * Wp      # a wide dout plane with its zeros in front
    for k in prange(nchunks):
        xf = np.zeros(Cg * Hp * Wp, dtype=x.dtype)
        dxf = np.empty(Cg * Hp * Wp, dtype=x.dtype)
        dwd = np.zeros(cog * SEG, dtype=x.dtype)     # dout on wide rows; the pad and junk columns stay 0
        dWk = dWpart[k]
        dWk[...] = 0
        _direct_backward_samples(dout, x, W, sh, sw, pt, pl, dh, dw, groups, need_dx, need_dw, k * N // nchunks,
                                 (k + 1) * N // nchunks, xf, dxf, dwd, dx, dWk)


@njit(cache=True, fastmath=_FM)
def _direct_backward_samples(dout, x, W, sh, sw, pt, pl, dh, dw, groups, need_dx, need_dw, n0, n1, xf, dxf, dwd,
                             dx, dWk):
    """Samples n0 … n1 − 1 of :func:`_direct_backward`: dx of those samples and their dW summed into
    dWk (C_out, C_in/G, kh, kw), in sample order; scratch: xf and dxf (C_in/G · Hp · Wp) and the
    wide dout planes dwd (C_out/G · SEG, zero where not written)."""
    N, Co, Ho, Wo = dout.shape
    Cg, kh, kw = W.shape[1], W.shape[2], W.shape[3]
    H, Wd = x.shape[2], x.shape[3]
    cog = Co // groups
    Hp, Wp = _padded_plane(H, Wd, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw)
    P = Hp * Wp
    wide = sh == 1 and sw == 1
    Lw = Ho * Wp - (kw - 1) * dw
    HWp = Ho * Wp
    F = (kw - 1) * dw                  # zeros in front of each wide dout plane (see the fused dx loop)
    SEG = F + HWp
    for n in range(n0, n1):
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
                        dst = dwd[ol * SEG + F + y * Wp:ol * SEG + F + y * Wp + Wo]
                        for u in range(Wo):
                            dst[u] = src[u]
            for ol in range(cog):
                o = g * cog + ol
                for c in range(Cg):
                    for i in range(kh):
                        j0 = 0
                        if wide:
                            # three taps of a kernel row per pass. dW: three sums share each load
                            # of dout. dx, as a gather: dx̃[q] += Σ_m w_m·d[q − m·dw] over
                            # q < Lw + 2dw, reading the zeros in front of d and the zero junk
                            # columns behind it (kw ≥ 3), so one load/store of dx̃ per 3 FMAs.
                            d0 = ol * SEG + F
                            while j0 + 3 <= kw:
                                off = c * P + i * dh * Wp + j0 * dw
                                if need_dw:
                                    d = dwd[d0:d0 + Lw]
                                    x0 = xf[off:off + Lw]
                                    x1 = xf[off + dw:off + dw + Lw]
                                    x2 = xf[off + 2 * dw:off + 2 * dw + Lw]
                                    t0 = 0.0
                                    t1 = 0.0
                                    t2 = 0.0
                                    for p in range(Lw):
                                        t0 += d[p] * x0[p]
                                        t1 += d[p] * x1[p]
                                        t2 += d[p] * x2[p]
                                    dWk[o, c, i, j0] += t0
                                    dWk[o, c, i, j0 + 1] += t1
                                    dWk[o, c, i, j0 + 2] += t2
                                if need_dx:
                                    w0, w1, w2 = W[o, c, i, j0], W[o, c, i, j0 + 1], W[o, c, i, j0 + 2]
                                    m = Lw + 2 * dw
                                    dst = dxf[off:off + m]
                                    e0 = dwd[d0:d0 + m]
                                    e1 = dwd[d0 - dw:d0 - dw + m]
                                    e2 = dwd[d0 - 2 * dw:d0 - 2 * dw + m]
                                    for q in range(m):
                                        dst[q] += w0 * e0[q] + w1 * e1[q] + w2 * e2[q]
                                j0 += 3
                        for j in range(j0, kw):
                            w = W[o, c, i, j]
                            if wide:
                                off = c * P + i * dh * Wp + j * dw
                                d = dwd[ol * SEG + F:ol * SEG + F + Lw]
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


def choose_strategy(c_in_per_group: int, c_out_per_group: int, kernel_size=None, stride=(1, 1), dilation=(1, 1),
                    groups: int = 1) -> str:
    """"winograd", "winograd1d", "direct" or "gemm" for a convolution with these channels per group.

    * "winograd" (:mod:`refnets.kernels.conv_winograd`) when ``kernel_size`` is given and the kernel
      takes it (:func:`refnets.kernels.conv_winograd.applies`: 3×3, stride 1, no dilation, one group,
      enough channels): 2.25× fewer multiplications, 1.4–2× faster than im2col.
    * "winograd1d" (:mod:`refnets.kernels.conv_winograd1d`) likewise for 1×3 kernels (Conv1d with
      q = 3; :func:`refnets.kernels.conv_winograd1d.applies`): 1.5–2× fewer multiplications, 1.3–1.8×
      faster than im2col from 16 → 16 channels on.
    * "direct" at stride 1 when a group has few channel pairs (C_in/G · C_out/G ≤ DIRECT_MAX_PAIRS),
      or up to DIRECT_MAX_WIDE_PAIRS with at most DIRECT_MAX_COUT output channels: a group's GEMM has
      C_out/G rows and an inner length C_in/G·kh·kw, so with few output channels BLAS runs far below
      its peak and the unfold costs more than the arithmetic, while direct loops read each (padded)
      input plane from L1 once per output channel and tap. Strided, the direct loops lose to the
      unfold (which gathers only the strided positions) except with one channel pair per group.
    * "gemm" otherwise.

    Measured (forward + backward, 32 samples, 2 threads, float64 and float32, 3×3 and 5×5): at
    stride 1 direct is 1.3–7× faster than gemm from C16→2 to C16→16 and C32→8, 0.9–1.4× from C1→32
    to C8→32 (so those stay gemm); at stride 2 gemm is 1.2–7× faster with 4–128 pairs, direct 2× with
    a depthwise (1-pair) kernel.
    """
    if kernel_size is not None:
        from . import conv_winograd                  # imported here: it builds on this module
        kh, kw = kernel_size
        w_shape = (c_out_per_group * groups, c_in_per_group, kh, kw)
        if conv_winograd.applies(w_shape, stride, dilation, groups):
            return "winograd"
        from . import conv_winograd1d
        if conv_winograd1d.applies(w_shape, stride, dilation, groups):
            return "winograd1d"
    pairs = c_in_per_group * c_out_per_group
    if tuple(int(v) for v in stride) != (1, 1):
        return "direct" if pairs == 1 else "gemm"
    if pairs <= DIRECT_MAX_PAIRS or (pairs <= DIRECT_MAX_WIDE_PAIRS and c_out_per_group <= DIRECT_MAX_COUT):
        return "direct"
    return "gemm"


def _strategy(strategy, w_shape, groups, stride, dilation):
    Co, Cg, kh, kw = w_shape
    if strategy is None or strategy == "auto":
        return choose_strategy(Cg, Co // groups, (kh, kw), stride, dilation, groups)
    if strategy not in STRATEGIES:
        raise ValueError(f"conv kernel: strategy must be 'auto', 'gemm', 'direct', 'winograd' or 'winograd1d', "
                         f"got {strategy!r}")
    if strategy == "winograd":
        from . import conv_winograd
        if not conv_winograd.applies(w_shape, stride, dilation, groups):
            raise ValueError(f"conv kernel: strategy 'winograd' needs a 3x3 kernel, stride 1, dilation 1, one group "
                             f"and enough channels (conv_winograd.applies); got W {tuple(w_shape)}, stride "
                             f"{tuple(stride)}, dilation {tuple(dilation)}, groups {groups}")
    if strategy == "winograd1d":
        from . import conv_winograd1d
        if not conv_winograd1d.applies(w_shape, stride, dilation, groups):
            raise ValueError(f"conv kernel: strategy 'winograd1d' needs a 1x3 kernel, stride 1, dilation 1, one group "
                             f"and enough channels (conv_winograd1d.applies); got W {tuple(w_shape)}, stride "
                             f"{tuple(stride)}, dilation {tuple(dilation)}, groups {groups}")
    return strategy


def _slots(N, dw_bytes=0):
    """Parallel slots of the "gemm" strategy, from the shapes only: min(N, MAX_SLOTS), and no
    more partial weight gradients (dw_bytes each) than PARTIAL_BYTES."""
    slots = min(N, MAX_SLOTS)
    if dw_bytes:
        slots = min(slots, PARTIAL_BYTES // dw_bytes)
    return max(1, slots)


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
def _gram_weight(x, D4, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, nkb, kb, nrb, nslots, parts):
    """parts[s] = Σ over slot s's (group g, block b of kb patch rows) items of J Jᵀ, with J (N, C_out/G·kb)
    the per-sample weight gradients of that block: J[n, (o, k)] = Σ_l D4[n, g, o, l] · X_n[g·K_g + b·kb + k, l]
    (X_n the im2col patches of sample n, unfolded one block at a time).

    J Jᵀ is symmetric: with the samples cut into nrb row blocks only the blocks on and above the
    diagonal are computed (nrb(nrb+1)/2 of nrb² products); the caller mirrors the upper triangle."""
    N = x.shape[0]
    G, cog, L = D4.shape[1], D4.shape[2], D4.shape[3]
    Kg = nkb * kb
    nitems = G * nkb
    for s in prange(nslots):
        acc = parts[s]
        J = np.empty((N, cog, kb), dtype=D4.dtype)
        J2 = J.reshape(N, cog * kb)
        Xb = np.empty((kb, L), dtype=D4.dtype)
        tmp = np.empty(((N + nrb - 1) // nrb, (N + nrb - 1) // nrb), dtype=D4.dtype)   # the largest block
        for it in range(s * nitems // nslots, (s + 1) * nitems // nslots):
            g = it // nkb
            r0 = g * Kg + (it - g * nkb) * kb
            for n in range(N):
                _im2col_rows(x, n, r0, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo, Xb)
                np.dot(D4[n, g], Xb.T, J[n])               # into J: no temporary per sample
            for bi in range(nrb):
                i0, i1 = bi * N // nrb, (bi + 1) * N // nrb
                for bj in range(bi, nrb):
                    j0, j1 = bj * N // nrb, (bj + 1) * N // nrb
                    blk = tmp[:i1 - i0, :j1 - j0]
                    dot_nt(J2[i0:i1], J2[j0:j1], blk)       # small output, long rows: 1.5× BLAS
                    _add_into(acc[i0:i1, j0:j1], blk)

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
    nrb = max(1, min(4, N // GRAM_ROW_BLOCK))      # row blocks of J Jᵀ
    with _one_blas_thread(), _serial_if_tiny(N * Co * Kg * L + N * N * Co * Kg):
        _gram_weight(x, dout.reshape(N, G, cog, L), *_ints(kh, kw, sh, sw, padding[0], padding[2], dh, dw, Ho, Wo,
                                                           nkb, kb, nrb, nslots), parts)
    G = _sum_in_order(parts)
    if nrb > 1:                                    # mirror the upper blocks: G exactly symmetric
        for bi in range(nrb):
            i0, i1 = bi * N // nrb, (bi + 1) * N // nrb
            G[i1:, i0:i1] = G[i0:i1, i1:].T
    return G


def conv2d_forward(x, W, b, stride, padding, dilation, groups, strategy=None):
    """out = W ⋆ x + b.

    Parameters
    ----------
    x : (N, C_in, H, W), float32 or float64
    W : (C_out, C_in/G, kh, kw), same dtype
    b : (C_out,) or None
    stride, dilation : pairs; padding : (pt, pb, pl, pr); groups : G.
    strategy : None/"auto", "gemm", "direct", "winograd" or "winograd1d".

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
    strat = _strategy(strategy, W.shape, G, (sh, sw), (dh, dw))
    if strat == "winograd":
        from .conv_winograd import winograd_forward
        return winograd_forward(x, W, b, (pt, pb, pl, pr))
    if strat == "winograd1d":
        from .conv_winograd1d import winograd1d_forward
        return winograd1d_forward(x, W, b, (pt, pb, pl, pr))
    if strat == "direct":
        with _serial_if_tiny(macs):
            _direct_forward(x, W, bb, sh, sw, pt, pl, dh, dw, G, min(N * G, 8 * MAX_SLOTS), out)
        return out
    with _one_blas_thread(), _serial_if_tiny(macs):
        _gemm_forward(x, W.reshape(Co, Cg * kh * kw), bb, kh, kw, sh, sw, pt, pl, dh, dw, G, Ho, Wo, _slots(N),
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
    strat = _strategy(strategy, W.shape, G, (sh, sw), (dh, dw))
    if strat == "winograd":
        from .conv_winograd import winograd_backward
        xw = x if need_dw else np.broadcast_to(np.zeros((), dt), x_shape)   # only its shape is read: no memory
        return winograd_backward(dout, xw, W, (pt, pb, pl, pr), need_dx=need_dx, need_dw=need_dw)
    if strat == "winograd1d":
        from .conv_winograd1d import winograd1d_backward
        xw = x if need_dw else np.broadcast_to(np.zeros((), dt), x_shape)   # only its shape is read: no memory
        return winograd1d_backward(dout, xw, W, (pt, pb, pl, pr), need_dx=need_dx, need_dw=need_dw)
    dx = np.empty(x_shape, dtype=dt) if need_dx else np.empty((0, 0, 0, 0), dtype=dt)
    if not need_dw:
        x = np.empty((1, C, H, Wd), dtype=dt)            # not read; only its geometry is
    macs = N * Co * Cg * kh * kw * Ho * Wo * (int(bool(need_dx)) + int(bool(need_dw)))
    if strat == "direct":
        db = np.empty(Co, dtype=np.float64)
        slots = min(N, MAX_SLOTS)
        dWpart = np.empty((slots,) + W.shape if need_dw else (slots, 0, 0, 0, 0), dtype=dt)
        with _serial_if_tiny(macs):
            _sum_bias(dout.reshape(N, Co, Ho * Wo), db)
            _direct_backward(dout, x, W, sh, sw, pt, pl, dh, dw, G, bool(need_dx), bool(need_dw), dx, dWpart)
        dW = _sum_in_order(dWpart) if need_dw else None
    else:
        Kg = Cg * kh * kw
        slots = _slots(N, Co * Kg * dt.itemsize if need_dw else 0)
        dWpart = np.empty((slots, Co, Kg) if need_dw else (slots, 0, 0), dtype=dt)
        dbpart = np.empty((slots, Co), dtype=np.float64)
        with _one_blas_thread(), _serial_if_tiny(macs):
            _gemm_backward(dout.reshape(N, Co, Ho * Wo), x, W.reshape(Co, Kg), kh, kw, sh, sw, pt, pl, dh, dw, G,
                           Ho, Wo, bool(need_dx), bool(need_dw), dx, dWpart, dbpart)
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
