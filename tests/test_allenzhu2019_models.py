"""Allen-Zhu, Li & Song 2019 networks (FC, ResNet, CNN) and their linearisation: equations, inits,
gradients and Jacobian-vector products against central differences, the linear model's gradient."""
import numpy as np
import pytest
from conftest import numeric_grad, rel_error

from refnets.data.synthetic import normalize_inputs
from refnets.losses import HalfSquaredSum
from refnets.models import allenzhu2019 as AZ
from refnets.optim import GD

relu = lambda z: np.maximum(z, 0)  # noqa: E731


def _x(rng, n, d):
    return normalize_inputs(rng.standard_normal((n, d - 1)))


def _models(rng):
    out = [AZ.FCNet(5, 7, 2, d_out=3, rng=rng), AZ.ResNet(5, 6, 3, d_out=2, tau=0.5, rng=rng)]
    if AZ.conv_available():
        out.append(AZ.CNN((2, 3), 3, 2, d_out=2, q=3, rng=rng))
    return out


def _inputs(model, rng, n=3):
    return _x(rng, n, model.d)


def _min_abs_preact(model, x):
    model.forward(x)
    zs = [np.abs(model.net.layers["phi0"].cache[0])] + [np.abs(z) for z in model.preactivations()]
    return min(float(z.min()) for z in zs)


def _kink_free(k, seed0):
    """Model k and inputs whose every ReLU input is ≥ 1e-4 away from the kink, so central differences
    with h = 1e-6 never straddle it (kinks are detected and avoided, not hidden by a loose tolerance)."""
    for seed in range(seed0, seed0 + 50):
        rng = np.random.default_rng(seed)
        models = _models(rng)
        if k >= len(models):
            pytest.skip("conv not available")
        net = models[k]
        x = _inputs(net, rng)
        if _min_abs_preact(net, x) > 1e-4:
            return net, x, rng
    raise AssertionError("no kink-free configuration found")


def test_fc_equation_names_and_init(rng):
    m, L = 400, 3
    net = AZ.FCNet(6, m, L, d_out=2, rng=rng)
    assert list(net.parameters()) == ["A", "W1", "W2", "W3", "B"]
    p = net.parameters()
    assert p["A"].shape == (m, 6) and p["W2"].shape == (m, m) and p["B"].shape == (2, m)
    assert abs(p["W1"].std() - np.sqrt(2 / m)) < 0.02 * np.sqrt(2 / m)
    assert abs(p["A"].std() - np.sqrt(2 / m)) < 0.1 * np.sqrt(2 / m)
    assert abs(p["B"].std() - np.sqrt(1 / 2)) < 0.1
    x = _x(rng, 5, 6)
    h = relu(x @ p["A"].T)
    for l in range(1, L + 1):
        h = relu(h @ p[f"W{l}"].T)
    np.testing.assert_allclose(net.forward(x), h @ p["B"].T, rtol=1e-13, atol=1e-13)
    # the init keeps ‖h_ℓ‖ ≈ ‖x‖ = 1 (the N(0, 2/m) He scaling)
    assert abs(np.linalg.norm(h, axis=1).mean() - 1.0) < 0.15


def test_resnet_equation(rng):
    net = AZ.ResNet(5, 9, 2, d_out=1, tau=0.3, rng=rng)
    p = net.parameters()
    x = _x(rng, 4, 5)
    h = relu(x @ p["A"].T)
    for l in (1, 2):
        h = relu(h + 0.3 * h @ p[f"W{l}"].T)
    np.testing.assert_allclose(net.forward(x), h @ p["B"].T, rtol=1e-13, atol=1e-13)
    assert AZ.ResNet(5, 9, 4).tau == 0.5  # default 1/√L


@pytest.mark.skipif(not AZ.conv_available(), reason="refnets.layers.conv not there yet")
def test_cnn_equation_and_init(rng):
    C, p_, m, q = 2, 5, 6, 3
    net = AZ.CNN((C, p_), m, 2, d_out=2, q=q, rng=rng)
    P = net.parameters()
    assert P["W1"].shape == (m, m, q) and P["A"].shape == (m, C, 1) and P["B"].shape == (2, m * p_)
    big = AZ.CNN((C, p_), 200, 1, q=3, rng=0).parameters()["W1"]
    assert abs(big.std() - np.sqrt(2 / (3 * 200))) < 0.02 * np.sqrt(2 / 600)
    x = _x(rng, 3, C * p_)
    xs = x.reshape(3, C, p_)
    h = relu(np.einsum("mc,ncl->nml", P["A"][:, :, 0], xs))
    for l in (1, 2):
        W = P[f"W{l}"]
        hp = np.pad(h, ((0, 0), (0, 0), (1, 1)))
        # position j sees positions j-1, j, j+1: the paper's W_ℓ ∈ R^{m×qm} on q concatenated neighbours
        patches = np.stack([hp[:, :, j:j + q].reshape(3, -1) for j in range(p_)], axis=2)  # (N, m·q, p), channel-major
        h = relu(np.einsum("mk,nkl->nml", W.reshape(m, m * q), patches))
    np.testing.assert_allclose(net.forward(x), h.reshape(3, -1) @ P["B"].T, rtol=1e-12, atol=1e-13)


def test_only_w_is_trainable(rng):
    net = AZ.FCNet(4, 5, 3, rng=rng)
    opt = GD(net, 0.1, trainable=AZ.TRAINABLE)
    assert opt.names == ["W1", "W2", "W3"] == net.hidden_names


def test_parameters_are_aliases(rng):
    net = AZ.ResNet(4, 5, 2, rng=rng)
    x = _x(rng, 3, 4)
    before = net.forward(x).copy()
    net.params["W2"] *= 0.0
    assert not np.allclose(net.forward(x), before)
    assert np.all(net.net.layers["W2"].branch.params["W"] == 0)


@pytest.mark.parametrize("k", range(3))
def test_gradients_match_central_differences(k):
    net, x, rng = _kink_free(k, 10)
    y = rng.standard_normal(net.forward(x).shape)
    loss = HalfSquaredSum()

    def F():
        return loss.forward(net.forward(x), y)

    F()
    dx = net.backward(loss.backward())
    g = {k_: v.copy() for k_, v in net.gradients().items()}
    for name, p in net.parameters().items():
        assert rel_error(g[name], numeric_grad(F, p)) < 1e-7, name
    assert rel_error(dx, numeric_grad(F, x)) < 1e-7


@pytest.mark.parametrize("k", range(3))
def test_jvp_matches_central_differences(k):
    net, x, rng = _kink_free(k, 100)
    params = net.parameters()
    V = {n: rng.standard_normal(p.shape) for n, p in params.items()}
    dx = rng.standard_normal(x.shape)
    eps = 1e-6

    def f_at(s):
        saved = {n: p.copy() for n, p in params.items()}
        for n, p in params.items():
            p += s * V[n]
        out = net.forward(x + s * dx)
        for n, p in params.items():
            p[...] = saved[n]
        return out

    num = (f_at(eps) - f_at(-eps)) / (2 * eps)
    net.forward(x)
    assert rel_error(net.jvp(dx, V), num) < 1e-7
    # only the trained W's, no input direction
    Vw = {n: V[n] for n in net.hidden_names}
    num_w = (lambda s: _f_w(net, x, Vw, s))
    assert rel_error(net.jvp(None, Vw), (num_w(eps) - num_w(-eps)) / (2 * eps)) < 1e-7
    # the dot-product identity ⟨J v, u⟩ = ⟨v, Jᵀ u⟩
    net.forward(x)
    u = rng.standard_normal(num.shape)
    Jv = net.jvp(dx, V)
    JTu_x = net.backward(u)
    JTu = net.gradients()
    rhs = np.sum(JTu_x * dx) + sum(np.sum(JTu[n] * V[n]) for n in V)
    assert abs(np.sum(Jv * u) - rhs) < 1e-11 * max(1.0, abs(rhs))


def _f_w(net, x, V, s):
    params = net.parameters()
    saved = {n: params[n].copy() for n in V}
    for n in V:
        params[n] += s * V[n]
    out = net.forward(x)
    for n in V:
        params[n][...] = saved[n]
    return out


def test_jvp_rejects_unknown_names_and_needs_forward(rng):
    net = AZ.FCNet(4, 5, 1, rng=rng)
    with pytest.raises(RuntimeError, match="forward"):
        net.jvp(None, {})
    net.forward(_x(rng, 2, 4))
    with pytest.raises(KeyError, match="W9"):
        net.jvp(None, {"W9": np.zeros((5, 5))})


def test_bad_input_is_refused(rng):
    net = AZ.FCNet(4, 5, 1, rng=rng)
    with pytest.raises(ValueError, match="FCNet.*d"):
        net.forward(np.ones((2, 3)))
    with pytest.raises(TypeError, match="float32"):
        net.forward(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="variant"):
        AZ.make_network("mlp", 4, 5, 1)
    with pytest.raises(ValueError, match="tau"):
        AZ.ResNet(4, 5, 1, tau=-1.0)


def test_float32_runs(rng):
    net = AZ.FCNet(4, 6, 2, rng=rng, dtype=np.float32)
    x = _x(rng, 3, 4).astype(np.float32)
    out = net.forward(x)
    assert out.dtype == np.float32
    net.backward(np.ones_like(out))
    assert all(g.dtype == np.float32 for g in net.gradients().values())


# ----------------------------------------------------------------------------- linearisation
@pytest.mark.parametrize("variant", ["fc", "resnet", "cnn"])
def test_linearised_model(variant):
    if variant == "cnn" and not AZ.conv_available():
        pytest.skip("conv not available")
    rng = np.random.default_rng(5)
    net = AZ.make_network(variant, 6, 8, 2, d_out=2, rng=rng)
    x = _x(rng, 4, 6)
    f0 = net.forward(x).copy()
    lin = AZ.Linearised(net, x)
    np.testing.assert_array_equal(lin.forward(x), f0)
    V = {n: rng.standard_normal(lin.params[n].shape) for n in net.hidden_names}
    net.forward(x)
    Jv = net.jvp(None, V)
    for a in (1e-3, 0.5, 3.0):  # exactly affine in W, at any distance from W⁰
        for n in V:
            lin.params[n][...] = lin.W0[n] + a * V[n]
        np.testing.assert_allclose(lin.forward(x), f0 + a * Jv, rtol=1e-12, atol=1e-12)
        # another input array (scratch copy) gives the same values
        np.testing.assert_allclose(lin.forward(x.copy()), f0 + a * Jv, rtol=1e-12, atol=1e-12)
    # first-order agreement with the network: gap = O(ε²)
    gaps = []
    for eps in (1e-3, 1e-4):
        for n in V:
            lin.params[n][...] = lin.W0[n] + eps * V[n]
        gaps.append(np.abs(lin.forward(x) - _f_w(net, x, {n: V[n] for n in V}, eps)).max())
    assert gaps[1] < gaps[0] / 50
    # the original network is left alone by the linearisation
    np.testing.assert_array_equal(net.forward(x), f0)


@pytest.mark.parametrize("variant", ["fc", "resnet", "cnn"])
def test_linearised_gradient_matches_central_differences(variant):
    if variant == "cnn" and not AZ.conv_available():
        pytest.skip("conv not available")
    rng = np.random.default_rng(6)
    net = AZ.make_network(variant, 6, 3 if variant == "cnn" else 5, 2, d_out=2, rng=rng)
    x = _x(rng, 3, 6)
    lin = AZ.Linearised(net, x)
    for n in lin.params:  # away from W⁰, so the gradient is J(W⁰)ᵀ r with r ≠ f0 − y
        lin.params[n] += 0.3 * rng.standard_normal(lin.params[n].shape)
    y = rng.standard_normal((3, 2))
    loss = HalfSquaredSum()

    def F():
        return loss.forward(lin.forward(x), y)

    F()
    assert lin.backward(loss.backward()) is None
    g = {k: v.copy() for k, v in lin.gradients().items()}
    for name, p in lin.parameters().items():
        assert rel_error(g[name], numeric_grad(F, p, h=1e-5)) < 1e-8, name
    # and on other inputs (the scratch copy)
    x2 = _x(rng, 2, 6)
    y2 = rng.standard_normal((2, 2))
    loss.forward(lin.forward(x2), y2)
    lin.backward(loss.backward())
    g2 = lin.gradients()["W1"].copy()
    G = lambda: loss.forward(lin.forward(x2), y2)  # noqa: E731
    assert rel_error(g2, numeric_grad(G, lin.params["W1"], h=1e-5)) < 1e-8


def test_linearised_jvp_and_gram(rng):
    net = AZ.FCNet(5, 6, 2, d_out=1, rng=rng)
    x = _x(rng, 4, 5)
    lin = AZ.Linearised(net, x)
    out = lin.forward(x)
    lin.backward(np.ones_like(out))
    net.forward(x)
    net.backward(np.ones_like(out))
    for k, G in net.gram().items():
        np.testing.assert_allclose(lin.gram()[k], G, rtol=1e-13)
    V = {"W1": rng.standard_normal((6, 6))}
    np.testing.assert_allclose(lin.jvp(None, V), net.jvp(None, V), rtol=1e-13)
    with pytest.raises(NotImplementedError):
        lin.jvp(np.ones_like(x), V)


def test_gradcheck_factories_build():
    facs = AZ.gradcheck_factories()
    assert {"allenzhu2019.fc", "allenzhu2019.resnet"} <= set(facs)
    for name, fac in facs.items():
        model, x = fac(np.random.default_rng(0))
        out = model.forward(x)
        model.backward(np.ones_like(out))
        assert set(model.gradients()) == set(model.parameters()), name
