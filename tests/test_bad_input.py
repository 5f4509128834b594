"""Bad input to every public layer (issue 9): a clear error naming the layer, never a crash.

For each layer class of :mod:`refnets.layers` (the list is checked to be complete): backward, jvp
and gram before forward (RuntimeError); an input that is not an array, of an integer dtype, of
the wrong ndim, holding NaN or inf (TypeError / ValueError); after a forward, a dout of the wrong
shape, of an integer or another float dtype, or non-finite (ValueError / TypeError). Every message
names the layer (each is built with a distinctive name). float32 end to end where supported.
The existing per-layer tests (test_layers_core, test_conv_layer, test_pool) check some of these
for Dense, Conv2d/Conv1d and the pools; this file covers every class, containers included.
"""
import inspect

import numpy as np
import pytest

import refnets.layers as rn
from refnets.layers.base import Layer


def _cases(dtype=np.float64):
    """name -> (layer built with name=name, a good input, a wrong-ndim input or None)."""
    f = dict(dtype=dtype)
    x2 = np.ones((2, 3), dtype)
    x3 = np.ones((2, 2, 5), dtype)
    x4 = np.ones((2, 2, 4, 4), dtype)
    return {
        "Dense": (rn.Dense(3, 2, name="the_dense", **f), x2, x3),
        "Identity": (rn.Identity(name="the_identity"), x2, None),
        "ReLU": (rn.ReLU(name="the_relu"), x2, None),
        "LeakyReLU": (rn.LeakyReLU(0.1, name="the_leaky"), x2, None),
        "Logistic": (rn.Logistic(name="the_logistic"), x2, None),
        "Softplus": (rn.Softplus(name="the_softplus"), x2, None),
        "Tanh": (rn.Tanh(name="the_tanh"), x2, None),
        "Conv2d": (rn.Conv2d(2, 3, 3, padding=1, name="the_conv2d", **f), x4, x3),
        "Conv1d": (rn.Conv1d(2, 3, 3, padding="same", name="the_conv1d", **f), x3, x4),
        "MaxPool2d": (rn.MaxPool2d(2, name="the_maxpool"), x4, x3),
        "AvgPool2d": (rn.AvgPool2d(2, name="the_avgpool"), x4, x3),
        "GlobalMaxPool": (rn.GlobalMaxPool(name="the_gmax"), x4, x2),
        "GlobalAvgPool": (rn.GlobalAvgPool(name="the_gavg"), x3, x2),
        "Sequential": (rn.Sequential(rn.Dense(3, 4, **f), rn.Tanh(), rn.Dense(4, 2, **f), name="the_seq"), x2, x3),
        "Residual": (rn.Residual(rn.Sequential(rn.Dense(3, 3, **f), rn.ReLU()), scale=0.5, name="the_res"), x2, x3),
        "Parallel": (rn.Parallel(rn.Dense(3, 2, **f), rn.Dense(3, 2, **f), weights="learned", name="the_par", **f),
                     x2, x3),
        "Parallel[fixed]": (rn.Parallel(rn.Dense(3, 2, **f), rn.Dense(3, 2, **f), weights=[0.5, -2.0],
                                        name="the_parfix"), x2, x3),
        "Flatten": (rn.Flatten(name="the_flatten"), x4, None),
        "Reshape": (rn.Reshape((3, 1), name="the_reshape"), x2, None),
    }


def test_every_public_layer_class_is_covered():
    public = {n for n, c in vars(rn).items() if inspect.isclass(c) and issubclass(c, Layer)
              and c not in (Layer, rn.Activation)}
    covered = {k.split("[")[0] for k in _cases()}
    assert public <= covered, f"layers without bad-input tests: {sorted(public - covered)}"


NAMES = sorted(_cases())


def _err_names(layer, e):
    """The message names the layer, or (for a container) the child that refused."""
    names = [layer.name] + [type(c).__name__ for c in _walk(layer)]
    assert any(n in str(e.value) for n in names), f"{layer.name}: message does not name the layer: {e.value}"


def _walk(layer):
    for c in layer.children().values():
        yield c
        yield from _walk(c)


@pytest.mark.parametrize("name", NAMES)
def test_calls_before_forward(name):
    layer, x, _ = _cases()[name]
    with pytest.raises(RuntimeError, match="backward called before forward") as e:
        layer.backward(np.ones((2, 2)))
    _err_names(layer, e)
    with pytest.raises(RuntimeError, match="before forward") as e:
        layer.jvp(x)
    _err_names(layer, e)
    if layer.parameters():
        with pytest.raises(RuntimeError, match="before") as e:
            layer.gram()
        _err_names(layer, e)
        layer.forward(x)
        with pytest.raises(RuntimeError, match="gram called before backward") as e:
            layer.gram()
        _err_names(layer, e)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_refused_with_the_layer_name(name):
    layer, x, wrong_ndim = _cases()[name]
    bad = {
        "list": (x.tolist(), TypeError, "numpy.ndarray"),
        "int": (x.astype(np.int64), TypeError, "floating dtype"),
        "bool": (x > 0, TypeError, "floating dtype"),
        "complex": (x.astype(np.complex128), TypeError, "floating dtype"),
        "nan": (np.where(np.arange(x.size).reshape(x.shape) == 1, np.nan, x), ValueError, "non-finite"),
        "inf": (np.where(np.arange(x.size).reshape(x.shape) == 0, -np.inf, x), ValueError, "non-finite"),
    }
    if wrong_ndim is not None:
        bad["ndim"] = (wrong_ndim, ValueError, "ndim")
    for what, (inp, exc, words) in bad.items():
        with pytest.raises(exc, match=words) as e:
            layer.forward(inp)
        _err_names(layer, e)
    # a refused input leaves no half-done forward behind: backward still needs a forward
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 2)))


@pytest.mark.parametrize("name", NAMES)
def test_bad_dout_refused_with_the_layer_name(name):
    layer, x, _ = _cases()[name]
    out = layer.forward(x)
    bad = {
        "shape": (np.ones(out.shape[:-1] + (out.shape[-1] + 1,)), ValueError, "dout must have the shape"),
        "batch": (np.ones((out.shape[0] + 1,) + out.shape[1:]), ValueError, "dout must have the shape"),
        "ndim": (np.ones(out.shape + (1,)), ValueError, "dout must have the shape"),
        "int": (np.ones(out.shape, dtype=np.int64), TypeError, "floating dtype"),
        "float32": (np.ones(out.shape, dtype=np.float32), TypeError, "dtype"),
        "nan": (np.full(out.shape, np.nan), ValueError, "non-finite"),
        "list": (np.ones(out.shape).tolist(), TypeError, "numpy.ndarray"),
    }
    for what, (dout, exc, words) in bad.items():
        with pytest.raises(exc, match=words) as e:
            layer.backward(dout)
        _err_names(layer, e)
    # and a good dout still works after all the refusals
    dx = layer.backward(np.ones_like(out))
    assert dx.shape == x.shape and np.all(np.isfinite(dx))


@pytest.mark.parametrize("name", NAMES)
def test_float32_end_to_end(name):
    layer, x, _ = _cases(np.float32)[name]
    out = layer.forward(x)
    assert out.dtype == np.float32
    dx = layer.backward(np.ones_like(out))
    assert dx.dtype == np.float32 and dx.shape == x.shape
    for k, g in layer.gradients().items():
        assert g.dtype == np.float32, k
    # float64 input to float32 parameters: refused, naming the layer (or the child that holds them)
    if any(p.dtype == np.float32 for p in layer.parameters().values()):
        with pytest.raises(TypeError, match="float64") as e:
            layer.forward(x.astype(np.float64))
        _err_names(layer, e)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(70, 80), (4, 30, 600), (5000,)])     # serial, parallel (ndim 3), 1-D
def test_all_finite_finds_every_bad_entry_in_large_arrays(shape, dtype):
    """The Numba pass (from FINITE_KERNEL_MIN_SIZE entries) finds one NaN or ±inf anywhere, raises no
    false alarm on huge finite values (x·0 cannot overflow), and a non-contiguous view takes NumPy."""
    from refnets._validate import FINITE_KERNEL_MIN_SIZE, all_finite
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    assert x.size >= FINITE_KERNEL_MIN_SIZE and all_finite(x)
    big = np.full(shape, np.finfo(dtype).max, dtype=dtype)
    assert all_finite(big) and all_finite(-big)
    for pos in (0, x.size // 2 + 1, x.size - 1):
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y.reshape(-1)[pos] = bad
            assert not all_finite(y), (pos, bad)
            assert not all_finite(np.swapaxes(y, 0, -1))                 # non-contiguous: NumPy's test
    with pytest.raises(ValueError, match=r"non-finite values \(first at index \(0, 1, 2\)"):
        y = np.zeros((2, 64, 100))
        y[0, 1, 2] = np.nan
        rn.Conv1d(64, 8, 3, rng=0).forward(y)
