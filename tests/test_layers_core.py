"""Dense, activations and containers: gradients, Gram shares, jvp, bad input."""
import numpy as np
import pytest

import refnets as rn
from refnets import init
from refnets.ntk import empirical_ntk, lambda_min, per_sample_gradients

from conftest import numeric_grad, rel_error


def check_layer_grads(layer, x, rng, tol=1e-7):
    """Central differences of ⟨dout, f(x)⟩ against backward, for x and every parameter."""
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    grads = layer.gradients()
    f = lambda: float(np.sum(dout * layer.forward(x)))
    assert rel_error(numeric_grad(f, x), dx) < tol
    for name, p in layer.parameters().items():
        assert rel_error(numeric_grad(f, p), grads[name]) < tol, name


def mlp(rng_seed=0, m=7, d=5):
    return rn.Sequential({
        "W1": rn.Dense(d, m, bias=True, init=init.normal(1.0), rng=rng_seed),
        "s1": rn.Softplus(),
        "res": rn.Residual(rn.Sequential(rn.Dense(m, m, rng=rng_seed + 1), rn.Tanh()), scale=0.3),
        "mix": rn.Parallel(rn.Dense(m, 1, rng=rng_seed + 2), rn.Sequential(rn.Dense(m, 1, bias=True, rng=3), rn.Logistic()),
                           weights="learned", rng=4),
    })


@pytest.mark.parametrize("make", [
    lambda: rn.Dense(4, 3, bias=True, scale=0.7, rng=1),
    lambda: rn.Dense(1, 1, rng=2),
    lambda: rn.Softplus(), lambda: rn.Logistic(), lambda: rn.Tanh(), lambda: rn.Identity(),
    lambda: mlp(),
    lambda: rn.Sequential(rn.Reshape((2, 3)), rn.Flatten(), rn.Dense(6, 2, rng=0)),
    lambda: rn.Parallel(rn.Dense(4, 2, rng=0), rn.Dense(4, 2, rng=1), weights=[0.5, -2.0]),
])
def test_smooth_layers_gradcheck(make, rng):
    layer = make()
    d = {rn.Dense: None}.get(type(layer))
    in_dim = layer.in_features if isinstance(layer, rn.Dense) else (6 if isinstance(layer, rn.Sequential) and "0" in layer.layers else 4)
    if isinstance(layer, rn.Sequential) and "W1" in layer.layers:
        in_dim = 5
    x = rng.standard_normal((3, in_dim))
    check_layer_grads(layer, x, rng)


@pytest.mark.parametrize("act", [rn.ReLU(), rn.LeakyReLU(0.1)])
def test_kinked_activations_away_from_kink(act, rng):
    x = rng.standard_normal((4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep the ± step away from the kink
    check_layer_grads(act, x, rng)


def test_kinks_follow_pytorch_convention():
    z = np.array([0.0])
    assert rn.ReLU().deriv(z)[0] == 0.0
    assert rn.LeakyReLU(0.2).deriv(z)[0] == 0.2


@pytest.mark.parametrize("act", [rn.Softplus(), rn.Logistic(), rn.Tanh()])
def test_second_derivatives(act):
    z = np.linspace(-6, 6, 41)
    h = 1e-5
    num = (act.deriv(z + h) - act.deriv(z - h)) / (2 * h)
    assert np.max(np.abs(num - act.second_deriv(z))) < 1e-9
    num1 = (act.fn(z + h) - act.fn(z - h)) / (2 * h)
    assert np.max(np.abs(num1 - act.deriv(z))) < 1e-9


def test_logistic_and_softplus_extreme_values_without_warnings():
    z = np.array([-1e6, -800.0, -40.0, 0.0, 40.0, 800.0, 1e6])
    with np.errstate(all="raise"):
        s = rn.Logistic().fn(z)
        sp = rn.Softplus().fn(z)
        ds = rn.Logistic().deriv(z)
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    assert np.isclose(s[2], np.exp(-40.0) / (1 + np.exp(-40.0)), rtol=1e-15)
    assert sp[-1] == 1e6 and sp[0] == 0.0 and np.isclose(sp[2], np.log1p(np.exp(-40.0)), rtol=1e-15)
    assert np.all(np.isfinite(ds))


def test_float32_supported(rng):
    layer = rn.Dense(4, 3, bias=True, rng=0, dtype=np.float32)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    out = layer.forward(x)
    assert out.dtype == np.float32
    dx = layer.backward(np.ones_like(out))
    assert dx.dtype == np.float32 and layer.grads["W"].dtype == np.float32


def test_gram_equals_per_sample_gradients(rng):
    net = mlp()
    x = rng.standard_normal((6, 5))
    G = empirical_ntk(net, x)
    J = per_sample_gradients(net, x)
    assert np.allclose(G, J @ J.T, rtol=1e-12, atol=1e-12)
    shares = empirical_ntk(net, x, per_layer=True)
    assert set(shares) == set(net.parameters())
    for S in shares.values():
        assert np.allclose(S, S.T) and lambda_min(S) > -1e-10  # each share is PSD


def test_jvp_matches_finite_differences(rng):
    net = mlp()
    x = rng.standard_normal((4, 5))
    params = net.parameters()
    dp = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    dx = rng.standard_normal(x.shape)
    net.forward(x)
    t = net.jvp(dx, dp)
    h = 1e-6

    def shifted(sign):
        for k in params:
            params[k] += sign * h * dp[k]
        out = net.forward(x + sign * h * dx)
        for k in params:
            params[k] -= sign * h * dp[k]
        return out
    num = (shifted(+1) - shifted(-1)) / (2 * h)
    assert rel_error(num, t) < 1e-8


def test_jvp_vjp_duality(rng):
    """⟨J u, v⟩ = ⟨u, Jᵀ v⟩ for the input direction and every parameter direction."""
    net = mlp()
    x = rng.standard_normal((4, 5))
    out = net.forward(x)
    v = rng.standard_normal(out.shape)
    u_x = rng.standard_normal(x.shape)
    u_p = {k: rng.standard_normal(p.shape) for k, p in net.parameters().items()}
    lhs = float(np.sum(net.jvp(u_x, u_p) * v))
    dx = net.backward(v)
    g = net.gradients()
    rhs = float(np.sum(dx * u_x)) + sum(float(np.sum(g[k] * u_p[k])) for k in u_p)
    assert abs(lhs - rhs) < 1e-12 * max(1.0, abs(lhs))


def test_backward_overwrites_not_accumulates(rng):
    layer = rn.Dense(3, 2, rng=0)
    x = rng.standard_normal((4, 3))
    out = layer.forward(x)
    layer.backward(np.ones_like(out))
    g1 = layer.grads["W"].copy()
    layer.backward(np.ones_like(out))
    assert np.array_equal(layer.grads["W"], g1)


def test_parameter_names_and_set_parameters():
    net = mlp()
    names = list(net.parameters())
    assert names == ["W1.W", "W1.b", "res.branch.0.W", "mix.w", "mix.0.W", "mix.1.0.W", "mix.1.0.b"]
    net.set_parameters({"mix.w": np.array([1.0, 2.0])})
    assert np.array_equal(net.parameters()["mix.w"], [1.0, 2.0])
    with pytest.raises(KeyError, match="no parameter named"):
        net.set_parameters({"nope": np.zeros(1)})
    with pytest.raises(ValueError, match=r"mix.w.*shape \(2,\)"):
        net.set_parameters({"mix.w": np.zeros(3)})


def test_same_seed_same_bits():
    a, b = mlp(5), mlp(5)
    for k, v in a.parameters().items():
        assert np.array_equal(v, b.parameters()[k])


# ------------------------------------------------------------------ bad input
def test_dense_bad_inputs():
    d = rn.Dense(3, 2, name="fc1")
    with pytest.raises(ValueError, match=r"fc1: input must have ndim 2.*got ndim 3"):
        d.forward(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"fc1: input axis 1 \(in_features\) must be 3, got 4"):
        d.forward(np.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"fc1: input must have a floating dtype.*int64"):
        d.forward(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(TypeError, match=r"fc1: input has dtype float32 but the layer's parameters are float64"):
        d.forward(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match=r"fc1: input must be a numpy.ndarray, got list"):
        d.forward([[0.0, 0.0, 0.0]])
    x = np.zeros((2, 3))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"fc1: input contains non-finite values \(first at index \(1, 2\)"):
        d.forward(x)
    with pytest.raises(RuntimeError, match="fc1: backward called before forward"):
        d.backward(np.zeros((2, 2)))
    d.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"fc1: dout must have the shape of the forward output \(2, 2\), got \(2, 3\)"):
        d.backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="fc1: dout contains non-finite"):
        d.backward(np.full((2, 2), np.inf))
    with pytest.raises(ValueError, match="in_features must be a positive integer"):
        rn.Dense(0, 2)


def test_activation_and_container_bad_inputs():
    with pytest.raises(RuntimeError, match="ReLU: backward called before forward"):
        rn.ReLU().backward(np.zeros(3))
    with pytest.raises(ValueError, match="LeakyReLU: alpha must be in"):
        rn.LeakyReLU(1.5)
    with pytest.raises(ValueError, match="unknown activation 'sigmoidx'"):
        rn.get_activation("sigmoidx")
    with pytest.raises(TypeError, match="element '0' is a int"):
        rn.Sequential(3)
    r = rn.Residual(rn.Dense(3, 2, rng=0), name="block")
    with pytest.raises(ValueError, match="block: the branch maps shape"):
        r.forward(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"cannot reshape input of shape \(2, 5\)"):
        rn.Reshape((2, 2)).forward(np.zeros((2, 5)))
    p = rn.Parallel(rn.Dense(3, 2, rng=0), rn.Dense(3, 1, rng=1), name="par")
    with pytest.raises(ValueError, match="par: branches return different shapes"):
        p.forward(np.zeros((1, 3)))
    with pytest.raises(RuntimeError, match="gram called before backward"):
        d = rn.Dense(2, 1)
        d.forward(np.zeros((1, 2)))
        d.gram()


def test_sensitivities_only_gives_the_same_dx_without_parameter_gradients(rng):
    from refnets.layers.base import param_grads_enabled, sensitivities_only
    net = rn.Sequential({"c": rn.Conv2d(2, 3, 3, padding=1, rng=1), "r": rn.Softplus(), "f": rn.Flatten(),
                         "d": rn.Dense(3 * 5 * 4, 2, rng=2)})
    x = rng.standard_normal((3, 2, 5, 4))
    dout = rng.standard_normal((3, 2))
    net.forward(x)
    dx = net.backward(dout)
    assert set(net.gradients()) == {"c.W", "c.b", "d.W"}
    with sensitivities_only():
        assert not param_grads_enabled()
        dx2 = net.backward(dout)
        assert net.gradients() == {}
    assert param_grads_enabled()
    assert np.array_equal(dx, dx2)
    with pytest.raises(RuntimeError), sensitivities_only():
        raise RuntimeError("the switch is restored on the way out")
    assert param_grads_enabled()
    # the NTK shares come from dout and the caches only: same G with and without the switch
    G = empirical_ntk(rn.Sequential({"n": net, "o": rn.Dense(2, 1, rng=3)}), x)
    P = per_sample_gradients(rn.Sequential({"n": net, "o": rn.Dense(2, 1, rng=3)}), x)
    assert rel_error(G, P @ P.T) < 1e-12


@pytest.mark.parametrize("which", ["convpool", "allenzhu_fc"])
def test_empirical_ntk_of_models_that_rename_gradients(which):
    """Models that alias their sub-layers' gradients must work inside sensitivities_only (empirical_ntk)."""
    if which == "convpool":
        from refnets.models.brutzkus2021 import ConvPool
        model, x = ConvPool(d=3, k=4, rng=1), np.random.default_rng(2).standard_normal((5, 4 * 3))
    else:
        from refnets.models.allenzhu2019 import FCNet
        model, x = FCNet(d=4, m=8, L=2, rng=1), np.random.default_rng(2).standard_normal((5, 4))
    G = empirical_ntk(model, x)
    P = per_sample_gradients(model, x)
    assert rel_error(G, P @ P.T) < 1e-12
    model.forward(x)
    model.backward(np.ones(model.forward(x).shape))
    assert model.gradients()                                # outside the switch, gradients are back
