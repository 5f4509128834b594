"""Plain NumPy reference kernels for 2-D cross-correlation ("convolution" in deep learning), NCHW.

Read these to learn the operation; :mod:`refnets.kernels.conv_numba` holds the fast kernels and is
tested equal to these (1e-12 relative in float64).

Geometry (PyTorch's semantics). Input x of shape (N, C_in, H, W), weights W of shape
(C_out, C_in/G, kh, kw) for G groups, stride (sh, sw), dilation (dh, dw), zero padding given
**per side** as (pt, pb, pl, pr) = (top, bottom, left, right):

    H_out = ⌊(H + pt + pb − dh·(kh − 1) − 1) / sh⌋ + 1,
    W_out = ⌊(W + pl + pr − dw·(kw − 1) − 1) / sw⌋ + 1,

    out[n, o, y, x] = Σ_{c ∈ group(o)} Σ_{i<kh} Σ_{j<kw} W[o, c − c₀(o), i, j] · x̃[n, c, y·sh + i·dh, x·sw + j·dw]

where x̃ is x padded with zeros (pt rows on top, pb below, pl columns on the left, pr on the right)
and the output channels o of group g (o ∈ [g·C_out/G, (g+1)·C_out/G)) see only the input
channels c ∈ [g·C_in/G, (g+1)·C_in/G) = [c₀(o), c₀(o) + C_in/G).

im2col. Everything is written through the patch matrix ("im2col"): for kernel tap (i, j) the
slice x̃[:, :, i·dh : … : sh, j·dw : … : sw] of shape (N, C, H_out, W_out) holds, at each output
pixel, the input value that tap multiplies. Stacking the kh·kw slices gives
cols (N, C, kh, kw, H_out, W_out); per group it is a (C_in/G·kh·kw) × (H_out·W_out) matrix X_n per
sample, and the convolution is one matrix product per group, out_n = W_g X_n. Then

    ∂⟨dout, out⟩/∂W_g = Σ_n dout_n X_nᵀ,    ∂⟨dout, out⟩/∂X_n = W_gᵀ dout_n,

and col2im adds each tap's slice of ∂/∂X back at the positions it was read from (a position read
by several taps receives the sum), then crops the padding away. The loops run over the kh·kw
kernel taps, never over pixels.

These kernels compute the bare cross-correlation (plus a bias in the forward); the layer
(:mod:`refnets.layers.conv`) adds its fixed multiplier and checks the input. They assume valid
geometry: non-negative padding, every size ≥ 1 and the dilated kernel no larger than the padded
input.
"""
from __future__ import annotations

import numpy as np


def conv_output_size(size: int, k: int, stride: int, pad_before: int, pad_after: int, dilation: int) -> int:
    """⌊(size + pad_before + pad_after − dilation·(k − 1) − 1) / stride⌋ + 1; < 1 means the kernel does not fit."""
    return (size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def pad_input(x, padding):
    """x (N, C, H, W) -> x̃ (N, C, pt + H + pb, pl + W + pr), zeros in the border."""
    pt, pb, pl, pr = padding
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def im2col(x, kh, kw, stride, padding, dilation):
    """The patch tensor of x.

    Parameters
    ----------
    x : (N, C, H, W)
    kh, kw : kernel size.
    stride, dilation : pairs (along H, along W).
    padding : (pt, pb, pl, pr).

    Returns
    -------
    cols : (N, C, kh, kw, H_out, W_out), cols[n, c, i, j, y, x] = x̃[n, c, y·sh + i·dh, x·sw + j·dw].
    """
    (sh, sw), (dh, dw) = stride, dilation
    N, C, H, W = x.shape
    pt, pb, pl, pr = padding
    Ho = conv_output_size(H, kh, sh, pt, pb, dh)
    Wo = conv_output_size(W, kw, sw, pl, pr, dw)
    xp = pad_input(x, padding)
    cols = np.empty((N, C, kh, kw, Ho, Wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            cols[:, :, i, j] = xp[:, :, r0:r0 + sh * (Ho - 1) + 1:sh, c0:c0 + sw * (Wo - 1) + 1:sw]
    return cols


def col2im(dcols, x_shape, stride, padding, dilation):
    """The adjoint of :func:`im2col`: add every tap's slice back where it was read, crop the padding.

    Parameters
    ----------
    dcols : (N, C, kh, kw, H_out, W_out)
    x_shape : (N, C, H, W)

    Returns
    -------
    dx : (N, C, H, W)
    """
    (sh, sw), (dh, dw) = stride, dilation
    N, C, H, W = x_shape
    pt, pb, pl, pr = padding
    kh, kw, Ho, Wo = dcols.shape[2:]
    dxp = np.zeros((N, C, H + pt + pb, W + pl + pr), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            dxp[:, :, r0:r0 + sh * (Ho - 1) + 1:sh, c0:c0 + sw * (Wo - 1) + 1:sw] += dcols[:, :, i, j]
    return dxp[:, :, pt:pt + H, pl:pl + W].copy()


def _grouped_cols(x, w_shape, stride, padding, dilation, groups):
    """im2col per group as matrices: (N, G, C_in/G·kh·kw, H_out·W_out), plus (H_out, W_out)."""
    kh, kw = w_shape[2:]
    cols = im2col(x, kh, kw, stride, padding, dilation)
    N, C, _, _, Ho, Wo = cols.shape
    return cols.reshape(N, groups, (C // groups) * kh * kw, Ho * Wo), (Ho, Wo)


def conv2d_forward(x, W, b, stride, padding, dilation, groups):
    """out = W ⋆ x + b (cross-correlation, see the module docstring).

    Parameters
    ----------
    x : (N, C_in, H, W)
    W : (C_out, C_in/G, kh, kw)
    b : (C_out,) or None
    stride, dilation : pairs; padding : (pt, pb, pl, pr); groups : G.

    Returns
    -------
    out : (N, C_out, H_out, W_out)
    """
    N = x.shape[0]
    Co = W.shape[0]
    X, (Ho, Wo) = _grouped_cols(x, W.shape, stride, padding, dilation, groups)
    Wg = W.reshape(groups, Co // groups, -1)              # (G, C_out/G, C_in/G·kh·kw)
    out = np.matmul(Wg, X)                                # (N, G, C_out/G, H_out·W_out)
    out = out.reshape(N, Co, Ho, Wo)
    if b is not None:
        out += b[:, None, None]
    return out


def conv2d_grad_input(dout, W, x_shape, stride, padding, dilation, groups):
    """∂⟨dout, W ⋆ x⟩/∂x.

    Parameters
    ----------
    dout : (N, C_out, H_out, W_out)
    W : (C_out, C_in/G, kh, kw)
    x_shape : (N, C_in, H, W)

    Returns
    -------
    dx : (N, C_in, H, W)
    """
    N, Co, Ho, Wo = dout.shape
    C = x_shape[1]
    kh, kw = W.shape[2:]
    Wg = W.reshape(groups, Co // groups, -1)
    D = dout.reshape(N, groups, Co // groups, Ho * Wo)
    dX = np.matmul(Wg.transpose(0, 2, 1), D)              # (N, G, C_in/G·kh·kw, H_out·W_out)
    return col2im(dX.reshape(N, C, kh, kw, Ho, Wo), x_shape, stride, padding, dilation)


def conv2d_grad_weight(dout, x, w_shape, stride, padding, dilation, groups):
    """∂⟨dout, W ⋆ x⟩/∂W = Σ_n dout_n X_nᵀ per group.

    Parameters
    ----------
    dout : (N, C_out, H_out, W_out)
    x : (N, C_in, H, W)
    w_shape : (C_out, C_in/G, kh, kw)

    Returns
    -------
    dW : (C_out, C_in/G, kh, kw)
    """
    N, Co, Ho, Wo = dout.shape
    X, _ = _grouped_cols(x, w_shape, stride, padding, dilation, groups)
    D = dout.reshape(N, groups, Co // groups, Ho * Wo)
    dW = np.matmul(D, X.transpose(0, 1, 3, 2)).sum(axis=0)   # (G, C_out/G, C_in/G·kh·kw)
    return dW.reshape(w_shape)


def conv2d_grad_bias(dout):
    """∂⟨dout, out⟩/∂b = Σ_{n, y, x} dout[n, :, y, x]; dout (N, C_out, H_out, W_out) -> (C_out,)."""
    return dout.sum(axis=(0, 2, 3))
