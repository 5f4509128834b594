"""Plain NumPy reference kernels for 2-D max and average pooling (NCHW).

Read these to learn the operations; :mod:`refnets.kernels.pool_numba` holds the fast max-pool
kernels and is tested equal to these bit for bit (outputs, winner indices and gradients).

Geometry (PyTorch's, ``ceil_mode=False``, no dilation). Input x of shape (N, C, H, W), window
(kh, kw), stride (sh, sw), zero-or-more padding (ph, pw) on each side:

    OH = ⌊(H + 2·ph − kh) / sh⌋ + 1,    OW = ⌊(W + 2·pw − kw) / sw⌋ + 1,

and output pixel (oh, ow) looks at the input rows oh·sh − ph … oh·sh − ph + kh − 1 and the
columns ow·sw − pw … ow·sw − pw + kw − 1 (rows/columns outside 0..H−1 / 0..W−1 are padding).

Conventions shared by both kernel modules
-----------------------------------------
* Max pooling pads with −∞: a padded position never wins (PyTorch's behaviour), so the output
  is the max over the real pixels of the window.
* The winner of a window is the **first maximum in row-major scan order** of the window (the
  order in which PyTorch's CPU kernel scans, which keeps its first strict maximum). The winner is
  returned as ``argmax``: its flat index i·W + j into the unpadded H×W plane (PyTorch's
  ``return_indices`` convention).
* Max-pool backward scatter-**adds** dout into the winners: with overlapping windows
  (stride < window) one pixel can win several windows and its gradient is the sum.
* Average pooling pads with zeros; ``count_include_pad=True`` (PyTorch's default) divides by
  kh·kw, ``False`` by the number of real pixels in the window.
* The callers validate the geometry (padding ≤ window // 2 per side, window ≤ padded input);
  these kernels assume it. Inputs are expected finite (the layers check); a NaN in a window wins
  it (first NaN in scan order) and propagates.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pool_output_size(size: int, k: int, s: int, p: int) -> int:
    """⌊(size + 2p − k)/s⌋ + 1 (PyTorch, ceil_mode=False); ≤ 0 means the window does not fit."""
    return (size + 2 * p - k) // s + 1


def _windows(a, kernel, stride):
    """View (..., OH, OW, kh, kw) of the strided windows over the last two axes of padded ``a``."""
    kh, kw = kernel
    sh, sw = stride
    return sliding_window_view(a, (kh, kw), axis=(-2, -1))[..., ::sh, ::sw, :, :]


def _pad_hw(x, padding, value):
    ph, pw = padding
    pad = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    return np.pad(x, pad, mode="constant", constant_values=value)


def _real_mask_windows(H, W, kernel, stride, padding):
    """(OH, OW, kh·kw) booleans: True where the window position is a real pixel, not padding."""
    real = _pad_hw(np.ones((H, W), dtype=bool), padding, False)
    w = _windows(real, kernel, stride)
    return w.reshape(w.shape[0], w.shape[1], -1)


def maxpool2d_forward(x, kernel, stride, padding):
    """Max pooling with winner bookkeeping.

        out[n, c, oh, ow] = max_{0≤a<kh, 0≤b<kw} x̃[n, c, oh·sh + a, ow·sw + b],

    x̃ = x padded by (ph, pw) with −∞.

    Parameters
    ----------
    x : (N, C, H, W) float array.
    kernel, stride, padding : pairs of ints (kh, kw), (sh, sw), (ph, pw).

    Returns
    -------
    out : (N, C, OH, OW), dtype of x.
    argmax : (N, C, OH, OW) int64, flat index i·W + j of each window's winner in the H×W plane
        (first maximum in row-major scan order of the window; never a padded position).
    """
    N, C, H, W = x.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    xp = _pad_hw(x, padding, -np.inf)
    win = _windows(xp, kernel, stride)
    OH, OW = win.shape[2], win.shape[3]
    win = win.reshape(N, C, OH, OW, kh * kw)
    real = _real_mask_windows(H, W, kernel, stride, padding)
    m = win.max(axis=-1, keepdims=True)
    # Candidates: real positions holding the max (or NaN, which wins and propagates).
    # argmax over booleans returns the first True: the first winner in row-major scan order.
    cand = real & ((win == m) | np.isnan(win))
    k = cand.argmax(axis=-1)
    out = np.take_along_axis(win, k[..., None], axis=-1)[..., 0]
    kr, kc = np.divmod(k, kw)
    rows = (np.arange(OH) * sh - ph)[:, None] + kr
    cols = (np.arange(OW) * sw - pw)[None, :] + kc
    argmax = (rows * W + cols).astype(np.int64)
    return out, argmax


def maxpool2d_backward(dout, argmax, input_hw):
    """dx = scatter-add of dout into the winners.

        dx[n, c, i, j] = Σ_{(oh, ow) : argmax[n, c, oh, ow] = i·W + j} dout[n, c, oh, ow]

    Accumulates (np.add.at), so a pixel that wins several overlapping windows gets the sum; the
    additions into one pixel run in row-major order of (oh, ow).

    Parameters
    ----------
    dout : (N, C, OH, OW)
    argmax : (N, C, OH, OW) int64 from :func:`maxpool2d_forward`.
    input_hw : (H, W)

    Returns
    -------
    dx : (N, C, H, W), dtype of dout.
    """
    N, C = dout.shape[:2]
    H, W = input_hw
    dx = np.zeros((N, C, H * W), dtype=dout.dtype)
    n_idx = np.arange(N)[:, None, None, None]
    c_idx = np.arange(C)[None, :, None, None]
    np.add.at(dx, (n_idx, c_idx, argmax), dout)
    return dx.reshape(N, C, H, W)


def maxpool2d_margin(x, kernel, stride, padding):
    """Smallest gap, over all windows, between the window's max and its runner-up.

    The runner-up is the largest real pixel other than the winner (ties give gap 0). A window with a
    single real pixel has no runner-up and gap +∞; so has an empty batch. A central difference with
    step h on any input pixel cannot change any window's winner when h < this margin, so max
    pooling is exactly linear there; h ≥ margin may straddle a kink.

    Returns
    -------
    float (python), ≥ 0 or +∞.
    """
    N, C, H, W = x.shape
    kh, kw = kernel
    out, argmax = maxpool2d_forward(x, kernel, stride, padding)
    xp = _pad_hw(x, padding, -np.inf)
    win = _windows(xp, kernel, stride)
    OH, OW = win.shape[2], win.shape[3]
    win = win.reshape(N, C, OH, OW, kh * kw).copy()
    # Knock the winner out (its window slot), then the max of the rest is the runner-up.
    sh, sw = stride
    ph, pw = padding
    i, j = np.divmod(argmax, W)
    a = i - (np.arange(OH) * sh - ph)[:, None]
    b = j - (np.arange(OW) * sw - pw)[None, :]
    np.put_along_axis(win, (a * kw + b)[..., None], -np.inf, axis=-1)
    second = win.max(axis=-1)
    gap = out - second  # finite − (−∞) = +∞: a lone real pixel has no runner-up
    return float(gap.min()) if gap.size else float("inf")


def avgpool2d_divisor(input_hw, kernel, stride, padding, count_include_pad=True):
    """(OH, OW) divisors: kh·kw with count_include_pad, else the number of real pixels per window."""
    H, W = input_hw
    kh, kw = kernel
    real = _real_mask_windows(H, W, kernel, stride, padding)
    if count_include_pad:
        return np.full(real.shape[:2], kh * kw, dtype=np.int64)
    return real.sum(axis=-1).astype(np.int64)


def avgpool2d_forward(x, kernel, stride, padding, count_include_pad=True):
    """Average pooling.

        out[n, c, oh, ow] = (1/D[oh, ow]) Σ_{0≤a<kh, 0≤b<kw} x̃[n, c, oh·sh + a, ow·sw + b],

    x̃ = x zero-padded by (ph, pw); D = kh·kw (count_include_pad) or the count of real pixels.

    Parameters
    ----------
    x : (N, C, H, W)
    kernel, stride, padding : pairs of ints.
    count_include_pad : bool

    Returns
    -------
    out : (N, C, OH, OW), dtype of x.
    """
    H, W = x.shape[-2:]
    xp = _pad_hw(x, padding, 0)
    s = _windows(xp, kernel, stride).sum(axis=(-2, -1))
    div = avgpool2d_divisor((H, W), kernel, stride, padding, count_include_pad)
    return (s / div).astype(x.dtype, copy=False)


def avgpool2d_backward(dout, input_hw, kernel, stride, padding, count_include_pad=True):
    """dx[n, c, i, j] = Σ_{windows (oh, ow) containing (i, j)} dout[n, c, oh, ow] / D[oh, ow].

    Accumulates into a zero-padded buffer, one window offset (a, b) at a time, then crops the
    padding off with explicit start/stop indices (correct for padding 0 as well).

    Parameters
    ----------
    dout : (N, C, OH, OW)
    input_hw : (H, W)
    kernel, stride, padding : pairs of ints.

    Returns
    -------
    dx : (N, C, H, W), dtype of dout.
    """
    H, W = input_hw
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    N, C, OH, OW = dout.shape
    div = avgpool2d_divisor(input_hw, kernel, stride, padding, count_include_pad)
    g = (dout / div).astype(dout.dtype, copy=False)
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dout.dtype)
    for a in range(kh):
        for b in range(kw):
            dxp[:, :, a:a + sh * (OH - 1) + 1:sh, b:b + sw * (OW - 1) + 1:sw] += g
    return dxp[:, :, ph:ph + H, pw:pw + W].copy()


# ====================================================== global average over a set of positions
def region_mean_forward(x, positions):
    """out[r] = (1/|R|) Σ_{p ∈ R} x[r, p]: the mean of each row over the flat positions R.

    The global average pooling of Kohler, Krzyżak & Walter 2024 (over R = I_κ), with the N·C planes
    flattened to rows: x (rows, S) -> out (rows,); positions: int array of the |R| flat indices.
    The sum runs in float64, left to right over R in the order given (the Numba kernel's order),
    and is cast back to x's dtype.
    """
    x = np.asarray(x)
    total = np.zeros(x.shape[0], dtype=np.float64)
    for p in np.asarray(positions):
        total += x[:, p]
    return (total / len(positions)).astype(x.dtype)


def region_mean_backward(dout, positions, size):
    """dx[r, p] = dout[r] / |R| for p ∈ R, 0 elsewhere: dout (rows,) -> dx (rows, size)."""
    dout = np.asarray(dout)
    dx = np.zeros((dout.shape[0], int(size)), dtype=dout.dtype)
    dx[:, np.asarray(positions)] = (dout / len(positions))[:, None]
    return dx
