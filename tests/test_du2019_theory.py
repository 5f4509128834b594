"""Du et al. 2019 theory (refnets.theory.du2019): the K⁽ᴴ⁾ recursions against Monte Carlo at width 4096,
structural identities, the one-step dynamics, the theorem expressions and the GD trace."""
import numpy as np
import pytest

from refnets.layers.conv import patches1d
from refnets.models import du2019 as M
from refnets.theory import du2019 as T
from refnets.theory import gaussian as Gs


def rel_fro(A, B):
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


# --------------------------------------------------------------------------- Monte Carlo at large width
def test_fc_kernel_matches_monte_carlo_at_m4096_and_decides_the_reading():
    X = M.unit_inputs(6, 4, rng=5)
    net = M.FCNet(4, 4096, 2, rng=0)
    GH = T.last_layer_gram(net, X)
    err = rel_fro(GH, T.limit_kernel(net, X))
    err_slides = rel_fro(GH, T.limit_kernel(net, X, reading="slides"))
    assert err <= 0.05, err
    # the network's reading (A⁽ᴴ⁾ built from K⁽ᴴ⁻¹⁾) fits clearly better than the slides' A⁽ᴴ⁻¹⁾
    assert err < 0.5 * err_slides, (err, err_slides)


def test_resnet_kernel_matches_monte_carlo_at_m4096():
    X = M.unit_inputs(6, 4, rng=5)
    net = M.ResNet(4, 4096, 3, c_res=0.5, rng=1)        # H = 3 runs the b⁽ʰ⁾ recursion once
    err = rel_fro(T.last_layer_gram(net, X), T.limit_kernel(net, X))
    assert err <= 0.05, err


def test_conv_resnet_kernel_matches_monte_carlo_small_p():
    """p = 3, q = 3, H = 3 (patch traces and the per-position b⁽ʰ⁾). A conv layer at m = 4096 holds m·q·m
    weights (400 MB), so the 4096 channels are drawn as 4 independent networks of m = 1024 and their
    G⁽ᴴ⁾(0) averaged (the same number of random rows of W⁽ᴴ⁾ and a)."""
    X = M.unit_inputs(3, 2, 3, rng=1)
    Gs_ = [T.last_layer_gram(M.ConvResNet(2, 3, 1024, 3, c_res=0.5, rng=s), X) for s in range(4)]
    net = M.ConvResNet(2, 3, 8, 3, c_res=0.5)
    err = rel_fro(np.mean(Gs_, axis=0), T.limit_kernel(net, X))
    assert err <= 0.05, err


# --------------------------------------------------------------------------- structure of the recursions
def test_conv_kernel_with_one_position_is_the_resnet_kernel():
    X = M.unit_inputs(4, 3, rng=1)
    for H in (1, 2, 4):
        a = T.resnet_kernel(X, H, c_res=0.5)
        np.testing.assert_allclose(T.conv_resnet_kernel(X[:, :, None], H, c_res=0.5, q=3), a, rtol=1e-12, atol=1e-15)


def test_patch_trace_is_the_gram_of_patches():
    X = M.unit_inputs(3, 2, 5, rng=2)
    R = np.einsum("icl,jcr->iljr", X, X)
    for q in (1, 3, 5):
        P = patches1d(X, q)
        np.testing.assert_allclose(T.patch_trace(R, q), np.einsum("ial,jar->iljr", P, P), atol=1e-15)


def test_relu_fc_kernel_is_the_arc_cosine_recursion():
    """With ReLU the recursion has closed forms (c_σ = 2): an independent evaluation of K⁽ᴴ⁾."""
    X = M.unit_inputs(5, 3, rng=3)
    K = X @ X.T
    for _ in range(2):
        d = np.diag(K)
        K = 2 * Gs.relu_expect_sigma_sigma(d[:, None], K, d[None, :])
    d = np.diag(K)
    ref = 2 * K * Gs.relu_expect_dsigma_dsigma(d[:, None], K, d[None, :])
    np.testing.assert_allclose(T.fc_kernel(X, 3, activation="relu"), ref, atol=1e-12)


def test_h1_and_readings_and_cross_terms():
    X = M.unit_inputs(4, 3, rng=1)
    # H = 1: all three networks are the same one-layer network
    np.testing.assert_allclose(T.fc_kernel(X, 1), T.resnet_kernel(X, 1), atol=1e-15)
    # unit-norm inputs keep every K_ii equal, so the two readings of the cross term agree
    np.testing.assert_allclose(T.resnet_kernel(X, 4, cross="slides"), T.resnet_kernel(X, 4), atol=1e-14)
    Y = X * np.array([0.5, 1.0, 1.5, 2.0])[:, None]
    assert np.abs(T.resnet_kernel(Y, 4, cross="slides") - T.resnet_kernel(Y, 4)).max() > 1e-8
    K = T.resnet_kernel(X, 4)
    assert np.allclose(K, K.T) and T.lambda_min(K) > 0
    with pytest.raises(ValueError, match="reading"):
        T.fc_kernel(X, 2, reading="other")


# --------------------------------------------------------------------------- dynamics
@pytest.mark.parametrize("kind", ["fc", "resnet", "conv"])
def test_one_step_identity_residual_shrinks_like_eta_squared(kind):
    rng = np.random.default_rng(0)
    p = 4 if kind == "conv" else None
    net = M.make(kind, 3, 32, 3, p=p, rng=rng, **({} if kind == "fc" else {"c_res": 0.5}))
    X = M.unit_inputs(5, 3, p, rng=rng)
    y = rng.standard_normal(5)
    etas = np.array([4e-3, 2e-3, 1e-3, 5e-4]) / np.linalg.norm(T.gram(net, X), 2)
    res = np.array([T.one_step_residual(net, X, y, e) for e in etas])
    slope = np.polyfit(np.log(etas), np.log(res), 1)[0]
    assert 1.85 < slope < 2.15, (slope, res)
    # the parameters are left where they were
    u = net.forward(X).copy()
    T.one_step_residual(net, X, y, etas[0])
    np.testing.assert_array_equal(net.forward(X), u)


def test_train_gd_trace_and_linear_rate():
    rng = np.random.default_rng(1)
    n = 5
    net = M.ResNet(4, 128, 3, c_res=0.5, rng=rng)
    X = M.unit_inputs(n, 4, rng=rng)
    y = rng.choice([-1.0, 1.0], n)
    G0 = T.gram(net, X)
    W0 = {k: v.copy() for k, v in net.weights().items()}
    eta = 1.0 / np.linalg.norm(G0, 2)
    out = T.train_gd(net, X, y, eta, 2000, record_every=50, stop_ratio=1e-4)
    loss = out["loss"]
    assert not out["diverged"] and loss[-1] <= 1e-4 * loss[0]
    assert np.all(np.diff(loss) <= 1e-12 * loss[0])                  # monotone with this step
    # the measured rate is at least the one λ_min(G(0)) predicts, (1 − ηλ)ᵏ up to slack
    lam0 = T.lambda_min(G0)
    k = len(loss) - 1
    assert loss[-1] <= loss[0] * (1 - 0.5 * eta * lam0) ** k
    assert out["rec_step"][0] == 0 and out["rec_step"][-1] == k
    assert set(out["movement"]) == {"W1", "W2", "W3", "a"}
    assert out["movement"]["W1"][0] == 0
    for name, W in net.weights().items():     # the trace's movement is (1/√m)‖W(k) − W(0)‖_F, and it is small
        assert out["movement"][name][-1] == pytest.approx(np.linalg.norm(W - W0[name]) / np.sqrt(128), rel=1e-12)
        assert 0 < np.linalg.norm(W - W0[name]) < 0.5 * np.linalg.norm(W0[name]), name
    assert out["G_dist"][0] == 0 and np.all(out["lambda_min"] > 0)


@pytest.mark.parametrize("kind", ["fc", "resnet", "conv"])
def test_train_gd_matches_the_library_training_loop(kind):
    """train_gd's lean loop makes the same GD steps as refnets.train.train with refnets.optim.GD."""
    from refnets.losses import HalfSquaredSum
    from refnets.optim import GD
    from refnets.train import train
    rng = np.random.default_rng(3)
    p = 5 if kind == "conv" else None
    X = M.unit_inputs(4, 3, p, rng=rng)
    y = rng.choice([-1.0, 1.0], 4)
    a, b = (M.make(kind, 3, 8, 3, p=p, rng=7) for _ in range(2))
    eta = 0.5 / np.linalg.norm(T.gram(a, X), 2)
    out = T.train_gd(a, X, y, eta, 30, record_every=7)
    tr = train(b, HalfSquaredSum(), X, y.reshape(-1, 1), GD(b, eta), 30)
    np.testing.assert_allclose(out["loss"], tr["loss"], rtol=1e-12, atol=0)
    for k, v in a.parameters().items():
        np.testing.assert_allclose(v, b.parameters()[k], rtol=1e-12, atol=1e-14)


def test_linearised_movement_predicts_the_trained_movement():
    """At a width where G barely moves, GD's movement at convergence is J_hᵀG(0)⁻¹(y − u(0)) (per layer)."""
    rng = np.random.default_rng(5)
    X = M.unit_inputs(4, 2, 4, rng=rng)
    y = rng.choice([-1.0, 1.0], 4)
    net = M.ConvResNet(2, 4, 128, 2, c_res=0.5, rng=1)
    pred = T.linearised_movement(net, X, y)
    u0 = net.forward(X).copy()
    out = T.train_gd(net, X, y, 1.0 / np.linalg.norm(T.gram(net, X), 2), 5000, record_every=5000, stop_ratio=1e-10)
    assert out["loss"][-1] <= 1e-10 * out["loss"][0]
    np.testing.assert_array_equal(M.ConvResNet(2, 4, 128, 2, c_res=0.5, rng=1).forward(X), u0)  # pred left θ(0)
    for name, v in pred.items():
        assert out["movement"][name][-1] == pytest.approx(v, rel=0.05), name


def test_linearised_movement_is_noisy_per_draw_and_falls_with_width_on_average():
    """One network's movement depends on its draw (through u(0)); the average over draws falls like m^(-1/2).
    Why E4 does not read a rate off one network per width."""
    rng = np.random.default_rng(2)
    X = M.unit_inputs(5, 3, 6, rng=rng)
    y = rng.choice([-1.0, 1.0], 5)
    mv = {m: np.array([max(T.linearised_movement(M.ConvResNet(3, 6, m, 2, c_res=0.5, rng=s), X, y).values())
                       for s in range(12)]) for m in (16, 256)}
    assert np.std(mv[16]) > 0.1 * np.mean(mv[16])                       # a single draw is a noisy sample
    slope = np.log(np.mean(mv[256]) / np.mean(mv[16])) / np.log(16)
    assert -0.7 < slope < -0.35, slope


def test_train_gd_reports_divergence():
    net = M.FCNet(3, 16, 2, rng=0)
    X = M.unit_inputs(4, 3)
    out = T.train_gd(net, X, np.ones(4), 1e300, 50)
    assert out["diverged"]


# --------------------------------------------------------------------------- theorem expressions
def test_rate_bound_width_and_step_expressions():
    np.testing.assert_allclose(T.rate_bound([0, 1, 2], 0.5, 0.4, 3.0), 3.0 * 0.9 ** np.arange(3))
    n, lam, H = 10, 0.1, 4
    assert T.width_fc(n, lam, H) == pytest.approx(2 ** H * n ** 4 / lam ** 4)
    assert T.width_fc(n, lam, H + 1) == pytest.approx(2 * T.width_fc(n, lam, H))   # exponential in H
    assert T.width_resnet(n, lam, H, c=2.0) == pytest.approx(2 * max(n ** 4 / (lam ** 4 * H ** 6), n ** 2 / (lam ** 2 * H ** 2),
                                                                     n / 0.1, n ** 2 * np.log(H * n / 0.1) / lam ** 2))
    assert T.step_fc(n, lam, H) == pytest.approx(lam / (n ** 2 * 2 ** H))
    assert T.step_resnet(n, lam, H) == pytest.approx(lam * H ** 2 / n ** 2)
    assert T.step_conv(n, lam, H, p=8, p_exp=2) == pytest.approx(T.step_resnet(n, lam, H) / 64)
    assert T.width_conv(n, lam, H, p=8) == pytest.approx(8 * T.width_resnet(n, lam, H))
