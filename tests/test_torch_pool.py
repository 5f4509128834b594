"""Pooling against PyTorch (float64): forward values, winner indices and input gradients."""
import numpy as np
import pytest

from refnets.layers.pooling import (AvgPool2d, GlobalAvgPool, GlobalMaxPool, MaxPool2d,
                                    kohler_index_set)

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _config(rng):
    """Random geometry: odd sizes, strides below/above the window (overlap), legal padding."""
    kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
    H = int(rng.integers(max(1, kh - 2 * ph), 10))
    W = int(rng.integers(max(1, kw - 2 * pw), 10))
    return (int(rng.integers(1, 3)), int(rng.integers(1, 4)), H, W), (kh, kw), (sh, sw), (ph, pw)


def _torch_grad(fn, x, dout):
    xt = torch.tensor(x, requires_grad=True)
    out = fn(xt)
    out = out[0] if isinstance(out, tuple) else out
    out.backward(torch.tensor(dout))
    return xt.grad.numpy()


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_maxpool2d_matches_torch(backend):
    rng = np.random.default_rng(0)
    for _ in range(40):
        shape, k, s, p = _config(rng)
        x = rng.standard_normal(shape)
        layer = MaxPool2d(k, s, p, backend=backend)
        out = layer.forward(x)
        ot, it = F.max_pool2d(torch.tensor(x), k, s, p, return_indices=True)
        np.testing.assert_array_equal(out, ot.numpy())
        np.testing.assert_array_equal(layer.cache[1], it.numpy())
        dout = rng.standard_normal(out.shape)
        dx = layer.backward(dout)
        dxt = _torch_grad(lambda t: F.max_pool2d(t, k, s, p), x, dout)
        np.testing.assert_allclose(dx, dxt, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_maxpool2d_ties_match_torch_exactly(backend):
    # Integer inputs from a tiny range: almost every window has ties. Integer douts make every
    # gradient sum exact, so the winners must agree with torch's to the bit.
    rng = np.random.default_rng(1)
    n_ties = 0
    for trial in range(40):
        shape, k, s, p = _config(rng)
        x = rng.integers(0, 2 if trial % 2 else 3, size=shape).astype(np.float64)
        layer = MaxPool2d(k, s, p, backend=backend)
        out = layer.forward(x)
        n_ties += layer.max_margin() == 0
        ot, it = F.max_pool2d(torch.tensor(x), k, s, p, return_indices=True)
        np.testing.assert_array_equal(out, ot.numpy())
        np.testing.assert_array_equal(layer.cache[1], it.numpy())
        dout = rng.integers(-3, 4, size=out.shape).astype(np.float64)
        np.testing.assert_array_equal(layer.backward(dout), _torch_grad(lambda t: F.max_pool2d(t, k, s, p), x, dout))
    assert n_ties > 30  # the test did exercise ties


@pytest.mark.parametrize("cip", [True, False])
def test_avgpool2d_matches_torch(cip):
    rng = np.random.default_rng(2)
    for _ in range(40):
        shape, k, s, p = _config(rng)
        x = rng.standard_normal(shape)
        layer = AvgPool2d(k, s, p, count_include_pad=cip)
        out = layer.forward(x)
        fn = lambda t: F.avg_pool2d(t, k, s, p, ceil_mode=False, count_include_pad=cip)  # noqa: E731
        np.testing.assert_allclose(out, fn(torch.tensor(x)).numpy(), rtol=1e-13, atol=1e-14)
        dout = rng.standard_normal(out.shape)
        np.testing.assert_allclose(layer.backward(dout), _torch_grad(fn, x, dout), rtol=1e-13, atol=1e-14)


ADAPTIVE_MAX = {1: "adaptive_max_pool1d", 2: "adaptive_max_pool2d", 3: "adaptive_max_pool3d"}


@pytest.mark.parametrize("spatial", [(7,), (1,), (3, 5), (4, 1), (2, 3, 3)])
@pytest.mark.parametrize("ties", [False, True])
def test_global_maxpool_matches_torch(spatial, ties):
    rng = np.random.default_rng(3)
    pool = getattr(F, ADAPTIVE_MAX[len(spatial)])
    fn = lambda t: pool(t, 1).reshape(t.shape[0], t.shape[1])  # noqa: E731
    for _ in range(5):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) + spatial
        x = rng.integers(0, 2, size=shape).astype(np.float64) if ties else rng.standard_normal(shape)
        layer = GlobalMaxPool()
        out = layer.forward(x)
        np.testing.assert_array_equal(out, fn(torch.tensor(x)).detach().numpy())
        _, it = pool(torch.tensor(x), 1, return_indices=True)
        np.testing.assert_array_equal(layer.cache[1], it.reshape(shape[:2]).numpy())
        dout = rng.integers(-3, 4, size=out.shape).astype(np.float64)
        np.testing.assert_array_equal(layer.backward(dout), _torch_grad(fn, x, dout))


@pytest.mark.parametrize("spatial", [(7,), (1,), (3, 5), (2, 3, 3)])
def test_global_avgpool_matches_torch(spatial):
    rng = np.random.default_rng(4)
    dims = tuple(range(2, 2 + len(spatial)))
    for _ in range(5):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) + spatial
        x = rng.standard_normal(shape)
        layer = GlobalAvgPool()
        out = layer.forward(x)
        fn = lambda t: t.mean(dim=dims)  # noqa: E731
        np.testing.assert_allclose(out, fn(torch.tensor(x)).numpy(), rtol=1e-13, atol=1e-15)
        if len(spatial) == 2:
            ad = F.adaptive_avg_pool2d(torch.tensor(x), 1).reshape(shape[:2]).numpy()
            np.testing.assert_allclose(out, ad, rtol=1e-13, atol=1e-15)
        dout = rng.standard_normal(out.shape)
        np.testing.assert_allclose(layer.backward(dout), _torch_grad(fn, x, dout), rtol=1e-14, atol=0)


def test_global_avgpool_kohler_region_matches_torch():
    rng = np.random.default_rng(5)
    for d1, d2, kappa in [(8, 8, 3), (7, 5, 2), (6, 9, 6), (5, 5, 1)]:
        x = rng.standard_normal((3, 2, d1, d2))
        layer = GlobalAvgPool(kohler_index_set(d1, d2, kappa))
        out = layer.forward(x)
        fn = lambda t: t[:, :, :d1 - kappa + 1, :d2 - kappa + 1].mean(dim=(2, 3))  # noqa: E731
        np.testing.assert_allclose(out, fn(torch.tensor(x)).numpy(), rtol=1e-13, atol=1e-15)
        dout = rng.standard_normal(out.shape)
        np.testing.assert_allclose(layer.backward(dout), _torch_grad(fn, x, dout), rtol=1e-14, atol=0)
