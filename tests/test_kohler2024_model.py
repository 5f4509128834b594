"""Kohler, Krzyżak & Walter 2024 network: the equations (conv), (GAP), (f_w) by explicit loops, the K_n
networks as one grouped convolution, init, gradients, pooling variants, blocking, training by GD."""
import numpy as np
import pytest

from conftest import numeric_grad, rel_error
from refnets.layers.pooling import kohler_index_set
from refnets.models import kohler2024 as KW


@pytest.fixture(autouse=True)
def _serial_numba():
    """These shapes are tiny: Numba's thread hand-off would cost more than the arithmetic."""
    numba = pytest.importorskip("numba")
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(old)


def sigma(z):
    return 1.0 / (1.0 + np.exp(-z))


def by_equation(model, x):
    """f_w(x) from the paper's sums, one network at a time, positions 1-based as in (conv)."""
    N, _, d1, d2 = x.shape
    p = model.params
    f = np.zeros(N)
    for k in range(model.K_n):
        o = x[:, 0][:, :, :, None]                                  # (N, d1, d2, k_0 = 1)
        for r in range(1, model.L + 1):
            kr, Mr = model.k[r - 1], model.M[r - 1]
            W = p[f"w{r}"][k * kr:(k + 1) * kr]                     # (k_r, k_{r-1}, M, M)
            b = p[f"w{r}_bias"][k * kr:(k + 1) * kr]
            new = np.zeros((N, d1, d2, kr))
            for i in range(1, d1 + 1):
                for j in range(1, d2 + 1):
                    for s in range(kr):
                        acc = b[s] * np.ones(N)
                        for t1 in range(1, Mr + 1):
                            for t2 in range(1, Mr + 1):
                                if i + t1 - 1 <= d1 and j + t2 - 1 <= d2:   # (i+t1-1, j+t2-1) ∈ D
                                    acc += o[:, i + t1 - 2, j + t2 - 2, :] @ W[s, :, t1 - 1, t2 - 1]
                        new[:, i - 1, j - 1, s] = sigma(acc)
            o = new
        kap = model.kappa
        rows = d1 - kap + 1 if model.region == "I_kappa" else d1
        cols = d2 - kap + 1 if model.region == "I_kappa" else d2
        last = o[:, :rows, :cols, 0].reshape(N, -1)
        pooled = last.mean(1) if model.pool == "avg" else last.max(1)
        f += p[model.output_name][k] * pooled
    return f


def _model(rng, **kw):
    kw = {"d1": 6, "d2": 5, "K_n": 3, "k": (2, 1), "M": (3, 2), "A": 1.5, **kw}
    m = KW.KohlerCNN(rng=rng, **kw)
    m.params[m.output_name][...] = rng.standard_normal(m.params[m.output_name].shape)
    return m


@pytest.mark.parametrize("pool,region", [("avg", "I_kappa"), ("avg", "all"), ("max", "I_kappa")])
def test_forward_is_the_papers_equation(rng, pool, region):
    m = _model(rng, pool=pool, region=region)
    x = rng.uniform(0, 1, (3, 1, 6, 5))
    assert np.allclose(m.forward(x), by_equation(m, x), rtol=1e-12, atol=1e-13)


def test_receptive_field_and_index_set():
    assert KW.receptive_field((3, 3)) == 5 and KW.receptive_field((2, 1)) == 2
    m = KW.KohlerCNN(8, 7, K_n=2, k=(2, 1), M=(3, 2))
    assert m.kappa == 4
    mask = kohler_index_set(8, 7, 4)
    assert np.array_equal(m.positions, np.flatnonzero(mask.ravel())) and m.positions.size == 5 * 4


def test_init_output_zero_inner_uniform():
    m = KW.KohlerCNN(6, K_n=50, k=(3, 1), M=2, A=0.7, rng=3)
    assert np.all(m.params["w3"] == 0)
    inner = np.concatenate([m.params[n].ravel() for n in m.inner_names()])
    assert inner.min() >= -0.7 and inner.max() <= 0.7 and inner.max() > 0.6 and inner.min() < -0.6
    assert m.params["w1"].shape == (150, 1, 2, 2) and m.params["w2"].shape == (50, 3, 2, 2)
    # same seed, same bits; f_w(x) = 0 at init
    assert np.array_equal(KW.KohlerCNN(6, K_n=50, k=(3, 1), M=2, A=0.7, rng=3).params["w1"], m.params["w1"])
    assert np.all(m.forward(np.full((2, 1, 6, 6), 0.5)) == 0)


def test_grouped_equals_separate_networks(rng):
    """The K_n networks in one grouped convolution = K_n one-network models summed with their weights."""
    m = _model(rng, K_n=4)
    x = rng.uniform(0, 1, (5, 1, 6, 5))
    total = np.zeros(5)
    for k in range(4):
        one = KW.KohlerCNN(6, 5, K_n=1, k=(2, 1), M=(3, 2))
        for r, kr in ((1, 2), (2, 1)):
            one.params[f"w{r}"][...] = m.params[f"w{r}"][k * kr:(k + 1) * kr]
            one.params[f"w{r}_bias"][...] = m.params[f"w{r}_bias"][k * kr:(k + 1) * kr]
        one.params["w3"][...] = m.params["w3"][k]
        total += one.forward(x)
    assert np.allclose(m.forward(x), total, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("pool", ["avg", "max", "none"])
def test_gradients_by_central_differences(rng, pool):
    m = _model(rng, pool=pool, K_n=2)
    x = rng.uniform(0, 1, (3, 1, 6, 5))
    c = rng.standard_normal(3)
    out = m.forward(x)
    dx = m.backward(c)
    f = lambda: float(c @ m.forward(x))  # noqa: E731
    for name, p in m.params.items():
        assert rel_error(numeric_grad(f, p), m.grads[name]) < 1e-7, name
    assert rel_error(numeric_grad(f, x), dx) < 1e-7
    assert out.shape == (3,)


def test_blocking_is_exact_and_input_grad_switch(rng):
    m = _model(rng, chunk=2)
    x = rng.uniform(0, 1, (5, 1, 6, 5))
    c = rng.standard_normal(5)
    out2 = m.forward(x)
    dx2 = m.backward(c)
    g2 = {k: v.copy() for k, v in m.grads.items()}
    m.chunk = 5
    assert np.allclose(m.forward(x), out2, rtol=1e-14, atol=0)
    dx5 = m.backward(c)
    assert np.allclose(dx5, dx2, rtol=1e-13, atol=1e-16)
    for k in g2:
        assert np.allclose(m.grads[k], g2[k], rtol=1e-12, atol=1e-15)
    m.input_grad = False
    m.forward(x)
    assert m.backward(c) is None
    assert np.allclose(m.predict(x), out2)


def test_first_step_moves_only_output_weights_then_fit_decreases_F(rng):
    x = rng.uniform(0, 1, (20, 1, 5, 5))
    y = (rng.random(20) < 0.5).astype(float)
    m = KW.KohlerCNN(5, K_n=8, k=(2, 1), M=2, A=3.0, rng=1)
    m.forward(x)
    m.backward(np.ones(20))
    assert all(not np.any(m.grads[n]) for n in m.inner_names())     # w^(L+1) = 0: inner weights still
    lam = KW.output_step_size(m, x, c_n=1e-3)
    tr = KW.fit(m, x, y, lambda_n=lam, t_n=30, c_n=1e-3, record_every=1)
    assert tr["loss"][-1] < 0.9 * tr["loss"][0] and np.all(np.diff(tr["loss"]) <= 1e-12)
    assert m.input_grad is True
    eh = m.eta_hat(x)
    assert np.all(np.abs(eh) <= 1) and set(np.unique(KW.classify(eh))) <= {0, 1}


def test_penalty_is_c_n_sum_of_squared_output_weights(rng):
    x = rng.uniform(0, 1, (6, 1, 5, 5))
    y = np.ones(6)
    m = _model(rng, d1=5, d2=5, M=2)
    tr = KW.fit(m.copy(), x, y, lambda_n=1e-9, t_n=0, c_n=0.3)
    f = m.predict(x)
    assert np.isclose(tr["loss"][0], np.mean((y - f) ** 2) + 0.3 * np.sum(m.params["w3"] ** 2), rtol=1e-12)


def test_fc_net_and_width_matching(rng):
    net = KW.FCNet(4, 3, h=5, rng=0)
    x = rng.uniform(0, 1, (3, 1, 4, 3))
    net.params["w2"][...] = rng.standard_normal(5)
    v = x.reshape(3, -1)
    assert np.allclose(net.forward(x), sigma(v @ net.params["w1"].T + net.params["w1_bias"]) @ net.params["w2"])
    cnn = KW.KohlerCNN(16, K_n=32, k=(4, 1), M=(2, 1))
    h = KW.fc_width_for(cnn.n_parameters(), 16)
    assert abs(KW.FCNet(16, h=h).n_parameters() - cnn.n_parameters()) <= 16 * 16 + 2


@pytest.mark.parametrize("kw,match", [({"k": (2, 2)}, "k_L = 1"), ({"pool": "sum"}, "pool"),
                                      ({"region": "D"}, "region"), ({"M": (3, 3, 3)}, "filter sizes"),
                                      ({"d1": 3, "M": (3, 2)}, "receptive field")])
def test_bad_configurations(kw, match):
    kw = {"d1": 6, "K_n": 2, "k": (2, 1), "M": (3, 2), **kw}
    with pytest.raises(ValueError, match=match):
        KW.KohlerCNN(**kw)


def test_bad_input_shape():
    m = KW.KohlerCNN(6, K_n=2, k=(2, 1), M=2)
    with pytest.raises(ValueError, match="KohlerCNN"):
        m.forward(np.zeros((2, 1, 6, 5)))
    with pytest.raises(RuntimeError):
        KW.KohlerCNN(6, K_n=2, k=(2, 1), M=2).backward(np.zeros(2))


def test_output_preconditioned_step_lands_on_the_ridge_minimiser(rng):
    """precondition="output": with λ_n = 0 (inner weights still) one step puts w^(L+1) at the exact minimiser
    of F_n over the output weights, (ΦᵀΦ/n + c_n I)⁻¹ Φᵀy/n; a second step leaves it there."""
    x = rng.uniform(0, 1, (30, 1, 5, 5))
    y = (rng.random(30) < 0.5).astype(float)
    c_n = 1e-2
    m = KW.KohlerCNN(5, K_n=6, k=(2, 1), M=2, A=3.0, rng=1)
    phi = m.features(x)
    ridge = np.linalg.solve(phi.T @ phi / 30 + c_n * np.eye(6), phi.T @ y / 30)
    tr = KW.fit(m, x, y, lambda_n=0.0, t_n=2, c_n=c_n, precondition="output")
    assert np.allclose(m.params["w3"], ridge, rtol=1e-10, atol=1e-12)
    r = phi @ ridge - y
    assert np.isclose(tr["loss"][1], r @ r / 30 + c_n * ridge @ ridge, rtol=1e-12)
    assert np.isclose(tr["loss"][2], tr["loss"][1], rtol=1e-12) and tr["loss"][1] < tr["loss"][0]
    assert m.input_grad is True


def test_output_preconditioned_fit_moves_inner_weights_and_beats_plain_gd(rng):
    x = rng.uniform(0, 1, (40, 1, 5, 5))
    y = (rng.random(40) < 0.5).astype(float)
    m = KW.KohlerCNN(5, K_n=8, k=(2, 1), M=2, A=3.0, rng=2)
    lam = KW.output_step_size(m, x, c_n=1e-3)
    plain = KW.fit(m.copy(), x, y, lam, 10, 1e-3)
    pre_model = m.copy()
    pre = KW.fit(pre_model, x, y, lam, 10, 1e-3, precondition="output")
    assert pre["loss"].shape == plain["loss"].shape == (11,) and pre["loss"][-1] < plain["loss"][-1]
    assert not np.array_equal(pre_model.params["w1"], m.params["w1"])
    with pytest.raises(ValueError, match="precondition"):
        KW.fit(m.copy(), x, y, lam, 1, 1e-3, precondition="newton")


def test_output_preconditioned_fc_net(rng):
    x = rng.uniform(0, 1, (25, 1, 4, 4))
    y = (rng.random(25) < 0.5).astype(float)
    net = KW.FCNet(4, h=5, rng=0)
    v = x.reshape(25, -1)
    phi = sigma(v @ net.params["w1"].T + net.params["w1_bias"])
    KW.fit(net, x, y, 0.0, 1, 1e-2, precondition="output")
    assert np.allclose(net.params["w2"], np.linalg.solve(phi.T @ phi / 25 + 1e-2 * np.eye(5), phi.T @ y / 25),
                       rtol=1e-10)
