"""Brutzkus & Globerson 2021 models: ConvPool (Eq. 1), LW_CNN (Algorithm 1), Theorem 5.1's conditions,
end-to-end Adam, and the MLP and SVM baselines."""
import numpy as np
import pytest

from refnets.data import patterns as P
from refnets.models import brutzkus2021 as M
from tests.conftest import numeric_grad, rel_error


def test_convpool_is_equation_1():
    rng = np.random.default_rng(0)
    net = M.ConvPool(5, 7, r=0.3, rng=1)
    x = rng.standard_normal((6, 4 * 5))
    W, a = net.params["W"], net.params["a"]
    assert W.shape == (7, 5) and a.shape == (7,)
    expect = np.array([sum(a[i] * max(max(W[i] @ x[s, 5 * j:5 * j + 5], 0) for j in range(4)) for i in range(7))
                       for s in range(6)])
    np.testing.assert_allclose(net.decision(x), expect, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(net.features(x) @ a, expect, rtol=1e-12, atol=1e-14)
    # any number n of patterns
    assert net.forward(rng.standard_normal((2, 5))).shape == (2, 1)


def test_init_on_the_sphere_and_signs():
    net = M.ConvPool(6, 400, r=0.25, rng=3)
    np.testing.assert_allclose(np.linalg.norm(net.params["W"], axis=1), 0.25)
    a = net.params["a"]
    assert set(np.unique(a)) == {-1.0, 1.0} and abs(np.mean(a)) < 0.15
    # directions uniform: the mean direction is near 0
    assert np.linalg.norm(net.params["W"].mean(0)) < 0.25 * 0.2


def test_params_are_views_so_optimizers_move_the_network():
    net = M.ConvPool(3, 4, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 9))
    before = net.decision(x)
    net.params["a"][...] *= -1
    np.testing.assert_allclose(net.decision(x), -before)
    net.set_parameters({"W": np.zeros((4, 3))})
    np.testing.assert_array_equal(net.decision(x), 0)
    assert np.all(net.predict(x) == -1.0)   # N = 0 -> sign(0) = -1 (footnote 2)


def test_convpool_gradients_by_central_differences():
    rng = np.random.default_rng(4)
    net = M.ConvPool(4, 5, rng=2)
    x = rng.standard_normal((3, 12))
    dout = rng.standard_normal((3, 1))

    def f():
        return float(np.sum(net.forward(x) * dout))
    net.forward(x)
    dx = net.backward(dout)
    g = {k: v.copy() for k, v in net.grads.items()}
    assert net.max_margin() > 1e-4
    for name in ("W", "a"):
        assert rel_error(numeric_grad(f, net.params[name]), g[name]) < 1e-7
    assert rel_error(numeric_grad(f, x), dx) < 1e-7


def test_bad_input_is_named():
    net = M.ConvPool(4, 3)
    with pytest.raises(ValueError, match="multiple of d=4"):
        net.forward(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="r must be positive"):
        M.ConvPool(4, 3, r=0)


def test_split_is_ceil_half():
    assert M.split_S(7) == (slice(0, 4), slice(4, 7))
    assert M.split_S(6) == (slice(0, 3), slice(3, 6))


def test_lw_cnn_is_algorithm_1():
    """Stage 1 moves only W, with a at a⁽⁰⁾, by GD on ℒ₁ = ℒ[S₁]; stage 2 moves only a, by GD on ℒ₂."""
    O = P.orthonormal_patterns(4, 4, rng=0)
    x, y = P.sample(9, 3, O, rng=1)
    net = M.ConvPool(4, 6, r=0.5, rng=2)
    ref = M.ConvPool(4, 6, r=0.5, rng=2)
    res = M.lw_cnn(net, x, y, T1=3, T2=4, eta1=0.1, eta2=0.5)
    assert res.m1 == 5 and res.m2 == 4
    np.testing.assert_array_equal(res.a0, ref.params["a"])
    # replay Algorithm 1 by hand with the hand-checked gradients of the model
    from refnets.losses import logistic_loss
    s1, s2 = slice(0, 5), slice(5, 9)
    for _ in range(3):
        _, dp = logistic_loss(ref.forward(x[s1]), y[s1])
        ref.backward(dp)
        ref.params["W"][...] -= 0.1 * ref.grads["W"]
    np.testing.assert_allclose(res.W_T1, ref.params["W"], rtol=1e-12)
    np.testing.assert_allclose(net.params["W"], ref.params["W"], rtol=1e-12)
    for _ in range(4):
        _, dp = logistic_loss(ref.forward(x[s2]), y[s2])
        ref.backward(dp)
        ref.params["a"][...] -= 0.5 * ref.grads["a"]
    np.testing.assert_allclose(net.params["a"], ref.params["a"], rtol=1e-12)
    assert len(res.trace1["loss"]) == 4 and len(res.trace2["loss"]) == 5


def test_theorem_5_1_conditions_name_the_failure():
    hp = M.theorem_5_1_hyperparameters(3, T1=10)
    ok = M.check_theorem_5_1(hp["k"], 3, hp["eta1"], hp["eta2"], hp["r"], 10)
    assert ok.ok and not ok.failures
    ok.raise_if_failed()
    bad = M.check_theorem_5_1(hp["k"], 3, 2 * hp["eta1"], hp["eta2"], hp["r"], 10)
    assert not bad.ok and len(bad.failures) == 1 and "eta1 <= 1/(4k(T1+1))" in bad.failures[0]
    assert [f.split(" (")[0] for f in M.check_theorem_5_1(100, 3, hp["eta1"], 900.0, 1.0, 10).failures] == \
        ["eta2 < 8k", "r <= eta1/200", "k > 8d^3"]
    assert "T1 > 0" in M.check_theorem_5_1(hp["k"], 3, hp["eta1"], hp["eta2"], hp["r"], 0).failures[0]
    with pytest.raises(ValueError, match="k > 8d\\^3"):
        M.check_theorem_5_1(10, 3, 1e-4, 1.0, 1e-7, 10).raise_if_failed()


def test_adam_reaches_zero_training_error():
    O = P.orthonormal_patterns(8, 8, rng=0)
    x, y = P.sample(60, 5, O, rng=1)
    net = M.ConvPool(8, 40, rng=2)
    out = M.train_adam(net, x, y, lr=1e-2, max_epochs=300, stop_loss=0.05)
    assert out["train_error"] == 0 and out["train_loss"] <= 0.05
    assert M.error_rate(net, x, y) == 0


def test_mlp_width_matches_the_parameter_count():
    d, n, k = 20, 10, 500
    h = M.mlp_width(M.convpool_parameter_count(d, k), n * d)
    mlp = M.make_mlp(n * d, match=(d, k))
    conv = M.ConvPool(d, k)
    assert conv.n_parameters() == M.convpool_parameter_count(d, k) == 10500
    assert mlp.n_parameters() == h * (n * d + 1)
    assert abs(mlp.n_parameters() - conv.n_parameters()) <= (n * d + 1) / 2
    # exact when divisible: d = 4, k = 10 -> 50 parameters; n·d + 1 = 25 -> width 2
    assert M.make_mlp(24, match=(4, 10)).n_parameters() == M.ConvPool(4, 10).n_parameters()
    acts = [type(l).__name__ for l in mlp.layers.values()]
    assert acts == ["Dense", "LeakyReLU", "Dense"]


def test_svm_separable_and_not():
    pytest.importorskip("sklearn")
    pytest.importorskip("scipy")
    O = P.orthonormal_patterns(5, 5, rng=0)
    x, y = P.sample(60, 4, O, rng=1)
    s = M.hard_margin_svm(x, y)
    assert s.separable and s.train_error == 0 and "linearly separable" in s.message
    # hard margin: every training point at functional margin ≥ 1 (up to the solver's tolerance)
    assert np.min(y * s.decision(x)) > 1 - 1e-2
    # XOR-like labels: not separable, and said so
    xx = np.array([[0, 0], [1, 1], [0, 1], [1, 0]], float)
    yy = np.array([1, 1, -1, -1], float)
    s2 = M.hard_margin_svm(xx, yy)
    assert not s2.separable and "NOT linearly separable" in s2.message and s2.train_error > 0
    assert M.linearly_separable(x, y) and not M.linearly_separable(xx, yy)
