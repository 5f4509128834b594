"""Conv2d and Conv1d against torch.nn.functional.conv2d / conv1d: outputs and every gradient.

float64 over random configurations (odd sizes, stride, dilation, groups, asymmetric padding through
F.pad, "same", Kohler's bottom/right padding), relative error ~1e-12; float32 at float32 tolerance.
"""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from refnets.layers.conv import Conv1d, Conv2d  # noqa: E402


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def torch_conv(x, W, b, stride, pad4, dilation, groups, dout, same=False, one_d=False):
    """torch forward and gradients; pad4 = (top, bottom, left, right) applied with F.pad."""
    xt = torch.tensor(x, requires_grad=True)
    Wt = torch.tensor(W, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    with warnings.catch_warnings():
        # torch notes that it copies the input for 'same' with an even dilated kernel; not our concern
        warnings.filterwarnings("ignore", message="Using padding='same'", category=UserWarning)
        out = _torch_forward(xt, Wt, bt, stride, pad4, dilation, groups, same, one_d)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), xt.grad.numpy(), Wt.grad.numpy(), bt.grad.numpy()


def _torch_forward(xt, Wt, bt, stride, pad4, dilation, groups, same, one_d):
    if one_d:
        if same:
            out = F.conv1d(xt, Wt, bt, stride=stride, padding="same", dilation=dilation, groups=groups)
        else:
            out = F.conv1d(F.pad(xt, (pad4[2], pad4[3])), Wt, bt, stride=stride, dilation=dilation, groups=groups)
    else:
        if same:
            out = F.conv2d(xt, Wt, bt, stride=stride, padding="same", dilation=dilation, groups=groups)
        else:
            xp = F.pad(xt, (pad4[2], pad4[3], pad4[0], pad4[1]))    # F.pad: (left, right, top, bottom)
            out = F.conv2d(xp, Wt, bt, stride=stride, dilation=dilation, groups=groups)
    return out


def random_2d(rng):
    while True:
        G = int(rng.choice([1, 2, 3, 4]))
        cig, cog = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        H, W = int(rng.integers(2, 11)), int(rng.integers(2, 11))
        mode = rng.integers(0, 3)
        if mode == 0:
            stride, padding = (1, 1), "same"
        elif mode == 1:
            stride, padding = (1, int(rng.integers(1, 3))), "bottom_right"
        else:
            stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
            padding = tuple(int(v) for v in rng.integers(0, 4, size=4))
        layer = Conv2d(G * cig, G * cog, (kh, kw), stride=stride, padding=padding, dilation=dil, groups=G, rng=0)
        pt, pb, pl, pr = layer.padding
        if H + pt + pb >= dil[0] * (kh - 1) + 1 and W + pl + pr >= dil[1] * (kw - 1) + 1:
            return layer, (int(rng.integers(1, 4)), G * cig, H, W), padding == "same"


def compare(layer, xshape, same, rng, dtype, tol, one_d=False):
    x = rng.standard_normal(xshape).astype(dtype)
    layer.params["b"][...] = rng.standard_normal(layer.params["b"].shape)
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = layer.backward(dout)
    s = layer.stride[1] if one_d else layer.stride
    d = layer.dilation[1] if one_d else layer.dilation
    t = torch_conv(x, layer.params["W"], layer.params["b"], s, layer.padding, d, layer.groups, dout,
                   same=same, one_d=one_d)
    for what, mine, theirs in zip(("out", "dx", "dW", "db"), (out, dx, layer.grads["W"], layer.grads["b"]), t):
        assert mine.shape == theirs.shape, what
        assert mine.dtype == dtype, what
        assert rel(mine, theirs) < tol, (what, layer, xshape, rel(mine, theirs))


def test_conv2d_matches_torch_float64():
    rng = np.random.default_rng(2024)
    for _ in range(40):
        layer, xshape, same = random_2d(rng)
        compare(layer, xshape, same, rng, np.float64, 1e-12)


def test_conv2d_matches_torch_float32():
    rng = np.random.default_rng(2025)
    for _ in range(20):
        layer, xshape, same = random_2d(rng)
        layer32 = Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                         padding=layer.padding, dilation=layer.dilation, groups=layer.groups, rng=0,
                         dtype=np.float32)
        compare(layer32, xshape, same, rng, np.float32, 5e-6)


def test_conv2d_channel_heavy_matches_torch():
    """Shapes where the gemm strategy and its chunking do the work."""
    rng = np.random.default_rng(7)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 5e-6)):
        layer = Conv2d(16, 12, 3, padding=(1, 0, 2, 1), groups=2, rng=0, dtype=dtype)
        compare(layer, (5, 16, 9, 11), False, rng, dtype, tol)
        layer = Conv2d(8, 32, 3, padding="bottom_right", groups=8, rng=0, dtype=dtype)   # direct
        compare(layer, (5, 8, 9, 7), False, rng, dtype, tol)


@pytest.mark.parametrize("cin, cout, padding, hw", [
    (16, 24, (1, 0, 2, 1), (9, 11)), (32, 16, "same", (6, 5)), (8, 32, 0, (7, 10)), (16, 16, "bottom_right", (5, 5)),
])
def test_conv2d_winograd_matches_torch(cin, cout, padding, hw):
    """3×3 stride-1 layers with enough channels run the Winograd F(2×2, 3×3) kernels: same values as
    PyTorch's direct convolution (odd outputs, asymmetric and one-sided padding)."""
    from refnets.kernels import choose_strategy
    assert choose_strategy(cin, cout, (3, 3)) == "winograd"
    rng = np.random.default_rng(cin + cout)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 5e-6)):
        layer = Conv2d(cin, cout, 3, padding=padding, rng=0, dtype=dtype)
        compare(layer, (3, cin) + hw, padding == "same", rng, dtype, tol)


@pytest.mark.parametrize("cin, cout, padding, L", [(16, 24, (2, 1), 9), (32, 16, "same", 8), (16, 16, 0, 3)])
def test_conv1d_winograd_matches_torch(cin, cout, padding, L):
    """q = 3 stride-1 layers with enough channels run the Winograd F(2, 3) kernels: same values as
    PyTorch's direct convolution (odd and even outputs, asymmetric padding, a single output)."""
    from refnets.kernels import choose_strategy
    assert choose_strategy(cin, cout, (1, 3)) == "winograd1d"
    rng = np.random.default_rng(cin + cout + L)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 5e-6)):
        layer = Conv1d(cin, cout, 3, padding=padding, rng=0, dtype=dtype)
        compare(layer, (3, cin, L), padding == "same", rng, dtype, tol, one_d=True)


def test_conv1d_matches_torch():
    rng = np.random.default_rng(11)
    for i in range(30):
        G = int(rng.choice([1, 2, 3]))
        k, dil = int(rng.integers(1, 6)), int(rng.integers(1, 3))
        L = int(rng.integers(dil * (k - 1) + 1, 14))
        if i % 3 == 0:
            stride, padding = 1, "same"
        else:
            stride, padding = int(rng.integers(1, 4)), (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 5e-6)):
            layer = Conv1d(G * int(rng.integers(1, 4)), G * int(rng.integers(1, 4)), k, stride=stride,
                           padding=padding, dilation=dil, groups=G, rng=0, dtype=dtype)
            compare(layer, (2, layer.in_channels, L), padding == "same", rng, dtype, tol, one_d=True)
