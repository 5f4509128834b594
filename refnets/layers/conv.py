"""Convolution layers (cross-correlation, PyTorch semantics), 2-D on NCHW and 1-D on (N, C, L).

    out[n, o, y, x] = s · Σ_{c ∈ group(o)} Σ_{i<kh, j<kw} W[o, c − c₀(o), i, j] · x̃[n, c, y·sh + i·dh, x·sw + j·dw] + b[o]

x̃ is x zero-padded with pt rows on top, pb at the bottom, pl columns on the left and pr on the
right; with G groups, output channel o sees only the C_in/G input channels of its group. Sizes:

    H_out = ⌊(H + pt + pb − dh·(kh − 1) − 1) / sh⌋ + 1,    W_out = ⌊(W + pl + pr − dw·(kw − 1) − 1) / sw⌋ + 1.

The fixed multiplier ``s`` (not trained) is how the papers write their scalings, as in
:class:`refnets.layers.Dense`: √(c_σ/m) and c_res/(H√m) in Du et al. 2019 Eq. (3).

Where the papers meet this layer
--------------------------------
* Du et al. 2019 Eq. (3): W⁽ʰ⁾φ_h(x) is :class:`Conv1d` with kernel q, stride 1, "same" padding,
  no bias (see :func:`patches1d` for φ_h itself).
* Kohler et al. 2024: a filter anchored at its top-left tap that keeps the image size is
  ``padding="bottom_right"`` (zeros only below and to the right); their K_n parallel CNNs are one
  grouped convolution (``groups=K_n``).

The arithmetic runs in :mod:`refnets.kernels` (Numba; im2col + BLAS GEMM for channel-heavy layers,
direct loops for few channels per group); :mod:`refnets.kernels.conv_reference` is the readable
NumPy version of the same three operations (forward, gradient wrt input, gradient wrt weights).
"""
from __future__ import annotations

import numpy as np

from .. import init as _init
from .._validate import check_axis, pair, positive_int
from ..kernels import (conv2d_backward_kernel, conv2d_forward_kernel, conv_numba, conv_output_size,
                       im2col_kernel)
from .base import Layer, as_rng, param_grads_enabled, weight_grads

PADDING_MODES = ("same", "valid", "bottom_right")


# ------------------------------------------------------------------------------ geometry
def resolve_padding(where, padding, kernel_size, stride=(1, 1), dilation=(1, 1)):
    """Any accepted padding -> (top, bottom, left, right).

    Accepted: an int p (p on every side); a pair (ph, pw) (ph rows on top and bottom, pw columns
    left and right); a 4-tuple (top, bottom, left, right) — note that ``torch.nn.functional.pad``
    orders the sides (left, right, top, bottom) —; ``"valid"`` (no padding); ``"same"`` (stride 1
    only: total d·(k−1) per axis, the odd one extra at the bottom/right, as PyTorch); and
    ``"bottom_right"`` (Kohler et al. 2024: dh·(kh−1) rows at the bottom and dw·(kw−1) columns at
    the right, so the filter is anchored at its top-left tap and, at stride 1, the output keeps
    the input size).
    """
    kh, kw = kernel_size
    dh, dw = dilation
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            if tuple(stride) != (1, 1):
                raise ValueError(f"{where}: padding='same' needs stride 1 (as in PyTorch), got stride {tuple(stride)}")
            th, tw = dh * (kh - 1), dw * (kw - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        if mode == "bottom_right":
            return (0, dh * (kh - 1), 0, dw * (kw - 1))
        raise ValueError(f"{where}: padding must be an int, a pair, a 4-tuple (top, bottom, left, right) "
                         f"or one of {PADDING_MODES}, got {padding!r}")
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, (bool, np.bool_)):
        padding = (padding,) * 4
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        padding = (padding[0], padding[0], padding[1], padding[1])
    if not (isinstance(padding, (tuple, list)) and len(padding) == 4 and all(
            isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_)) for p in padding)):
        raise ValueError(f"{where}: padding must be an int, a pair, a 4-tuple (top, bottom, left, right) "
                         f"or one of {PADDING_MODES}, got {padding!r}")
    if min(padding) < 0:
        raise ValueError(f"{where}: padding must be >= 0, got {tuple(padding)}")
    return tuple(int(p) for p in padding)


def _geometry(where, W_shape, stride, padding, dilation, groups):
    kh, kw = W_shape[2], W_shape[3]
    s = pair(where, "stride", stride)
    d = pair(where, "dilation", dilation)
    p = resolve_padding(where, padding, (kh, kw), s, d)
    g = positive_int(where, "groups", groups)
    return s, p, d, g


def check_fits(where, H, Wd, kernel_size, padding, dilation):
    """ValueError unless the dilated kernel fits in the padded input (H_out, W_out >= 1)."""
    kh, kw = kernel_size
    pt, pb, pl, pr = padding
    dh, dw = dilation
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if H + pt + pb < eh or Wd + pl + pr < ew:
        raise ValueError(
            f"{where}: kernel {kh}x{kw} (dilated extent {eh}x{ew}) is larger than the padded input "
            f"{H + pt + pb}x{Wd + pl + pr} (input {H}x{Wd}, padding top/bottom/left/right {tuple(padding)})")


# ------------------------------------------------------------------------- pure functions
def conv2d_forward(x, W, b=None, stride=1, padding=0, dilation=1, groups=1, scale=1.0):
    """out = s · (W ⋆ x) + b, the 2-D cross-correlation of the module docstring.

    Parameters
    ----------
    x : (N, C_in, H, W)
    W : (C_out, C_in/G, kh, kw)
    b : (C_out,) or None
    stride, dilation : int or pair (along H, along W).
    padding : int, pair, (top, bottom, left, right), "same", "valid" or "bottom_right"
        (see :func:`resolve_padding`).
    groups : G, dividing C_in and C_out.
    scale : fixed multiplier s.

    Returns
    -------
    out : (N, C_out, H_out, W_out), H_out = ⌊(H + pt + pb − dh·(kh−1) − 1)/sh⌋ + 1 (W_out alike).
    cache : (x, W, b, scale, stride, padding (4-tuple), dilation, groups)
    """
    s, p, d, g = _geometry("conv2d_forward", W.shape, stride, padding, dilation, groups)
    check_fits("conv2d_forward", x.shape[2], x.shape[3], W.shape[2:], p, d)
    Ws = W if scale == 1.0 else W * np.asarray(scale, dtype=W.dtype)
    out = conv2d_forward_kernel(x, Ws, b, s, p, d, g)
    return out, (x, W, b, scale, s, p, d, g)


def conv2d_backward(dout, cache, need_params=True):
    """Gradients of ⟨dout, out⟩.

    Parameters
    ----------
    dout : (N, C_out, H_out, W_out)
    cache : from :func:`conv2d_forward`.
    need_params : False skips dW and db (returned as None).

    Returns
    -------
    dx : (N, C_in, H, W) = s · Wᵀ ⋆ dout (the transposed convolution; col2im of W_gᵀ dout_n)
    dW : (C_out, C_in/G, kh, kw) = s · Σ_n dout_n X_nᵀ per group (X_n the im2col patches)
    db : (C_out,) = Σ_{n,y,x} dout[n, :, y, x], or None without bias
    """
    x, W, b, scale, s, p, d, g = cache
    Ws = W if scale == 1.0 else W * np.asarray(scale, dtype=W.dtype)
    if not need_params:
        return conv2d_backward_kernel(dout, x, Ws, s, p, d, g, need_dw=False)[0], None, None
    dx, dW, db = conv2d_backward_kernel(dout, x, Ws, s, p, d, g)
    if scale != 1.0:
        dW *= np.asarray(scale, dtype=dW.dtype)
    return dx, dW, (db if b is not None else None)


def _gram_costs(N, L, G, cog, Kg):
    per_sample = G * (2.0 * N * cog * Kg * L + float(N) * N * cog * Kg)
    trace = G * (float(N * L) ** 2 * (cog + Kg + 1))
    return per_sample, trace


def conv2d_gram(dout, cache, method=None):
    """Exact NTK shares of W and b (Du et al. 2019, Sec. 4; the conv form below their Eq. (3)).

    With Δ_i = dout[i] (C_out, L) (row i: ∂u_i/∂out_i, L = H_out·W_out) and X_i the im2col patches of
    sample i (C_in/G·kh·kw, L) — per group g the rows of Δ_i and X_i of that group —,
    ∂u_i/∂W_g = s Δ_{i,g} X_{i,g}ᵀ, hence two exact forms:

    * ``"per_sample"``: G^W_ij = s² Σ_g ⟨Δ_{i,g} X_{i,g}ᵀ, Δ_{j,g} X_{j,g}ᵀ⟩ (the Gram of the
      per-sample gradients; cost ~ N·C_out·(C_in/G)·kh·kw·(L + N)), by
      :func:`refnets.kernels.conv_numba.conv2d_gram_weight`: the gradients of a block of patch rows
      at a time (a few MB), never the n×P Jacobian nor the whole patch matrix;
    * ``"trace"``: G^W_ij = s² Σ_g Σ_{l,l'} ⟨Δ_{i,g}[:,l], Δ_{j,g}[:,l']⟩ ⟨X_{i,g}[:,l], X_{j,g}[:,l']⟩
      (cost ~ (N·L)²·(C_out + C_in·kh·kw)/G: cheaper for wide layers on few positions, Du's case).

    ``method=None`` takes the cheaper one by those counts. G^b_ij = Σ_o (Σ_l Δ_i[o,l])(Σ_l Δ_j[o,l]).

    Parameters
    ----------
    dout : (N, C_out, H_out, W_out)
    cache : from :func:`conv2d_forward`.
    method : None, "per_sample" or "trace".

    Returns
    -------
    dict with "W": (N, N) and, with a bias, "b": (N, N).
    """
    x, W, b, scale, s, p, d, g = cache
    N, Co = dout.shape[:2]
    Cg, kh, kw = W.shape[1:]
    cog, Kg = Co // g, Cg * kh * kw
    L = dout.shape[2] * dout.shape[3]
    D = dout.reshape(N, Co, L)
    if method is None:
        ps, tr = _gram_costs(N, L, g, cog, Kg)
        method = "per_sample" if ps <= tr else "trace"
    if method == "per_sample":
        # Numba + single-threaded BLAS per slot, per-sample gradients one block of channels at a time
        GW = conv_numba.conv2d_gram_weight(dout, x, W.shape, s, p, d, g)
    elif method == "trace":
        GW = np.zeros((N, N), dtype=dout.dtype)
        cols = im2col_kernel(x, kh, kw, s, p, d)              # (C_in·kh·kw, N, L)
        for gi in range(g):
            Dg = D[:, gi * cog:(gi + 1) * cog, :]               # (N, C_out/G, L)
            Xg = cols[gi * Kg:(gi + 1) * Kg].transpose(1, 0, 2)  # (N, C_in/G·kh·kw, L)
            Dm = np.ascontiguousarray(Dg.transpose(0, 2, 1)).reshape(N * L, cog)
            Xm = np.ascontiguousarray(Xg.transpose(0, 2, 1)).reshape(N * L, Kg)
            # rows of samples in blocks of ~4M entries of the (block·L, N·L) products
            bs = max(1, min(N, (4 << 20) // max(1, L * N * L)))
            for i0 in range(0, N, bs):
                i1 = min(N, i0 + bs)
                PD = Dm[i0 * L:i1 * L] @ Dm.T
                PD *= Xm[i0 * L:i1 * L] @ Xm.T
                GW[i0:i1] += PD.reshape(i1 - i0, L, N, L).sum(axis=(1, 3))
    else:
        raise ValueError(f"conv2d_gram: method must be None, 'per_sample' or 'trace', got {method!r}")
    GW *= np.asarray(scale * scale, dtype=GW.dtype)
    out = {"W": GW}
    if b is not None:
        S = D.sum(axis=2)
        out["b"] = S @ S.T
    return out


def conv2d_jvp(dx, dW, db, cache):
    """d out = s · (W ⋆ dx + dW ⋆ x) + db; any of dx (N, C_in, H, W), dW, db may be None (zero).

    Returns (N, C_out, H_out, W_out).
    """
    x, W, b, scale, s, p, d, g = cache
    t = None
    if dx is not None:
        t = conv2d_forward_kernel(dx, W, None, s, p, d, g)
    if dW is not None:
        u = conv2d_forward_kernel(x, dW, None, s, p, d, g)
        t = u if t is None else t + u
    if t is None:
        N, Co = x.shape[0], W.shape[0]
        Ho = conv_output_size(x.shape[2], W.shape[2], s[0], p[0], p[1], d[0])
        Wo = conv_output_size(x.shape[3], W.shape[3], s[1], p[2], p[3], d[1])
        t = np.zeros((N, Co, Ho, Wo), dtype=x.dtype)
    elif scale != 1.0:
        t *= np.asarray(scale, dtype=t.dtype)
    if db is not None:
        t += db[:, None, None]
    return t


# ------------------------------------------------------------------------------ 1-D
def _conv1d_geometry(where, kernel_size, stride, padding, dilation):
    s = positive_int(where, "stride", stride)
    d = positive_int(where, "dilation", dilation)
    if isinstance(padding, str):
        if padding.lower() not in ("same", "valid"):
            raise ValueError(f"{where}: padding must be an int, a pair (left, right), 'same' or 'valid', got {padding!r}")
        if padding.lower() == "same" and s != 1:
            raise ValueError(f"{where}: padding='same' needs stride 1 (as in PyTorch), got stride {s}")
        p = resolve_padding(where, padding, (1, kernel_size), (1, s), (1, d))
    elif isinstance(padding, (int, np.integer)) and not isinstance(padding, (bool, np.bool_)):
        p = resolve_padding(where, (0, 0, int(padding), int(padding)), (1, kernel_size))
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        p = resolve_padding(where, (0, 0, padding[0], padding[1]), (1, kernel_size))
    else:
        raise ValueError(f"{where}: padding must be an int, a pair (left, right), 'same' or 'valid', got {padding!r}")
    return (1, s), p, (1, d)


def conv1d_forward(x, W, b=None, stride=1, padding=0, dilation=1, groups=1, scale=1.0):
    """out = s · (W ⋆ x) + b on sequences, through the 2-D kernels with H = 1.

    Parameters
    ----------
    x : (N, C_in, L)
    W : (C_out, C_in/G, k)
    b : (C_out,) or None
    stride, dilation : int; padding : int, pair (left, right), "same" or "valid".

    Returns
    -------
    out : (N, C_out, L_out), L_out = ⌊(L + p_left + p_right − d·(k−1) − 1)/stride⌋ + 1.
    cache : the 2-D cache of the (N, C, 1, L) view.
    """
    s, p, d = _conv1d_geometry("conv1d_forward", W.shape[2], stride, padding, dilation)
    out, cache = conv2d_forward(x[:, :, None, :], W[:, :, None, :], b, s, p, d, groups, scale)
    return out[:, :, 0, :], cache


def conv1d_backward(dout, cache, need_params=True):
    """dout (N, C_out, L_out) -> dx (N, C_in, L), dW (C_out, C_in/G, k), db (C_out,) or None
    (need_params=False: dx only, dW and db None)."""
    dx, dW, db = conv2d_backward(dout[:, :, None, :], cache, need_params)
    return dx[:, :, 0, :], (None if dW is None else dW[:, :, 0, :]), db


def conv1d_gram(dout, cache, method=None):
    """Exact NTK shares of W and b, as :func:`conv2d_gram`; dout (N, C_out, L_out)."""
    return conv2d_gram(dout[:, :, None, :], cache, method)


def conv1d_jvp(dx, dW, db, cache):
    """d out (N, C_out, L_out) along dx (N, C_in, L), dW (C_out, C_in/G, k), db (C_out,); None is zero."""
    t = conv2d_jvp(None if dx is None else dx[:, :, None, :], None if dW is None else dW[:, :, None, :], db, cache)
    return t[:, :, 0, :]


def patches1d(x, q):
    """Du et al. 2019's patch operator φ (Sec. 7, Eq. (3)), explicitly: x (N, C, L) -> φ(x) (N, q·C, L).

    Column l of φ(x_n) stacks, channel by channel, the q positions l − ⌊(q−1)/2⌋ … l + ⌈(q−1)/2⌉ of
    the input (for odd q: l − (q−1)/2 … l + (q−1)/2), with zeros outside 0..L−1:

        φ(x)[n, c·q + t, l] = x[n, c, l + t − ⌊(q−1)/2⌋]   (0 ≤ t < q).

    The row order (channel-major: all q taps of channel 0, then channel 1, …) is our reading
    (R in PAPERS.md); it is the order in which ``W.reshape(C_out, C·q)`` lays out a
    :class:`Conv1d` weight, so Conv1d(C, m, q, padding="same", bias=False) computes
    W.reshape(m, C·q) @ φ(x). Even q follows PyTorch's "same" (the extra tap on the right).
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"patches1d: x must have ndim 3 (N, C, L), got shape {x.shape}")
    q = positive_int("patches1d", "q", q)
    N, C, L = x.shape
    left = (q - 1) // 2
    out = np.zeros((N, C, q, L), dtype=x.dtype)
    for t in range(q):
        shift = t - left                  # φ row t reads position l + shift
        lo, hi = max(0, -shift), min(L, L - shift)
        if lo < hi:
            out[:, :, t, lo:hi] = x[:, :, lo + shift:hi + shift]
    return out.reshape(N, C * q, L)


# ------------------------------------------------------------------------------ layers
def _kernel_pair(where, k):
    return pair(where, "kernel_size", k)


class Conv2d(Layer):
    """2-D convolution (cross-correlation), out = s · (W ⋆ x) + b (see the module docstring).

    Parameters
    ----------
    in_channels, out_channels : int
        C_in and C_out, both divisible by ``groups``.
    kernel_size : int or pair (kh, kw).
    stride, dilation : int or pair.
    padding : int, pair (ph, pw), 4-tuple (top, bottom, left, right), "same" (stride 1; the odd
        extra row/column at the bottom/right, as PyTorch), "valid" or "bottom_right" (Kohler et al.
        2024: dh·(kh−1) rows at the bottom, dw·(kw−1) columns at the right; filter anchored at its
        top-left tap, output size = input size at stride 1).
    groups : int
        G; output channels [g·C_out/G, (g+1)·C_out/G) see input channels [g·C_in/G, (g+1)·C_in/G).
        Kohler et al.'s K_n parallel CNNs are one grouped convolution.
    bias : bool
        Add a trained bias b ∈ R^{C_out} (default True, as PyTorch).
    scale : float
        Fixed multiplier s (not trained).
    init, bias_init : callable ``(rng, shape, dtype)``
        From :mod:`refnets.init`; default N(0, 1/fan_in) with fan_in = C_in/G·kh·kw, and zeros.
    rng : None, int or Generator
        None means seed 0.

    Shapes: x (N, C_in, H, W) -> out (N, C_out, H_out, W_out),
    H_out = ⌊(H + pt + pb − dh·(kh−1) − 1)/sh⌋ + 1, W_out = ⌊(W + pl + pr − dw·(kw−1) − 1)/sw⌋ + 1;
    params W (C_out, C_in/G, kh, kw), b (C_out,).
    """

    ndim = 4
    layout = "(N, C, H, W)"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, scale=1.0, init=None, bias_init=None, rng=None, dtype=np.float64, name=None):
        super().__init__(name, dtype)
        self.in_channels = positive_int(self.name, "in_channels", in_channels)
        self.out_channels = positive_int(self.name, "out_channels", out_channels)
        self.groups = positive_int(self.name, "groups", groups)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{self.name}: groups={self.groups} must divide in_channels={self.in_channels} "
                             f"and out_channels={self.out_channels}")
        self.kernel_size = self._kernel(kernel_size)
        self.stride = self._pair("stride", stride)
        self.dilation = self._pair("dilation", dilation)
        self.padding = self._padding(padding)
        self.scale = float(scale)
        rng = as_rng(rng)
        init = init or _init.lecun_normal()
        self.params["W"] = init(rng, self._w_shape(), self.dtype)
        if bias:
            self.params["b"] = (bias_init or _init.zeros())(rng, (self.out_channels,), self.dtype)

    # geometry, overridden by Conv1d
    def _kernel(self, k):
        return _kernel_pair(self.name, k)

    def _pair(self, what, v):
        return pair(self.name, what, v)

    def _padding(self, padding):
        return resolve_padding(self.name, padding, self.kernel_size, self.stride, self.dilation)

    def _w_shape(self):
        return (self.out_channels, self.in_channels // self.groups) + tuple(self.kernel_size)

    def check_input(self, x):
        super().check_input(x)
        check_axis(self.name, "input", x, 1, self.in_channels, "in_channels")
        check_fits(self.name, x.shape[2], x.shape[3], self.kernel_size, self.padding, self.dilation)

    def _forward(self, x):
        return conv2d_forward(x, self.params["W"], self.params.get("b"), self.stride, self.padding,
                              self.dilation, self.groups, self.scale)

    def _backward(self, dout, cache):
        dx, dW, db = conv2d_backward(dout, cache, param_grads_enabled())
        return dx, weight_grads(dW, db)

    def _gram(self, dout, cache):
        return conv2d_gram(dout, cache)

    def _jvp(self, dx, dparams, cache):
        return conv2d_jvp(dx, dparams.get("W"), dparams.get("b"), cache)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={'b' in self.params}, scale={self.scale:g}")


class Conv1d(Conv2d):
    """1-D convolution on sequences, out = s · (W ⋆ x) + b, run by the 2-D kernels with H = 1.

    Du et al. 2019's convolutional ResNet (Eq. (3)) applies W⁽ʰ⁾ ∈ R^{m×qd} to the patch matrix
    φ_h(x) ∈ R^{qd×p} of an input x ∈ R^{d×p}; column l of φ_h(x) stacks, channel by channel,
    positions l−(q−1)/2 … l+(q−1)/2 with zeros outside (stride 1). That is exactly this layer
    with kernel_size=q, stride=1, padding="same", bias=False: W⁽ʰ⁾ = W.reshape(m, d·q), the row
    order of φ being channel-major (our reading, R in PAPERS.md; :func:`patches1d` builds φ
    explicitly and the tests check Conv1d(x) = W⁽ʰ⁾ φ(x)). Their scalings √(c_σ/m) and
    c_res/(H√m) go in ``scale``.

    Parameters
    ----------
    in_channels, out_channels, kernel_size (int k), stride (int), dilation (int), groups, bias,
    scale, init, bias_init, rng, dtype, name : as :class:`Conv2d`.
    padding : int (both ends), pair (left, right), "same" (stride 1; the odd extra at the right)
        or "valid".

    Shapes: x (N, C_in, L) -> out (N, C_out, L_out), L_out = ⌊(L + p_left + p_right − d·(k−1) − 1)/stride⌋ + 1;
    params W (C_out, C_in/G, k), b (C_out,).
    """

    ndim = 3
    layout = "(N, C, L)"

    def _kernel(self, k):
        return (1, positive_int(self.name, "kernel_size", k))

    def _pair(self, what, v):
        return (1, positive_int(self.name, what, v))

    def _padding(self, padding):
        return _conv1d_geometry(self.name, self.kernel_size[1], self.stride[1], padding, self.dilation[1])[1]

    def _w_shape(self):
        return (self.out_channels, self.in_channels // self.groups, self.kernel_size[1])

    def check_input(self, x):
        Layer.check_input(self, x)
        check_axis(self.name, "input", x, 1, self.in_channels, "in_channels")
        k, d = self.kernel_size[1], self.dilation[1]
        pl, pr = self.padding[2], self.padding[3]
        if x.shape[2] + pl + pr < d * (k - 1) + 1:
            raise ValueError(
                f"{self.name}: kernel {k} (dilated extent {d * (k - 1) + 1}) is longer than the padded input "
                f"{x.shape[2] + pl + pr} (input length {x.shape[2]}, padding left/right ({pl}, {pr}))")

    def _forward(self, x):
        out, cache = conv2d_forward(x[:, :, None, :], self.params["W"][:, :, None, :], self.params.get("b"),
                                    self.stride, self.padding, self.dilation, self.groups, self.scale)
        return out[:, :, 0, :], cache

    def _backward(self, dout, cache):
        dx, dW, db = conv1d_backward(dout, cache, param_grads_enabled())
        return dx, weight_grads(dW, db)

    def _gram(self, dout, cache):
        return conv1d_gram(dout, cache)

    def _jvp(self, dx, dparams, cache):
        return conv1d_jvp(dx, dparams.get("W"), dparams.get("b"), cache)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size[1]}, stride={self.stride[1]}, "
                f"padding={self.padding[2:]}, dilation={self.dilation[1]}, groups={self.groups}, "
                f"bias={'b' in self.params}, scale={self.scale:g}")
