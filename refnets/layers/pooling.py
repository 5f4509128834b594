"""Pooling: 2-D max and average pooling over windows, and global max and average pooling.

* :class:`MaxPool2d`, :class:`AvgPool2d` — windowed pooling of (N, C, H, W), PyTorch's geometry
  (``ceil_mode=False``, no dilation).
* :class:`GlobalMaxPool` — the max over all positions of each channel, (N, C, *spatial) -> (N, C):
  Brutzkus & Globerson 2021, Eq. (1), N(x) = Σᵢ aᵢ max_j σ(wᵢ·x[j]), max-pools over the n positions.
* :class:`GlobalAvgPool` — the mean over all positions, or over a chosen region: Kohler, Krzyżak &
  Walter 2024 average the last channel over the index set I_κ (:func:`kohler_index_set`).

Max ties and kinks
------------------
A max is not differentiable where two candidates tie. refnets sends the whole gradient to **one**
winner: the first maximum in row-major scan order of the window (for the global pools: of the
flattened C-order spatial positions). PyTorch's CPU kernels choose the same winner, so gradients
agree with ``torch.nn.functional.max_pool2d`` / ``adaptive_max_pool*d`` even on ties.
Max pooling is piecewise linear: :meth:`MaxPool2d.max_margin` (and :meth:`GlobalMaxPool.max_margin`)
return the smallest winner/runner-up gap of the last forward. A finite-difference step h smaller
than it cannot change a winner (the difference quotient is exact up to rounding); a step h ≥ the
margin may straddle a kink, and a gradient checker should report KINK rather than a failure.

Padding: max pooling pads with −∞ (a padded position never wins), average pooling with zeros.
The padding per side must be at most half the window (PyTorch's rule), so every window holds at
least one input pixel.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_input, pair
from ..kernels import pool_reference as _ref
from .base import Layer

BACKENDS = ("numba", "numpy")


# ---------------------------------------------------------------------------- validation
def pool_geometry(where, kernel_size, stride=None, padding=0):
    """Normalise (kernel_size, stride, padding) to three (int, int) pairs and check them.

    stride None means stride = kernel_size (non-overlapping windows). Raises ValueError naming
    ``where`` for non-positive sizes or padding > kernel_size // 2 (PyTorch's rule).
    """
    kernel = pair(where, "kernel_size", kernel_size)
    stride = kernel if stride is None else pair(where, "stride", stride)
    padding = pair(where, "padding", padding, minimum=0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{where}: padding {padding} must be at most half the window {kernel} on each axis "
            f"(padding <= kernel_size // 2, PyTorch's rule), so that every window holds an input pixel"
        )
    return kernel, stride, padding


def check_window_fits(where, shape, kernel, padding):
    """Raise ValueError naming ``where`` when the window exceeds the padded H×W of ``shape``."""
    H, W = shape[-2:]
    Hp, Wp = H + 2 * padding[0], W + 2 * padding[1]
    if Hp < kernel[0] or Wp < kernel[1]:
        raise ValueError(
            f"{where}: window {kernel} is larger than the padded input {(Hp, Wp)} "
            f"(input H, W = {(H, W)}, padding {padding}); the output would be empty"
        )


def _check_backend(where, backend):
    if backend not in BACKENDS:
        raise ValueError(f"{where}: backend must be one of {BACKENDS}, got {backend!r}")


def _kernels(backend):
    if backend == "numba":
        from ..kernels import pool_numba  # imported on first use: Numba is slow to import
        return pool_numba
    return _ref


# ---------------------------------------------------------------------------- max pool 2-D
def maxpool2d_forward(x, kernel_size, stride=None, padding=0, backend="numba"):
    """2-D max pooling, NCHW.

        out[n, c, oh, ow] = max_{0≤a<kh, 0≤b<kw} x̃[n, c, oh·sh + a, ow·sw + b],

    x̃ = x padded with −∞ by (ph, pw) on each side;
    OH = ⌊(H + 2ph − kh)/sh⌋ + 1, OW = ⌊(W + 2pw − kw)/sw⌋ + 1.

    Parameters
    ----------
    x : (N, C, H, W) float32/float64.
    kernel_size : int or (kh, kw).
    stride : int, (sh, sw) or None (= kernel_size).
    padding : int or (ph, pw), each at most half the window.
    backend : "numba" (default) or "numpy" (the reference kernel); identical results.

    Returns
    -------
    out : (N, C, OH, OW)
    cache : (x, argmax, kernel, stride, padding); argmax (N, C, OH, OW) int64 holds each window's
        winner (first maximum in row-major scan order) as the flat index i·W + j into H×W.
    """
    where = "maxpool2d_forward"
    kernel, stride, padding = pool_geometry(where, kernel_size, stride, padding)
    check_window_fits(where, x.shape, kernel, padding)
    _check_backend(where, backend)
    out, argmax = _kernels(backend).maxpool2d_forward(x, kernel, stride, padding)
    return out, (x, argmax, kernel, stride, padding, backend)


def maxpool2d_backward(dout, cache):
    """dx = scatter-add of dout into the winners (accumulates over overlapping windows).

        dx[n, c, i, j] = Σ_{(oh, ow) : argmax[n, c, oh, ow] = i·W + j} dout[n, c, oh, ow]

    Parameters
    ----------
    dout : (N, C, OH, OW)
    cache : from :func:`maxpool2d_forward`.

    Returns
    -------
    dx : (N, C, H, W)
    """
    x, argmax, _, _, _, backend = cache
    return _kernels(backend).maxpool2d_backward(dout, argmax, x.shape[-2:])


def maxpool2d_jvp(dx, cache):
    """d out[n, c, oh, ow] = dx[n, c, argmax[n, c, oh, ow]] (the winners are fixed; None means zero)."""
    x, argmax, *_ = cache
    N, C, H, W = x.shape
    if dx is None:
        return np.zeros(argmax.shape, dtype=x.dtype)
    flat = dx.reshape(N, C, H * W)
    return np.take_along_axis(flat, argmax.reshape(N, C, -1), axis=-1).reshape(argmax.shape)


def maxpool2d_margin(cache):
    """Smallest winner/runner-up gap over all windows of the forward that made ``cache`` (+∞ if no
    window has two real pixels); see :func:`refnets.kernels.pool_reference.maxpool2d_margin`."""
    x, _, kernel, stride, padding, _ = cache
    return _ref.maxpool2d_margin(x, kernel, stride, padding)


# ---------------------------------------------------------------------------- avg pool 2-D
def avgpool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """2-D average pooling, NCHW.

        out[n, c, oh, ow] = (1/D) Σ_{0≤a<kh, 0≤b<kw} x̃[n, c, oh·sh + a, ow·sw + b],

    x̃ = x zero-padded by (ph, pw); D = kh·kw with ``count_include_pad`` (PyTorch's default),
    otherwise the number of real (unpadded) pixels in the window. Output size as for max pooling.

    Parameters
    ----------
    x : (N, C, H, W)
    kernel_size, stride, padding : as :func:`maxpool2d_forward`.
    count_include_pad : bool

    Returns
    -------
    out : (N, C, OH, OW)
    cache : (input shape, input dtype, kernel, stride, padding, count_include_pad)
    """
    where = "avgpool2d_forward"
    kernel, stride, padding = pool_geometry(where, kernel_size, stride, padding)
    check_window_fits(where, x.shape, kernel, padding)
    out = _ref.avgpool2d_forward(x, kernel, stride, padding, bool(count_include_pad))
    return out, (x.shape, x.dtype, kernel, stride, padding, bool(count_include_pad))


def avgpool2d_backward(dout, cache):
    """dx[n, c, i, j] = Σ_{windows (oh, ow) ∋ (i, j)} dout[n, c, oh, ow] / D[oh, ow].

    Parameters
    ----------
    dout : (N, C, OH, OW)
    cache : from :func:`avgpool2d_forward`.

    Returns
    -------
    dx : (N, C, H, W)
    """
    shape, _, kernel, stride, padding, cip = cache
    return _ref.avgpool2d_backward(dout, shape[-2:], kernel, stride, padding, cip)


def avgpool2d_jvp(dx, cache):
    """Average pooling is linear: d out = avgpool(dx) (None means zero)."""
    shape, dtype, kernel, stride, padding, cip = cache
    if dx is None:
        N, C, H, W = shape
        OH = _ref.pool_output_size(H, kernel[0], stride[0], padding[0])
        OW = _ref.pool_output_size(W, kernel[1], stride[1], padding[1])
        return np.zeros((N, C, OH, OW), dtype=dtype)
    return _ref.avgpool2d_forward(dx, kernel, stride, padding, cip)


# ---------------------------------------------------------------------------- global max
def global_maxpool_forward(x):
    """out[n, c] = max over all spatial positions of x[n, c] (Brutzkus & Globerson 2021, Eq. (1)).

    Parameters
    ----------
    x : (N, C, *spatial), at least one spatial axis, e.g. (N, C, L) or (N, C, H, W).

    Returns
    -------
    out : (N, C)
    cache : (x, idx); idx (N, C) int64 is the winner's flat C-order spatial index (first maximum).
    """
    N, C = x.shape[:2]
    flat = x.reshape(N, C, -1)
    idx = flat.argmax(axis=-1)  # first occurrence: the first winner in C order
    out = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    return out, (x, idx)


def global_maxpool_backward(dout, cache):
    """dx[n, c, p] = dout[n, c] at the winner p = idx[n, c], 0 elsewhere.

    dout : (N, C) -> dx : (N, C, *spatial)
    """
    x, idx = cache
    N, C = x.shape[:2]
    dx = np.zeros((N, C, int(np.prod(x.shape[2:]))), dtype=dout.dtype)
    np.put_along_axis(dx, idx[..., None], dout[..., None], axis=-1)
    return dx.reshape(x.shape)


def global_maxpool_jvp(dx, cache):
    """d out[n, c] = dx[n, c, idx[n, c]] (None means zero)."""
    x, idx = cache
    if dx is None:
        return np.zeros(idx.shape, dtype=x.dtype)
    flat = dx.reshape(idx.shape + (-1,))
    return np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]


def global_maxpool_margin(cache):
    """Smallest gap between the max and the runner-up of any (n, c) (+∞ with one position)."""
    x, _ = cache
    N, C = x.shape[:2]
    flat = x.reshape(N, C, -1)
    S = flat.shape[-1]
    if S < 2 or flat.size == 0:
        return float("inf")
    top2 = np.partition(flat, S - 2, axis=-1)[..., S - 2:]
    return float((top2[..., 1] - top2[..., 0]).min())


# ---------------------------------------------------------------------------- global average
def kohler_index_set(d1, d2, kappa):
    """Boolean (d1, d2) mask of I_κ, the positions the Kohler network average-pools over.

    Kohler, Krzyżak & Walter 2024 (arXiv 2405.07619), average-pooling model and the final global
    average pooling of their CNN: I_κ = {1, …, d₁−κ+1} × {1, …, d₂−κ+1} (1-based), the top-left
    pixels of the κ×κ subimages that fit inside the d₁×d₂ image; 0-based, rows 0..d₁−κ and
    columns 0..d₂−κ. |I_κ| = (d₁−κ+1)(d₂−κ+1). κ is the receptive field 1 + Σ_r (M_r − 1).

    (R) Reconstructed: the pooling set is our reading of the paper (PAPERS.md, Sec. 4). The
    alternative, averaging over all of D, is ``GlobalAvgPool(region=None)``.

    Use: ``GlobalAvgPool(region=kohler_index_set(d1, d2, kappa))``.
    """
    where = "kohler_index_set"
    for name, v in (("d1", d1), ("d2", d2), ("kappa", kappa)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{where}: {name} must be a positive integer, got {v!r}")
    if kappa > min(d1, d2):
        raise ValueError(f"{where}: kappa must be at most min(d1, d2) = {min(d1, d2)}, got {kappa}")
    mask = np.zeros((int(d1), int(d2)), dtype=bool)
    mask[:d1 - kappa + 1, :d2 - kappa + 1] = True
    return mask


def _as_region(where, region):
    """Normalise a region: None, a tuple of slices, or a non-empty boolean mask (copied)."""
    if region is None:
        return None
    if isinstance(region, slice):
        return (region,)
    if isinstance(region, tuple) and all(isinstance(s, slice) for s in region):
        return region
    mask = np.asarray(region) if isinstance(region, (np.ndarray, list)) else None
    if mask is None or mask.dtype != np.bool_:
        got = type(region).__name__ if mask is None else f"an array of dtype {mask.dtype}"
        raise TypeError(
            f"{where}: region must be None (all positions), a boolean mask of the spatial shape "
            f"or a tuple of slices, got {got}"
        )
    if not mask.any():
        raise ValueError(f"{where}: region mask selects no position; the average would be empty")
    return mask.copy()


def region_mask(where, region, spatial):
    """The boolean mask of ``spatial`` shape selected by ``region`` (None -> None = all positions)."""
    region = _as_region(where, region)
    if region is None:
        return None
    spatial = tuple(spatial)
    if isinstance(region, tuple):
        if len(region) != len(spatial):
            raise ValueError(
                f"{where}: region has {len(region)} slices but the input has {len(spatial)} "
                f"spatial axes {spatial}; give one slice per spatial axis"
            )
        mask = np.zeros(spatial, dtype=bool)
        mask[region] = True
        if not mask.any():
            raise ValueError(f"{where}: region {region} selects no position of the spatial shape {spatial}")
        return mask
    if region.shape != spatial:
        raise ValueError(f"{where}: region mask has shape {region.shape}, the input's spatial shape is {spatial}")
    return region


def global_avgpool_forward(x, region=None):
    """out[n, c] = (1/|R|) Σ_{p ∈ R} x[n, c, p].

    R is every spatial position (region None) or the positions a boolean mask / tuple of slices
    selects; Kohler, Krzyżak & Walter 2024 pool over R = I_κ (:func:`kohler_index_set`).

    Parameters
    ----------
    x : (N, C, *spatial), at least one spatial axis.
    region : None, a boolean mask of shape ``spatial``, or a tuple of slices (one per spatial axis).

    Returns
    -------
    out : (N, C)
    cache : (input shape, input dtype, flat indices of R or None, |R|)

    A region runs the Numba kernels :func:`refnets.kernels.pool_numba.region_mean_forward` /
    ``region_mean_backward`` (one pass over R, summed in float64), the ones Kohler et al.'s model uses.
    """
    N, C = x.shape[:2]
    mask = region_mask("global_avgpool_forward", region, x.shape[2:])
    flat = x.reshape(N, C, -1)
    if mask is None:
        return flat.mean(axis=-1), (x.shape, x.dtype, None, flat.shape[-1])
    pos = np.flatnonzero(mask.ravel())
    return _region_mean(flat, pos), (x.shape, x.dtype, pos, pos.size)


def _region_mean(flat, pos):
    """(1/|R|) Σ_{p ∈ R} flat[n, c, p]: flat (N, C, S), pos the flat indices of R -> (N, C)."""
    from ..kernels import pool_numba  # imported on first use: Numba is slow to import
    N, C, S = flat.shape
    return pool_numba.region_mean_forward(flat.reshape(N * C, S), pos).reshape(N, C)


def global_avgpool_backward(dout, cache):
    """dx[n, c, p] = dout[n, c] / |R| for p ∈ R, 0 elsewhere.

    dout : (N, C) -> dx : (N, C, *spatial)
    """
    shape, _, pos, count = cache
    N, C = shape[:2]
    S = int(np.prod(shape[2:]))
    if pos is None:
        dx = np.empty((N, C, S), dtype=dout.dtype)
        dx[...] = (dout / count).astype(dout.dtype, copy=False)[..., None]
        return dx.reshape(shape)
    from ..kernels import pool_numba
    return pool_numba.region_mean_backward(dout.reshape(N * C), pos, S).reshape(shape)


def global_avgpool_jvp(dx, cache):
    """Linear: d out[n, c] = (1/|R|) Σ_{p ∈ R} dx[n, c, p] (None means zero)."""
    shape, dtype, pos, count = cache
    if dx is None:
        return np.zeros(shape[:2], dtype=dtype)
    flat = dx.reshape(shape[0], shape[1], -1)
    return flat.mean(axis=-1) if pos is None else _region_mean(flat, pos)


# ---------------------------------------------------------------------------- layers
class _Pool2d(Layer):
    ndim = 4
    layout = "(N, C, H, W)"

    def __init__(self, kernel_size, stride=None, padding=0, name=None):
        super().__init__(name)
        self.kernel_size, self.stride, self.padding = pool_geometry(self.name, kernel_size, stride, padding)

    def check_input(self, x):
        super().check_input(x)
        check_window_fits(self.name, x.shape, self.kernel_size, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """2-D max pooling (see :func:`maxpool2d_forward`).

    Parameters
    ----------
    kernel_size : int or (kh, kw)
    stride : int, (sh, sw) or None (= kernel_size)
    padding : int or (ph, pw), at most kernel_size // 2; padded positions are −∞ and never win.
    backend : "numba" (default) or "numpy"; bit-identical results.

    Shapes: x (N, C, H, W) -> out (N, C, OH, OW), OH = ⌊(H + 2ph − kh)/sh⌋ + 1 (same for W).
    No parameters. Ties send the gradient to the first maximum in row-major scan order of the
    window (as PyTorch's CPU kernel); :meth:`max_margin` tells a gradient checker how far the
    last input is from a tie.
    """

    smooth = False

    def __init__(self, kernel_size, stride=None, padding=0, backend="numba", name=None):
        super().__init__(kernel_size, stride, padding, name)
        _check_backend(self.name, backend)
        self.backend = backend

    def _forward(self, x):
        return maxpool2d_forward(x, self.kernel_size, self.stride, self.padding, self.backend)

    def _backward(self, dout, cache):
        return maxpool2d_backward(dout, cache), {}

    def _jvp(self, dx, dparams, cache):
        return maxpool2d_jvp(dx, cache)

    def max_margin(self) -> float:
        """Smallest gap between a window's winner and its runner-up in the last forward.

        0 means an exact tie somewhere (the gradient there is the documented one-sided choice);
        +∞ means no window holds two real pixels. Perturbing any input by less than the margin
        changes no winner, so central differences with step h < margin are exact (to rounding);
        with h ≥ margin a difference may straddle a kink: report it as KINK, not as a failure.
        """
        self._need_forward("max_margin")
        return maxpool2d_margin(self.cache)


class AvgPool2d(_Pool2d):
    """2-D average pooling (see :func:`avgpool2d_forward`).

    Parameters
    ----------
    kernel_size, stride, padding : as :class:`MaxPool2d` (zero padding).
    count_include_pad : bool
        Divide by kh·kw (True, PyTorch's default) or by the number of real pixels in the window.

    Shapes: x (N, C, H, W) -> out (N, C, OH, OW). No parameters. Linear, hence smooth.
    """

    smooth = True

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True, name=None):
        super().__init__(kernel_size, stride, padding, name)
        self.count_include_pad = bool(count_include_pad)

    def _forward(self, x):
        return avgpool2d_forward(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def _backward(self, dout, cache):
        return avgpool2d_backward(dout, cache), {}

    def _jvp(self, dx, dparams, cache):
        return avgpool2d_jvp(dx, cache)

    def extra_repr(self):
        return super().extra_repr() + f", count_include_pad={self.count_include_pad}"


class _GlobalPool(Layer):
    layout = "(N, C, *spatial)"

    def check_input(self, x):
        check_input(self.name, x, None, self.layout, self.dtype)
        if x.ndim < 3:
            raise ValueError(
                f"{self.name}: input must have ndim >= 3 {self.layout} (e.g. (N, C, L) or (N, C, H, W)), "
                f"got ndim {x.ndim} with shape {x.shape}"
            )
        if 0 in x.shape[2:]:
            raise ValueError(f"{self.name}: input has an empty spatial axis, shape {x.shape}; nothing to pool")


class GlobalMaxPool(_GlobalPool):
    """out[n, c] = max_p x[n, c, p] over all spatial positions p: (N, C, *spatial) -> (N, C).

    The max-pooling over the n positions of Brutzkus & Globerson 2021, Eq. (1). Ties send the
    gradient to the first maximum in C order of the spatial positions (as PyTorch's
    ``adaptive_max_pool*d(x, 1)``); :meth:`max_margin` reports the distance to a tie.
    """

    smooth = False

    def _forward(self, x):
        return global_maxpool_forward(x)

    def _backward(self, dout, cache):
        return global_maxpool_backward(dout, cache), {}

    def _jvp(self, dx, dparams, cache):
        return global_maxpool_jvp(dx, cache)

    def max_margin(self) -> float:
        """Smallest gap between the max and the runner-up of any (n, c) in the last forward
        (0: a tie; +∞: a single spatial position). Central differences with step h < margin are
        exact to rounding; h ≥ margin may straddle a kink."""
        self._need_forward("max_margin")
        return global_maxpool_margin(self.cache)


class GlobalAvgPool(_GlobalPool):
    """out[n, c] = mean of x[n, c, p] over p ∈ R: (N, C, *spatial) -> (N, C).

    Parameters
    ----------
    region : None, boolean mask or tuple of slices
        R = all spatial positions (None), the True entries of a mask of the spatial shape, or the
        positions a tuple of slices selects (one slice per spatial axis). Kohler, Krzyżak & Walter
        2024 pool over I_κ: ``GlobalAvgPool(region=kohler_index_set(d1, d2, kappa))`` (R); the
        alternative they leave open, all of D, is ``region=None``.
    """

    smooth = True

    def __init__(self, region=None, name=None):
        super().__init__(name)
        self.region = _as_region(self.name, region)

    def check_input(self, x):
        super().check_input(x)
        region_mask(self.name, self.region, x.shape[2:])

    def _forward(self, x):
        return global_avgpool_forward(x, self.region)

    def _backward(self, dout, cache):
        return global_avgpool_backward(dout, cache), {}

    def _jvp(self, dx, dparams, cache):
        return global_avgpool_jvp(dx, cache)

    def extra_repr(self):
        if self.region is None:
            return ""
        if isinstance(self.region, tuple):
            return f"region={self.region}"
        return f"region=mask{self.region.shape} with {int(self.region.sum())} positions"
