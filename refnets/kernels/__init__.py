"""Compute kernels: each operation as a plain NumPy reference (``*_reference``) and a fast Numba
version (``*_numba``) tested equal to it.

The ``*_kernel`` functions below are the dispatch API the layers call: they check the dtypes
(float32 or float64, all arrays alike), make the arrays contiguous and run the Numba kernels,
choosing the strategy (im2col + GEMM, direct loops or Winograd F(2×2, 3×3)) unless one is given.
Geometry is passed normalised: stride and dilation as pairs, padding as (top, bottom, left, right).
"""
from __future__ import annotations

import numpy as np

from . import conv_numba, conv_reference
from .conv_numba import choose_strategy
from .conv_reference import conv_output_size

__all__ = [
    "conv2d_forward_kernel", "conv2d_backward_kernel", "conv2d_grad_input_kernel",
    "conv2d_grad_weight_kernel", "conv2d_grad_bias_kernel", "im2col_kernel", "choose_strategy",
    "conv_output_size", "conv_numba", "conv_reference",
]


def _check(where, *arrays):
    dt = None
    for a in arrays:
        if a is None:
            continue
        if not isinstance(a, np.ndarray) or a.dtype.type not in (np.float32, np.float64):
            what = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"{where}: arrays must be float32 or float64 ndarrays, got {what}")
        if dt is None:
            dt = a.dtype
        elif a.dtype != dt:
            raise TypeError(f"{where}: arrays must share one dtype, got {dt} and {a.dtype}")


def _geom(stride, padding, dilation, groups):
    s = tuple(int(v) for v in stride)
    p = tuple(int(v) for v in padding)
    d = tuple(int(v) for v in dilation)
    if len(s) != 2 or len(d) != 2 or len(p) != 4 or min(s + d) < 1 or min(p) < 0 or int(groups) < 1:
        raise ValueError(f"conv kernel: need stride and dilation pairs >= 1, padding (top, bottom, left, "
                         f"right) >= 0 and groups >= 1; got {stride}, {padding}, {dilation}, {groups}")
    return s, p, d, int(groups)


def conv2d_forward_kernel(x, W, b, stride, padding, dilation, groups, strategy=None):
    """out (N, C_out, H_out, W_out) = W ⋆ x + b; x (N, C_in, H, W), W (C_out, C_in/G, kh, kw), b (C_out,) or None."""
    _check("conv2d_forward_kernel", x, W, b)
    return conv_numba.conv2d_forward(x, W, b, *_geom(stride, padding, dilation, groups), strategy=strategy)


def conv2d_backward_kernel(dout, x, W, stride, padding, dilation, groups, need_dx=True, need_dw=True,
                           strategy=None):
    """(dx, dW, db) of ⟨dout, W ⋆ x + b⟩ in one pass; dx or dW is None when not needed."""
    _check("conv2d_backward_kernel", dout, x, W)
    return conv_numba.conv2d_backward(dout, x, W, *_geom(stride, padding, dilation, groups),
                                      need_dx=need_dx, need_dw=need_dw, strategy=strategy)


def conv2d_grad_input_kernel(dout, W, x_shape, stride, padding, dilation, groups, strategy=None):
    """dx (N, C_in, H, W) of ⟨dout, W ⋆ x⟩."""
    _check("conv2d_grad_input_kernel", dout, W)
    return conv_numba.conv2d_grad_input(dout, W, tuple(x_shape), *_geom(stride, padding, dilation, groups),
                                        strategy=strategy)


def conv2d_grad_weight_kernel(dout, x, w_shape, stride, padding, dilation, groups, strategy=None):
    """dW (C_out, C_in/G, kh, kw) of ⟨dout, W ⋆ x⟩."""
    _check("conv2d_grad_weight_kernel", dout, x)
    return conv_numba.conv2d_grad_weight(dout, x, tuple(w_shape), *_geom(stride, padding, dilation, groups),
                                         strategy=strategy)


def conv2d_grad_bias_kernel(dout):
    """db (C_out,) = Σ_{n, y, x} dout[n, :, y, x]."""
    _check("conv2d_grad_bias_kernel", dout)
    return conv_numba.conv2d_grad_bias(dout)


def im2col_kernel(x, kh, kw, stride, padding, dilation):
    """Patch matrix (C·kh·kw, N, H_out·W_out) of x (N, C, H, W); row (c·kh + i)·kw + j."""
    _check("im2col_kernel", x)
    s, p, d, _ = _geom(stride, padding, dilation, 1)
    return conv_numba.im2col(x, int(kh), int(kw), s, p, d)
