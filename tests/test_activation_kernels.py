"""The Numba logistic kernels equal their NumPy references (refnets/kernels/activation_*.py)."""
import numpy as np
import pytest

from conftest import rel_error
from refnets.kernels import activation_numba as AN
from refnets.kernels import activation_reference as AR
from refnets.layers.activations import KERNEL_MIN_SIZE, logistic, softplus


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logistic_numba_equals_reference(rng, dtype):
    z = (rng.standard_normal((4, 3, 7, 5)) * 30).astype(dtype)
    z[0, 0, 0, :4] = [800.0, -800.0, 0.0, -40.0]
    a = AN.logistic_inplace(z.copy())
    b = AR.logistic_inplace(z.copy())
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert a.dtype == dtype and np.all(np.isfinite(a)) and rel_error(a, b) < tol
    assert a[0, 0, 0, 0] == 1.0 and a[0, 0, 0, 1] == 0.0 and a[0, 0, 0, 2] == 0.5
    assert z.size < KERNEL_MIN_SIZE and rel_error(b, logistic(z)) < tol   # the layer's σ (NumPy path)
    # non-contiguous input takes the reference path, same values
    zt = z.transpose(0, 2, 1, 3)
    assert rel_error(AN.logistic_inplace(zt.copy(order="K")), AR.logistic_inplace(zt.copy(order="K"))) < tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_logistic_takes_the_kernel_on_large_arrays(rng, dtype):
    """From KERNEL_MIN_SIZE elements the layers' σ (Logistic, Softplus′) is the Numba kernel: same
    values as the reference, a new array (the input untouched), any layout."""
    z = (rng.standard_normal((3, 40, 50)) * 30).astype(dtype)
    assert z.size >= KERNEL_MIN_SIZE
    zt = z.transpose(2, 0, 1)
    keep = zt.copy()
    got = logistic(zt)
    assert got.dtype == dtype and got.shape == zt.shape and np.array_equal(zt, keep)
    assert rel_error(got, AR.logistic_inplace(zt.copy())) < (1e-12 if dtype == np.float64 else 1e-6)
    assert np.array_equal(got, AN.logistic_inplace(np.ascontiguousarray(zt)))


def test_logistic_numba_is_deterministic(rng):
    z = rng.standard_normal(10_001) * 5
    assert np.array_equal(AN.logistic_inplace(z.copy()), AN.logistic_inplace(z.copy()))
    big = rng.standard_normal(AN._MIN_THREADED + 4097) * 5       # the parallel path, and the serial one
    assert np.array_equal(AN.logistic_inplace(big.copy()), AN.logistic_inplace(big.copy(), parallel=False))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_times_dlogistic_numba_equals_reference(rng, dtype):
    g = rng.standard_normal((3, 5, 4)).astype(dtype)
    o = rng.uniform(0, 1, (3, 5, 4)).astype(dtype)
    a = AN.times_dlogistic_inplace(g.copy(), o)
    b = AR.times_dlogistic_inplace(g.copy(), o)
    assert rel_error(a, b) < (1e-12 if dtype == np.float64 else 1e-6)
    assert np.allclose(b, g * o * (1 - o), rtol=1e-15 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logistic_threaded_path_equals_reference_and_single_thread(rng, dtype):
    import numba
    z = (rng.standard_normal(AN._MIN_THREADED + 12_345) * 40).astype(dtype)   # large: split over threads
    z[:6] = [1e4, -1e4, 709.0, -709.0, -710.0, 0.0]
    a = AN.logistic_inplace(z.copy())
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert np.all(np.isfinite(a)) and rel_error(a, AR.logistic_inplace(z.copy())) < tol
    assert a[0] == 1.0 and a[1] == 0.0 and a[5] == 0.5
    assert a[4] == (np.exp(-710.0) if dtype == np.float64 else 0.0)      # subnormal e^{z}, not 0
    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert np.array_equal(AN.logistic_inplace(z.copy()), a)      # same bits on one thread
    finally:
        numba.set_num_threads(n)


@pytest.mark.parametrize("size", [5_000, AN._MIN_THREADED + 7])          # serial and parallel kernels
def test_logistic_numba_elementwise_relative_accuracy(size):
    """The vectorised e^{−z} (Cody–Waite reduction + degree-12 polynomial) is accurate to a few ulps
    elementwise, also where σ(z) ≈ e^{z} is tiny; NaN propagates; beyond z = 708 it is 1, below −708
    libm's e^{z} (subnormal, 0 from −745.2 on)."""
    z = np.linspace(-708.0, 60.0, size)
    a = AN.logistic_inplace(z.copy())
    b = AR.logistic_inplace(z.copy())
    assert np.max(np.abs(a - b) / b) < 4e-15
    z = np.array([np.nan, -np.inf, np.inf, -708.5, 708.5, -1e300] * (size // 6 + 1))[:size]
    a = AN.logistic_inplace(z.copy())
    assert np.isnan(a[0]) and a[1] == 0.0 and a[2] == 1.0 and a[3] == np.exp(-708.5) and a[4] == 1.0
    assert a[5] == 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softplus_numba_equals_reference(rng, dtype):
    z = (rng.standard_normal((4, 3, 7, 5)) * 30).astype(dtype)
    z[0, 0, 0, :5] = [800.0, -800.0, 0.0, -40.0, 1e-30]
    a = AN.softplus_inplace(z.copy())
    b = AR.softplus_inplace(z.copy())
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert a.dtype == dtype and np.all(np.isfinite(a)) and rel_error(a, b) < tol
    assert b[0, 0, 0, 1] == 0.0 and b.min() >= 0.0
    nz = b > 0
    assert np.max(np.abs(a - b)[nz] / b[nz]) < (2e-15 if dtype == np.float64 else 1e-6)   # elementwise
    assert a[0, 0, 0, 0] == 800.0 and a[0, 0, 0, 1] == 0.0
    assert abs(a[0, 0, 0, 2] - np.log(2.0)) <= 4 * np.finfo(dtype).eps * np.log(2.0)    # a few ulps
    zt = z.transpose(0, 2, 1, 3)                      # non-contiguous: the reference path
    assert rel_error(AN.softplus_inplace(zt.copy(order="K")), AR.softplus_inplace(zt.copy(order="K"))) < tol


@pytest.mark.parametrize("kernel, reference", [(AN.softplus_inplace, AR.softplus_inplace),
                                               (AN.logistic_inplace, AR.logistic_inplace)])
def test_kernels_below_minus_708_are_exp(kernel, reference):
    """There σ(z) = softplus(z) = e^{z} is subnormal or 0: the kernels' scalar pass (libm's exp) gives
    NumPy's values, not 0; NaN and ±inf keep their limits. Spread over blocks, some without such z."""
    z = np.zeros(3 * 2048 + 5)
    z[:14] = [-708.5, -709.0, -720.0, -745.0, -745.2, -800.0, -1e4, -np.inf, np.nan, np.inf, 800.0, 0.0, -707.9, 3.0]
    z[5000] = -730.0
    a, b = kernel(z.copy()), reference(z.copy())
    assert a[5] == 0.0 and a[1] > 0.0 and a[3] > 0.0 and np.isnan(a[8])
    tiny = np.finfo(np.float64).tiny
    low = np.abs(b) < tiny
    np.testing.assert_array_equal(a[low], b[low])
    ok = ~low & np.isfinite(b)
    assert np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok])) < 1e-14


def test_layer_softplus_takes_the_kernel_on_large_arrays(rng):
    z = (rng.standard_normal((3, 40, 50)) * 30).transpose(2, 0, 1)
    keep = z.copy()
    got = softplus(z)
    assert np.array_equal(z, keep) and got.shape == z.shape
    assert np.array_equal(got, AN.softplus_inplace(np.ascontiguousarray(z)))


def test_softplus_parallel_path_gives_the_serial_bits(rng):
    big = rng.standard_normal(AN._MIN_THREADED + 4097) * 30
    assert np.array_equal(AN.softplus_inplace(big.copy()), AN.softplus_inplace(big.copy(), parallel=False))


def test_layers_run_the_kernels_on_all_threads_for_feature_maps_only(rng, monkeypatch):
    """Feature maps (ndim ≥ 3, between Numba convolutions) take the parallel kernels; (N, features)
    matrices (between OpenBLAS products) the calling thread. Same values either way."""
    from refnets.layers import activations as A
    calls = []
    for name in ("logistic_inplace", "softplus_inplace"):
        real = getattr(A, name)
        monkeypatch.setattr(A, name, lambda z, parallel=True, out=None, _r=real: calls.append(parallel)
                            or _r(z, parallel, out))
    z3 = rng.standard_normal((4, 64, 300))
    z2 = z3.reshape(4 * 64, 300)
    a3, s3 = logistic(z3), softplus(z3)
    a2, s2 = logistic(z2), softplus(z2)
    assert calls == [True, True, False, False]
    assert np.array_equal(a3.reshape(z2.shape), a2) and np.array_equal(s3.reshape(z2.shape), s2)


@pytest.mark.parametrize("name", ["logistic_inplace", "softplus_inplace"])
@pytest.mark.parametrize("parallel", [True, False])
def test_out_of_place_equals_in_place_and_keeps_z(rng, name, parallel):
    """out= writes the same bits as the in-place kernel and leaves z as it was (the layers use it:
    no copy of z); specials (NaN, ±inf, z < −708) included. A wrong out is refused."""
    kernel = getattr(AN, name)
    z = rng.standard_normal(3 * 2048 + 17) * 40
    z[[5, 700, 3000, 5000]] = [np.nan, np.inf, -np.inf, -745.0]
    keep = z.copy()
    out = np.empty_like(z)
    assert kernel(z, parallel=parallel, out=out) is out
    np.testing.assert_array_equal(z, keep)
    np.testing.assert_array_equal(out, kernel(z.copy(), parallel=parallel))
    with pytest.raises(ValueError, match="out must be a C-contiguous float64 array"):
        kernel(z, out=np.empty(z.size - 1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("parallel", [True, False])
def test_softplus_and_logistic_in_one_pass_equals_the_two_kernels(rng, dtype, parallel):
    """One e^{−|z|} for both: the same bits as softplus_inplace and logistic_inplace alone (specials
    included), z untouched; a non-contiguous z gives the same values."""
    z = (rng.standard_normal(5 * 2048 + 3) * 40).astype(dtype)
    z[[1, 900, 4000, 6000, 7000]] = [np.nan, np.inf, -np.inf, -745.0, 0.0]
    keep = z.copy()
    sp, lg = AN.softplus_and_logistic(z, parallel)
    np.testing.assert_array_equal(z, keep)
    assert sp.dtype == lg.dtype == dtype
    np.testing.assert_array_equal(sp, AN.softplus_inplace(z.copy(), parallel))
    np.testing.assert_array_equal(lg, AN.logistic_inplace(z.copy(), parallel))
    zt = np.stack([z, z]).T                                          # non-contiguous
    sp2, lg2 = AN.softplus_and_logistic(zt, parallel)
    np.testing.assert_array_equal(sp2[:, 1], sp)
    np.testing.assert_array_equal(lg2[:, 0], lg)


def test_softplus_layer_caches_its_derivative(rng):
    """On kernel-size inputs the Softplus layer keeps σ′(z) from its forward, not z: backward and jvp
    equal dout·deriv(z) bit for bit; below the kernel size it caches z as every activation does."""
    from refnets.layers.activations import KERNEL_MIN_SIZE, Softplus
    layer = Softplus()
    z = rng.standard_normal((4, 32, 64)) * 5
    assert z.size >= KERNEL_MIN_SIZE
    out = layer.forward(z)
    assert layer.cache[0] is None and layer.cache[2].shape == z.shape
    np.testing.assert_array_equal(out, softplus(z))
    g = rng.standard_normal(z.shape)
    np.testing.assert_array_equal(layer.backward(g), g * layer.deriv(z))
    np.testing.assert_array_equal(layer.jvp(g), g * layer.deriv(z))
    np.testing.assert_array_equal(layer.backward(g), g * layer.deriv(z))    # the cache survives a backward
    small = z[0, :2, :3]
    layer.forward(small)
    assert layer.cache[0] is small and layer.cache[2] is None
    np.testing.assert_array_equal(layer.backward(g[0, :2, :3]), g[0, :2, :3] * layer.deriv(small))
