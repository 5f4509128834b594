"""Allen-Zhu, Li & Song 2019 networks against PyTorch (float64): forward and every gradient of the three
variants, and the linearised model's output f(W⁰) + J(W⁰)ΔW against torch.func.jvp and its gradient
J(W⁰)ᵀr against torch.func.vjp."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.func import jvp, vjp  # noqa: E402

from refnets.data.synthetic import normalize_inputs  # noqa: E402
from refnets.models import allenzhu2019 as AZ  # noqa: E402

F = torch.nn.functional


def torch_forward(net, params, x):
    """The same network written directly in PyTorch from its equations (params: name -> tensor)."""
    if isinstance(net, AZ.CNN):
        h = x.reshape(x.shape[0], net.C, net.p)
        h = F.relu(F.conv1d(h, params["A"], padding="same"))
        for l in range(1, net.L + 1):
            h = F.relu(F.conv1d(h, params[f"W{l}"], padding="same"))
        return h.reshape(h.shape[0], -1) @ params["B"].T
    h = F.relu(x @ params["A"].T)
    for l in range(1, net.L + 1):
        W = params[f"W{l}"]
        h = F.relu(h + net.tau * h @ W.T) if isinstance(net, AZ.ResNet) else F.relu(h @ W.T)
    return h @ params["B"].T


def _config(variant, seed):
    rng = np.random.default_rng(seed)
    if variant == "fc":
        d, net = 7, AZ.FCNet(7, 9, 3, d_out=3, rng=rng)
    elif variant == "resnet":
        d, net = 6, AZ.ResNet(6, 11, 4, d_out=2, tau=0.4, rng=rng)
    else:
        if not AZ.conv_available():
            pytest.skip("refnets.layers.conv not there yet")
        d, net = 10, AZ.CNN((2, 5), 5, 2, d_out=2, q=3, rng=rng)
    x = normalize_inputs(rng.standard_normal((5, d - 1)))
    return net, x, rng


VARIANTS = ["fc", "resnet", "cnn"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_and_gradients_match_torch(variant, seed):
    net, x, rng = _config(variant, seed)
    out = net.forward(x)
    y = rng.standard_normal(out.shape)
    net.backward(out - y)  # gradient of ½‖ŷ − y‖²
    grads = net.gradients()
    dx = net.backward(out - y)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in net.parameters().items()}
    tx = torch.tensor(x, requires_grad=True)
    tout = torch_forward(net, tp, tx)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-13)
    (0.5 * ((tout - torch.tensor(y)) ** 2).sum()).backward()
    for k, p in tp.items():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_linearised_model_matches_torch_func(variant):
    net, x, rng = _config(variant, 3)
    names = net.hidden_names
    W0 = {k: v.copy() for k, v in net.parameters().items()}
    lin = AZ.Linearised(net, x)
    delta = {k: 0.2 * rng.standard_normal(W0[k].shape) for k in names}
    for k in names:
        lin.params[k] += delta[k]
    out = lin.forward(x)

    tx = torch.tensor(x)
    fixed = {k: torch.tensor(v) for k, v in W0.items() if k not in names}

    def f(*ws):
        return torch_forward(net, {**fixed, **dict(zip(names, ws))}, tx)

    primals = tuple(torch.tensor(W0[k]) for k in names)
    with warnings.catch_warnings():
        # torch's forward-mode AD scripts its jvp decompositions on first use, and torch 2.13 deprecates
        # its own torch.jit.script; only that message is silenced, and only here.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
        f0, jv = jvp(f, primals, tuple(torch.tensor(delta[k]) for k in names))
    np.testing.assert_allclose(out, (f0 + jv).numpy(), rtol=1e-11, atol=1e-12)

    r = rng.standard_normal(out.shape)
    lin.backward(r)
    _, pullback = vjp(f, *primals)
    for k, g in zip(names, pullback(torch.tensor(r))):
        np.testing.assert_allclose(lin.gradients()[k], g.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
