"""Du et al. 2019 networks (refnets.models.du2019): the exact scalings of Eq. (1)–(3) against a hand-written
NumPy forward, initialisation, the per-layer Gram against explicit per-sample gradients, gradcheck."""
import numpy as np
import pytest

from refnets.layers.activations import softplus
from refnets.layers.conv import patches1d
from refnets.models import du2019 as M
from refnets.ntk import per_sample_gradients
from refnets.theory.gaussian import c_sigma


def _fc_by_hand(W, a, X, cs):
    m = a.shape[1]
    x = X.T
    for Wh in W:
        x = np.sqrt(cs / m) * softplus(Wh @ x)          # Eq. (1)
    return (a @ x).ravel()


def test_fc_forward_is_eq1(rng):
    net = M.FCNet(5, 16, 3, rng=rng)
    X = M.unit_inputs(4, 5, rng=rng)
    w = net.weights()
    ref = _fc_by_hand([w["W1"], w["W2"], w["W3"]], w["a"], X, c_sigma("softplus"))
    np.testing.assert_allclose(net.forward(X).ravel(), ref, rtol=1e-13)
    assert net.forward(X).shape == (4, 1)


def test_resnet_forward_is_eq2(rng):
    d, m, H, c_res = 5, 16, 4, 0.3
    net = M.ResNet(d, m, H, c_res=c_res, rng=rng)
    X = M.unit_inputs(4, d, rng=rng)
    w, cs = net.weights(), c_sigma("softplus")
    x = np.sqrt(cs / m) * softplus(w["W1"] @ X.T)
    for h in range(2, H + 1):
        x = x + c_res / (H * np.sqrt(m)) * softplus(w[f"W{h}"] @ x)   # Eq. (2), skip at every layer
    np.testing.assert_allclose(net.forward(X).ravel(), (w["a"] @ x).ravel(), rtol=1e-13)


def test_conv_resnet_forward_is_eq3(rng):
    d, p, m, H, c_res, q = 2, 6, 8, 3, 0.4, 3
    net = M.ConvResNet(d, p, m, H, c_res=c_res, q=q, rng=rng)
    X = M.unit_inputs(3, d, p, rng=rng)
    w, cs = net.weights(), c_sigma("softplus")
    out = []
    for xi in X:
        x = np.sqrt(cs / m) * softplus(w["W1"].reshape(m, -1) @ patches1d(xi[None], q)[0])    # W⁽¹⁾φ(x) ∈ ℝ^{m×p}
        for h in range(2, H + 1):
            x = x + c_res / (H * np.sqrt(m)) * softplus(w[f"W{h}"].reshape(m, -1) @ patches1d(x[None], q)[0])
        out.append(np.sum(w["a"].reshape(m, p) * x))                   # ⟨a, x⁽ᴴ⁾⟩
    np.testing.assert_allclose(net.forward(X).ravel(), out, rtol=1e-13)


def test_init_is_standard_normal_and_names():
    net = M.ResNet(8, 256, 3, rng=0)
    assert set(net.weights()) == {"W1", "W2", "W3", "a"}
    allw = np.concatenate([v.ravel() for v in net.weights().values()])
    assert abs(allw.mean()) < 0.01 and abs(allw.std() - 1) < 0.01
    assert net.weights()["W2"].shape == (256, 256) and net.weights()["a"].shape == (1, 256)
    conv = M.ConvResNet(3, 5, 16, 2, rng=0)
    assert conv.weights()["W1"].shape == (16, 3, 3) and conv.weights()["W2"].shape == (16, 16, 3)
    assert conv.weights()["a"].shape == (1, 16 * 5)
    # the same seed gives the same bits
    np.testing.assert_array_equal(M.FCNet(3, 8, 2, rng=4).weights()["W2"], M.FCNet(3, 8, 2, rng=4).weights()["W2"])


@pytest.mark.parametrize("kind", ["fc", "resnet", "conv"])
def test_gram_equals_gram_of_explicit_per_sample_gradients(kind):
    rng = np.random.default_rng(3)
    net = M.make(kind, 3, 12, 3, p=5 if kind == "conv" else None, c_res=0.5, rng=rng) if kind != "fc" \
        else M.FCNet(3, 12, 3, rng=rng)
    X = M.unit_inputs(6, 3, 5 if kind == "conv" else None, rng=rng)
    shares = M.gram(net, X, per_layer=True)
    assert set(shares) == {"W1", "W2", "W3", "a"}
    J = per_sample_gradients(net, X)                    # (n, P), one backward per sample
    np.testing.assert_allclose(sum(shares.values()), J @ J.T, rtol=1e-12, atol=1e-12)
    # and per layer: the columns of J that belong to W⁽ʰ⁾
    names = list(net.parameters())
    sizes = [net.parameters()[k].size for k in names]
    cols = dict(zip(names, np.split(np.arange(sum(sizes)), np.cumsum(sizes)[:-1])))
    for short, full in net.weight_names.items():
        Jh = J[:, cols[full]]
        np.testing.assert_allclose(shares[short], Jh @ Jh.T, rtol=1e-12, atol=1e-13)
        assert np.linalg.eigvalsh(shares[short]).min() > -1e-10      # every G⁽ʰ⁾ is PSD


def test_activations_and_errors():
    for act, cs in [("relu", 2.0), ("tanh", None), ("logistic", None)]:
        net = M.FCNet(3, 8, 2, activation=act, rng=0)
        if cs is not None:
            assert net.c_sigma == pytest.approx(cs)
        assert np.all(np.isfinite(net.forward(M.unit_inputs(2, 3))))
    with pytest.raises(ValueError, match="c_res"):
        M.ResNet(3, 8, 2, c_res=-1.0)
    with pytest.raises(ValueError, match="odd"):
        M.ConvResNet(2, 4, 8, 2, q=2)
    with pytest.raises(ValueError, match="in_features"):
        M.FCNet(3, 8, 2).forward(np.ones((2, 4)))
    with pytest.raises(ValueError, match="needs p"):
        M.make("conv", 2, 8, 2)
    x = M.unit_inputs(5, 3, 4, rng=1)
    assert np.allclose(np.linalg.norm(x.reshape(5, -1), axis=1), 1.0)


def test_gradcheck_all_three_networks():
    from gradcheck.core import FAIL, check
    facs = M.gradcheck_factories()
    assert {"du2019.fc", "du2019.resnet", "du2019.conv_resnet"} <= set(facs)
    for name, fac in facs.items():
        res = check(fac, name=name)
        assert res.status != FAIL, (name, res.failures())
        assert {r.tensor for r in res.rows} >= set(fac(np.random.default_rng(0))[0].parameters()), name
