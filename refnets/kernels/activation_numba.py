"""Fast kernels of the logistic squasher σ(z) = 1/(1 + e^{−z}), of softplus log(1 + e^{z}) and of
g ← g·σ'(z), in place; the NumPy references are in :mod:`refnets.kernels.activation_reference`
(tested equal, 1e-12 relative).

Both are elementwise: every output depends on its own input only, so the result does not depend on
how the array is split over threads (deterministic).

* g ← g·o(1 − o): a parallel Numba loop.
* e = e^{−|z|} ∈ (0, 1], which both need: Numba calls a scalar libm ``exp`` (no vector ``exp``
  without Intel's SVML), about 4 ns per element per thread. :func:`_exp_abs_pass` therefore writes
  it out in vectorisable arithmetic, the textbook way (Cody–Waite reduction + a polynomial, as in
  Cephes or SLEEF):

      t = −|z|,  k = round(t / ln 2),  r = t − k·ln 2  (|r| ≤ ln2/2, ln 2 split in two parts so that
      k·ln2_hi is exact),  e^{t} = 2^k · P(r),  P the degree-12 Taylor polynomial of e^r
      (remainder |r|^13/13! ≤ 2e−16 relative),

  and 2^k is built from its IEEE-754 bits ((k + 1023) << 52, reinterpreted as a float64 through a
  ``view`` of a scratch buffer). Measured relative error against NumPy's ``exp``: ≤ 5e−16. One
  block of 2048 elements at a time, every loop SIMD. t is clamped to −708 so 2^k stays a normal
  number; for z < −708, where σ(z) = softplus(z) = e^{z} < 4e−308 is subnormal or 0, a scalar pass
  calls libm's exp (only for blocks that hold such a z); NaN propagates. Computed in float64 for
  float32 arrays too.

* σ = 1/(1 + e) for z ≥ 0 and e/(1 + e) for z < 0 (the stable form of the reference; no
  cancellation, no overflow). 0.37 ns per element on 2 threads against 1.1 for NumPy's SIMD ufuncs
  split over threads and 2.1 for a ``prange`` loop calling ``exp`` (2M elements, median).

* softplus (Du et al. 2019's σ): max(z, 0) + log1p(e), and log1p(e) = 2 atanh(s) =
  2 Σ_j s^{2j+1}/(2j+1) with s = e/(2 + e) ≤ 1/3: 17 terms leave < 2e−18 relative. Measured ≤ 5e−16
  relative against mpmath on [−700, 700] and ≤ 7e−16 against the reference. 2 ns per element on one
  thread against 8 for NumPy's ufuncs (262k elements).

* softplus and σ together (:func:`softplus_and_logistic`, a Softplus layer's forward: σ is
  softplus′, the backward's factor) from one e per element, bit for bit what the two kernels give
  alone: the pieces are the same inline loops, and e is stored before any sum reads it, so no
  kernel contracts it into an FMA differently.

The dispatchers :func:`logistic_inplace`, :func:`softplus_inplace` and :func:`times_dlogistic_inplace`
fall back to the references for non-contiguous arrays (and when Numba is missing).
"""
from __future__ import annotations

import numpy as np

from . import activation_reference as _ref

try:
    import numba as _nb
except ImportError:  # pragma: no cover
    _nb = None

_BLOCK = 2048               # elements per block: the two scratch buffers stay in L1
_MIN_THREADED = 1 << 16     # below this, starting the parallel region costs more than it saves
_SLOTS = 64                 # parallel slots of consecutive blocks (any split gives the same bits)

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693147180369123816490      # ln 2 to 32 bits: k·_LN2_HI is exact for |k| < 2^20
_LN2_LO = 1.90821492927058770002e-10   # ln 2 − _LN2_HI
_T_MAX = 708.0                          # e^{±708} and 2^{±1022} are normal float64 numbers

if _nb is not None:
    _FAST = {"nnan", "nsz", "arcp", "contract", "afn", "reassoc"}

    @_nb.njit(cache=True, parallel=True, fastmath=_FAST)
    def _times_dlogistic_flat(g, o):
        for i in _nb.prange(g.size):
            g[i] *= o[i] * (1.0 - o[i])

    # Contraction into FMAs and no signed zeros let LLVM vectorise min/max; no NaN/inf assumptions.
    _EXP_FM = {"contract", "nsz"}

    @_nb.njit(cache=True, inline="always", fastmath=_EXP_FM)
    def _exp_abs_pass(zb, m, p, bits):
        """p[:m] ← e = e^{−|z|} ∈ (0, 1] = 2^k·P(r) with t = −|z| clamped to −708 (module docstring):
        a pass for P(r) and the IEEE bits of 2^k, then their product, in its own loop (so that no
        later sum is contracted with it into an FMA, whichever kernel runs it)."""
        for i in range(m):
            t = max(-abs(np.float64(zb[i])), -_T_MAX)
            k = np.floor(t * _LOG2E + 0.5)
            r = (t - k * _LN2_HI) - k * _LN2_LO
            p[i] = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (
                1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (
                    1.0 / 362880 + r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600))))))))))))
            bits[i] = (np.int64(k) + 1023) << 52
        scale = bits.view(np.float64)
        for i in range(m):
            p[i] = p[i] * scale[i]

    @_nb.njit(cache=True, inline="always")
    def _special_or(v, r):
        """The SIMD result r for input v, or v itself where r is not the answer: NaN (propagated) and
        z < −708 (kept for :func:`_below_t_max`; every other output of σ and softplus is ≥ 0)."""
        if v < -_T_MAX or v != v:
            return v
        return r

    @_nb.njit(cache=True, inline="always")
    def _below_t_max(zb, m, nlow):
        """zb[i] ← e^{zb[i]} where the SIMD loop kept an input z < −708 (nlow of them): there σ(z) and
        softplus(z) both equal e^{z} in float64 (1 + e^{z} rounds to 1), a subnormal number or 0, which
        libm's exp gets right. The SIMD loop counts them, so this scalar loop runs only with work."""
        if nlow:
            for i in range(m):
                if zb[i] < -_T_MAX:
                    zb[i] = np.exp(np.float64(zb[i]))

    @_nb.njit(cache=True, inline="always")
    def _store(p, ob, m):
        """ob[:m] ← p[:m]. The blocks compute into the scratch p, never into ob: were ob z itself (in
        place), LLVM's runtime alias check would send the loop to its scalar version, whose FMA
        contractions differ, and in place and out of place would differ in the last bit."""
        for i in range(m):
            ob[i] = p[i]

    @_nb.njit(cache=True, inline="always", fastmath=_EXP_FM)
    def _logistic_from_e(zb, p, ob, m):
        """ob[i] ← σ(z) = 1/(1 + e) for z ≥ 0, e/(1 + e) for z < 0 (e = p[i] = e^{−|z|}; a select, an
        addition and a division: the same bits in any loop); returns the count of z < −708."""
        nlow = 0
        for i in range(m):
            v = zb[i]
            e = p[i]
            ob[i] = _special_or(v, (1.0 if v >= 0 else e) / (1.0 + e))
            if v < -_T_MAX:
                nlow += 1
        return nlow

    @_nb.njit(cache=True, inline="always", fastmath=_EXP_FM)
    def _softplus_from_e(zb, p, m):
        """p[i] ← log(1 + e^{z}) = max(z, 0) + log1p(e), e = p[i] (module docstring); returns the count
        of z < −708."""
        for i in range(m):                    # its own loop: with the division in the next one, LLVM
            e = p[i]                          # leaves that loop scalar (3.5× slower, measured)
            p[i] = e / (2.0 + e)              # s: log1p(e) = 2 atanh(s), s ≤ 1/3
        nlow = 0
        for i in range(m):
            v = zb[i]
            s = p[i]
            w = s * s
            q = 1.0 + w * (1.0 / 3 + w * (1.0 / 5 + w * (1.0 / 7 + w * (1.0 / 9 + w * (1.0 / 11 + w * (
                1.0 / 13 + w * (1.0 / 15 + w * (1.0 / 17 + w * (1.0 / 19 + w * (1.0 / 21 + w * (
                    1.0 / 23 + w * (1.0 / 25 + w * (1.0 / 27 + w * (1.0 / 29 + w * (1.0 / 31 + w / 33)))))))))))))))
            p[i] = _special_or(v, max(np.float64(v), 0.0) + 2.0 * s * q)
            if v < -_T_MAX:
                nlow += 1
        return nlow

    @_nb.njit(cache=True, inline="always", fastmath=_EXP_FM)
    def _block(z, out, out2, what, lo, hi, p, bits):
        """out[lo:hi] ← σ(z) (what = 0), softplus(z) (what = 1), or softplus(z) and out2[lo:hi] ← σ(z)
        (what = 2: one e^{−|z|} for both, softplus′ = σ); out may be z. p (float64) and bits (int64)
        are scratch buffers of at least hi − lo elements."""
        zb = z[lo:hi]          # index with the loop variable only, or the wraparound test blocks SIMD
        ob = out[lo:hi]
        m = hi - lo
        _exp_abs_pass(zb, m, p, bits)
        if what == 0:
            nlow = _logistic_from_e(zb, p, p, m)
        else:
            if what == 2:
                o2 = out2[lo:hi]
                _below_t_max(o2, m, _logistic_from_e(zb, p, o2, m))
            nlow = _softplus_from_e(zb, p, m)
        _store(p, ob, m)
        _below_t_max(ob, m, nlow)

    @_nb.njit(cache=True, fastmath=_EXP_FM)
    def _serial(z, out, out2, what):
        """:func:`_block` over all of z, block by block on the calling thread."""
        p = np.empty(_BLOCK, dtype=np.float64)
        bits = np.empty(_BLOCK, dtype=np.int64)
        for lo in range(0, z.size, _BLOCK):
            _block(z, out, out2, what, lo, min(lo + _BLOCK, z.size), p, bits)

    @_nb.njit(cache=True, parallel=True, fastmath=_EXP_FM)
    def _parallel(z, out, out2, what):
        """As :func:`_serial`, _SLOTS slots of consecutive blocks shared out over the threads."""
        nblocks = (z.size + _BLOCK - 1) // _BLOCK
        for s in _nb.prange(_SLOTS):
            p = np.empty(_BLOCK, dtype=np.float64)
            bits = np.empty(_BLOCK, dtype=np.int64)
            for b in range(s * nblocks // _SLOTS, (s + 1) * nblocks // _SLOTS):
                lo = b * _BLOCK
                _block(z, out, out2, what, lo, min(lo + _BLOCK, z.size), p, bits)


def logistic_inplace(z: np.ndarray, parallel: bool = True, out: np.ndarray | None = None) -> np.ndarray:
    """z ← σ(z) in place, or out ← σ(z) (a C-contiguous array of z's shape and dtype; z is kept);
    returns the result. C-contiguous z: the Numba kernel (module docstring; ~3× NumPy's ufuncs);
    non-contiguous z: the reference. ``out`` saves the copy of z a caller would make to keep it.

    parallel=False keeps it on the calling thread. Between BLAS calls that is safer: after a parallel
    region Numba's OpenMP workers keep spinning for a few ms, and an OpenBLAS product started then
    shares the cores with them (a GD step of Du's ResNet, whose Softplus′ is σ, took 1.6× longer with
    the parallel kernels, A/B in one process; the layers choose by the array's ndim:
    ``refnets.layers.activations._parallel_ok``). Same values either way.
    """
    return _run(z, parallel, False, _ref.logistic_inplace, out)


def softplus_inplace(z: np.ndarray, parallel: bool = True, out: np.ndarray | None = None) -> np.ndarray:
    """z ← log(1 + e^{z}) in place, or out ← log(1 + e^{z}); returns the result. C-contiguous z: the
    Numba kernel (module docstring); non-contiguous z: the reference. parallel and out as for
    :func:`logistic_inplace`."""
    return _run(z, parallel, True, _ref.softplus_inplace, out)


def softplus_and_logistic(z: np.ndarray, parallel: bool = True):
    """(softplus(z), σ(z)) as two new C-contiguous arrays, from one e^{−|z|} per element: a Softplus
    layer's output and its derivative (σ = softplus′) for the backward, in one pass. The same bits as
    :func:`softplus_inplace` and :func:`logistic_inplace` give separately."""
    sp = np.empty(z.shape, dtype=z.dtype)
    lg = np.empty(z.shape, dtype=z.dtype)
    if _nb is None or not z.flags.c_contiguous:
        zc = np.array(z, order="C")
        return softplus_inplace(zc, parallel, out=sp), logistic_inplace(zc, parallel, out=lg)
    _kernel(z.reshape(-1), sp.reshape(-1), lg.reshape(-1), 2, parallel)
    return sp, lg


def _kernel(flat, out, out2, what, parallel):
    if flat.size < _MIN_THREADED or not parallel:
        _serial(flat, out, out2, what)
    else:
        _parallel(flat, out, out2, what)


def _run(z, parallel, softplus, reference, out=None):
    """The kernel on C-contiguous z (on all threads if parallel and large enough), else the reference;
    into out (if given) or z."""
    if out is None:
        out = z
    elif out.shape != z.shape or out.dtype != z.dtype or not out.flags.c_contiguous:
        raise ValueError(f"activation kernel: out must be a C-contiguous {z.dtype} array of shape {z.shape}, "
                         f"got {out.dtype} {out.shape}")
    if _nb is None or not z.flags.c_contiguous:
        if out is not z:
            out[...] = z
        return reference(out)
    oflat = out.reshape(-1)
    _kernel(z.reshape(-1), oflat, oflat, int(softplus), parallel)
    return out


def times_dlogistic_inplace(g: np.ndarray, o: np.ndarray) -> np.ndarray:
    """g ← g · o(1 − o) in place (o = σ(z), cached by the forward); returns g."""
    if _nb is None or not (g.flags.c_contiguous and o.flags.c_contiguous) or g.dtype != o.dtype:
        return _ref.times_dlogistic_inplace(g, o)
    _times_dlogistic_flat(g.reshape(-1), o.reshape(-1))
    return g
