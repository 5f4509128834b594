"""Fast kernels of the logistic squasher σ(z) = 1/(1 + e^{−z}) and of g ← g·σ'(z), in place; the
NumPy references are in :mod:`refnets.kernels.activation_reference` (tested equal, 1e-12 relative).

Both are elementwise: every output depends on its own input only, so the result does not depend on
how the array is split over threads (deterministic).

* g ← g·o(1 − o): a parallel Numba loop.
* σ: Numba calls a scalar libm ``exp`` (no vector ``exp`` without Intel's SVML), about 4 ns per
  element per thread. :func:`_exp_neg_block` therefore writes e^{−z} out in vectorisable
  arithmetic, the textbook way (Cody–Waite reduction + a polynomial, as in Cephes or SLEEF):

      t = −z,  k = round(t / ln 2),  r = t − k·ln 2  (|r| ≤ ln2/2, ln 2 split in two parts so that
      k·ln2_hi is exact),  e^{t} = 2^k · P(r),  P the degree-12 Taylor polynomial of e^r
      (remainder |r|^13/13! ≤ 2e−16 relative),

  and 2^k is built from its IEEE-754 bits ((k + 1023) << 52, reinterpreted as a float64 through a
  ``view`` of a scratch buffer). Measured relative error against NumPy's ``exp``: ≤ 5e−16. One
  block of 2048 elements at a time: pass 1 fills P(r) and the bits of 2^k, pass 2 stores
  1/(1 + 2^k·P(r)), both loops SIMD. t is clamped to [−708, 708] so 2^k stays a normal number; for
  z < −708 the output is the limit 0 (σ(z) < 4e−308) and for z > 708 it is 1 (as 1/(1 + e^{−708})
  already is); NaN propagates. Computed in float64 for float32 arrays too. 0.37 ns per element on
  2 threads against 1.1 for NumPy's SIMD ufuncs split over threads (the previous kernel) and 2.1
  for a ``prange`` loop calling ``exp`` (2M elements, median).

The dispatchers :func:`logistic_inplace` and :func:`times_dlogistic_inplace` fall back to the
references for non-contiguous arrays (and when Numba is missing).
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
    def _exp_neg_block(z, lo, hi, p, bits):
        """z[lo:hi] ← σ(z[lo:hi]) = 1/(1 + e^{−z}), with e^{−z} = 2^k·P(r) (module docstring);
        p (float64) and bits (int64) are scratch buffers of at least hi − lo elements."""
        zb = z[lo:hi]          # index with the loop variable only, or the wraparound test blocks SIMD
        m = hi - lo
        for i in range(m):
            t = min(max(-np.float64(zb[i]), -_T_MAX), _T_MAX)
            k = np.floor(t * _LOG2E + 0.5)
            r = (t - k * _LN2_HI) - k * _LN2_LO
            p[i] = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (
                1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (
                    1.0 / 362880 + r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600))))))))))))
            bits[i] = (np.int64(k) + 1023) << 52
        scale = bits.view(np.float64)
        for i in range(m):
            v = zb[i]
            s = 1.0 / (1.0 + p[i] * scale[i])
            if v < -_T_MAX:
                s = 0.0
            if v != v:
                s = v
            zb[i] = s

    @_nb.njit(cache=True, fastmath=_EXP_FM)
    def _logistic_serial(z):
        p = np.empty(_BLOCK, dtype=np.float64)
        bits = np.empty(_BLOCK, dtype=np.int64)
        for lo in range(0, z.size, _BLOCK):
            _exp_neg_block(z, lo, min(lo + _BLOCK, z.size), p, bits)

    @_nb.njit(cache=True, parallel=True, fastmath=_EXP_FM)
    def _logistic_parallel(z):
        nblocks = (z.size + _BLOCK - 1) // _BLOCK
        for s in _nb.prange(_SLOTS):
            p = np.empty(_BLOCK, dtype=np.float64)
            bits = np.empty(_BLOCK, dtype=np.int64)
            for b in range(s * nblocks // _SLOTS, (s + 1) * nblocks // _SLOTS):
                lo = b * _BLOCK
                _exp_neg_block(z, lo, min(lo + _BLOCK, z.size), p, bits)


def logistic_inplace(z: np.ndarray, parallel: bool = True) -> np.ndarray:
    """z ← σ(z) in place; returns z. C-contiguous z: the Numba kernel (module docstring; ~3× NumPy's
    ufuncs); non-contiguous z: the reference.

    parallel=False keeps it on the calling thread. Between BLAS calls that is faster: OpenBLAS's
    threads keep spinning for a while after a product, and a parallel region started then competes
    with them for the cores (measured: the Du ResNet NTK, whose Softplus′ is σ, took 1.4× longer with
    the parallel kernel than with NumPy, and 0.92× with the serial one). Same values either way.
    """
    if _nb is None or not z.flags.c_contiguous:
        return _ref.logistic_inplace(z)
    flat = z.reshape(-1)
    (_logistic_serial if flat.size < _MIN_THREADED or not parallel else _logistic_parallel)(flat)
    return z


def times_dlogistic_inplace(g: np.ndarray, o: np.ndarray) -> np.ndarray:
    """g ← g · o(1 − o) in place (o = σ(z), cached by the forward); returns g."""
    if _nb is None or not (g.flags.c_contiguous and o.flags.c_contiguous) or g.dtype != o.dtype:
        return _ref.times_dlogistic_inplace(g, o)
    _times_dlogistic_flat(g.reshape(-1), o.reshape(-1))
    return g
