"""Allen-Zhu, Li & Song 2019 measured quantities: spectral radius, gradient ratio, semi-smoothness
remainder, sign flips, NTK extremes, rates and the theorem shapes."""
import numpy as np
import pytest

from refnets.data.synthetic import sphere_regression
from refnets.losses import HalfSquaredSum
from refnets.models import allenzhu2019 as AZ
from refnets.optim import GD
from refnets.theory import allenzhu2019 as T
from refnets.train import train


@pytest.mark.parametrize("shape", [(5, 3), (40, 40), (60, 50)])
def test_spectral_norm_matches_svd(rng, shape):
    M = rng.standard_normal(shape)
    assert abs(T.spectral_norm(M, tol=1e-12, max_iter=5000) - np.linalg.norm(M, 2)) < 1e-6 * np.linalg.norm(M, 2)
    low = rng.standard_normal((shape[0], 2)) @ rng.standard_normal((2, shape[1]))
    s, v = T.spectral_norm(low, return_vector=True)
    assert abs(s - np.linalg.norm(low, 2)) < 1e-6 * s
    # warm start from the previous vector: converges at once
    s2 = T.spectral_norm(low * 1.01, v0=v, max_iter=3)
    assert abs(s2 - 1.01 * s) < 1e-6 * s
    assert T.spectral_norm(np.zeros(shape)) == 0.0


def test_radius_and_relative_radius(rng):
    W0 = {"W1": rng.standard_normal((40, 40)), "W2": rng.standard_normal((40, 40))}
    D = {"W1": np.outer(rng.standard_normal(40), rng.standard_normal(40)), "W2": np.zeros((40, 40))}
    W = {k: W0[k] + D[k] for k in W0}
    r = T.radius(W, W0, ["W1", "W2"])
    assert abs(r - np.linalg.norm(D["W1"], 2)) < 1e-9 * r
    rel = T.radius(W, W0, ["W1", "W2"], relative=True)
    assert abs(rel - r / np.linalg.norm(W0["W1"], 2)) < 1e-4 * rel


def test_gradient_ratio_and_scales():
    g = {"W1": np.full((2, 2), 1.0), "W2": np.full((2, 2), 2.0)}
    mx, tot = T.gradient_ratio(g, 2.0, ["W1", "W2"])
    assert mx == 16.0 / 2.0 and tot == 20.0 / 2.0
    assert all(np.isnan(T.gradient_ratio(g, 0.0, ["W1"])))
    assert T.gradient_scale(0.5, 100, 10, 5) == pytest.approx(0.5 * 100 / (10 * 25))
    assert T.gradient_upper_scale(3, 5, 100, 10) == pytest.approx(150.0)


def test_gradient_ratio_is_bounded_below_by_twice_lambda_min():
    """‖Jᵀr‖² ≥ λ_min(JJᵀ)‖r‖² = 2λ_min F for the squared loss: the mechanism behind Theorem 3."""
    x, y, _ = sphere_regression(6, 5, rng=0)
    net = AZ.FCNet(5, 64, 2, rng=1)
    K = T.ntk_matrix(net, x, net.hidden_names)
    F, g = T.loss_and_gradient(net, HalfSquaredSum(), x, y, net.hidden_names)
    _, tot = T.gradient_ratio(g, F, net.hidden_names)
    ev = np.linalg.eigvalsh(K)
    assert 2 * ev[0] - 1e-9 <= tot <= 2 * ev[-1] + 1e-9
    lo, hi = T.gradient_ratio_extremes(net, x, net.hidden_names)
    assert lo == pytest.approx(2 * ev[0]) and hi == pytest.approx(2 * ev[-1])
    # the extremes are attained: targets whose residual is the bottom eigenvector
    w, V = np.linalg.eigh(K)
    f0 = net.forward(x)
    F, g = T.loss_and_gradient(net, HalfSquaredSum(), x, f0 - V[:, :1], net.hidden_names)
    assert T.gradient_ratio(g, F, net.hidden_names)[1] == pytest.approx(lo, rel=1e-9)


def test_semi_smooth_remainder_of_the_linear_model_is_its_quadratic_term():
    """For f_lin and F = ½‖f − y‖², F(W + W′) − F(W) − ⟨∇F, W′⟩ = ½‖J W′‖² exactly."""
    x, y, _ = sphere_regression(5, 4, rng=0)
    net = AZ.FCNet(4, 12, 2, rng=2)
    lin = AZ.Linearised(net, x)
    dirs = [T.random_direction(lin.params, net.hidden_names, r, rng=k) for k, r in enumerate([1e-3, 0.1, 2.0])]
    F, rem, inner = T.semi_smooth_remainder(lin, HalfSquaredSum(), x, y, dirs)
    for D, R in zip(dirs, rem):
        lin.forward(x)
        JW = lin.jvp(None, D)
        assert abs(R - 0.5 * np.sum(JW ** 2)) < 1e-10 * max(1.0, abs(R))
    assert np.all(np.abs(np.array([T.spectral_norm(d["W1"]) for d in dirs]) - [1e-3, 0.1, 2.0]) < 1e-6)
    # parameters restored
    np.testing.assert_array_equal(lin.params["W1"], lin.W0["W1"])


def test_semi_smooth_remainder_of_the_network_is_second_order_for_small_steps():
    x, y, _ = sphere_regression(5, 4, rng=0)
    net = AZ.FCNet(4, 30, 2, rng=3)
    loss = HalfSquaredSum()
    D = T.random_direction(net.parameters(), net.hidden_names, 1.0, rng=0)
    rs = [1e-3, 1e-4]
    rem = [T.semi_smooth_remainder(net, loss, x, y, [{k: r * v for k, v in D.items()}])[1][0] for r in rs]
    # no ReLU flips at these radii: R(rW′) = r² R₂ exactly up to rounding
    assert abs(rem[1] / rem[0] - 1e-2) < 1e-4


def test_semi_smooth_bound_shape():
    b = T.semi_smooth_bound(4.0, np.array([0.1, 0.2]), n=2, m=100, d=4, L=3, c1=1, c2=0)
    assert b[1] / b[0] == pytest.approx(2 ** (4 / 3))
    b2 = T.semi_smooth_bound(0.0, 0.5, n=2, m=100, d=4, L=3, c2=1.0)
    assert b2 == pytest.approx(9 * 2 * 100 / 4 * 0.25)


def test_flip_fraction(rng):
    a = [rng.standard_normal((3, 4)) > 0, rng.standard_normal((3, 4)) > 0]
    b = [a[0].copy(), ~a[1]]
    assert T.flip_fraction(a, a) == 0.0
    assert T.flip_fraction(a, b) == 0.5
    with pytest.raises(ValueError):
        T.flip_fraction(a, a[:1])
    with pytest.raises(ValueError):
        T.flip_fraction([a[0]], [a[0][:2]])
    assert T.flip_bound(8.0) == pytest.approx(4.0)


@pytest.mark.parametrize("d_out", [1, 3])
def test_ntk_lambda_max_matches_explicit_jacobian(d_out):
    x, _, _ = sphere_regression(5, 4, rng=0)
    net = AZ.ResNet(4, 10, 2, d_out=d_out, rng=4)
    names = net.hidden_names
    rows = []
    for i in range(5):
        for k in range(d_out):
            net.forward(x)
            e = np.zeros((5, d_out))
            e[i, k] = 1.0
            net.backward(e)
            rows.append(np.concatenate([net.gradients()[n].ravel() for n in names]))
    J = np.array(rows)
    lam = np.linalg.eigvalsh(J @ J.T)[-1]
    assert abs(T.ntk_lambda_max(net, x, names, tol=1e-12, max_iter=2000) - lam) < 1e-6 * lam
    if d_out == 1:
        np.testing.assert_allclose(T.ntk_matrix(net, x, names), J @ J.T, rtol=1e-10)


def test_rates_and_hitting_times():
    v = 3.0 * 0.9 ** np.arange(50)
    rho, r2 = T.linear_rate(v)
    assert rho == pytest.approx(-np.log(0.9)) and r2 == pytest.approx(1.0)
    assert T.iterations_to(v, 3.0 * 0.9 ** 10 * 1.0000001) == 10
    assert T.iterations_to(v, 0.0) is None
    _, r2_sub = T.linear_rate(1.0 / np.arange(1, 200))  # sublinear: not a line on a log scale
    assert r2_sub < 0.9
    assert T.accuracy(np.array([[0.1, 2.0], [3.0, 0.0]]), [1, 1]) == 0.5


def test_theorem_shapes():
    assert T.step_size_theorem(4, 0.5, 2, 3, 100) == pytest.approx(4 * 0.5 / (16 * 9 * 100))
    t1 = T.iterations_theorem(2, 1, 0.5, 1e-3)
    assert T.iterations_theorem(4, 1, 0.5, 1e-3) / t1 == pytest.approx(2 ** 6)
    assert T.iterations_theorem(2, 2, 0.5, 1e-3) / t1 == pytest.approx(4)
    assert T.width_theorem(2, 1, 0.5, 3) == pytest.approx(2 ** 24 * 3 * 2 ** 8)
    c = T.coupling_bound(np.array([1e-2, 1e-2 / 2]), 100, 4, 2)
    assert c[0] / c[1] == pytest.approx(2 ** (4 / 3))


def test_recorder_on_gd_and_sgd():
    x, y, _ = sphere_regression(8, 5, rng=0)
    for batch in (None, 4):
        net = AZ.FCNet(5, 40, 2, rng=1)
        loss = HalfSquaredSum()
        rec = T.Recorder(net, x, y, loss, full_batch=batch is None, keep_outputs=True)
        tr = train(net, loss, x, y, GD(net, 0.02, trainable=AZ.TRAINABLE), steps=6, batch_size=batch,
                   callback=rec, record_every=3, rng=0)
        a = tr.arrays()
        assert a["rec_step"].tolist() == [0, 3, 6]
        assert a["radius"][0] == 0.0 and a["flip"][0] == 0.0 and a["radius"][-1] > 0
        F, g = T.loss_and_gradient(net, loss, x, y, net.hidden_names)
        assert a["F"][-1] == pytest.approx(F, rel=1e-12)
        assert a["grad_ratio_sum"][-1] == pytest.approx(T.gradient_ratio(g, F, net.hidden_names)[1], rel=1e-10)
        np.testing.assert_allclose(a["output"][-1], net.forward(x), rtol=1e-12)
        W0 = rec.W0["W1"]
        assert a["radius_rel"][-1] == pytest.approx(
            max(np.linalg.norm(net.params[k] - rec.W0[k], 2) / np.linalg.norm(rec.W0[k], 2) for k in ("W1", "W2")),
            rel=1e-4)
        assert W0.shape == (40, 40)
