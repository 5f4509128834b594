"""Du et al. 2019 networks against PyTorch (float64, the same weights): outputs, the gradients of
½Σ(f − y)² for every layer, and the Gram matrix G(0) from per-sample Jacobians (torch.func)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch.func import jacrev, vmap  # noqa: E402

from refnets.models import du2019 as M  # noqa: E402
from refnets.theory.gaussian import c_sigma  # noqa: E402

ACTS = {"softplus": F.softplus, "tanh": torch.tanh, "logistic": torch.sigmoid, "relu": F.relu}


def torch_forward(net, P, x):
    """The paper's equations written directly in torch: Eq. (1), (2), (3). x (N, d) or (N, d, p)."""
    s = ACTS[type(net.activation).__name__.lower()]
    m, H, cs = net.m, net.H, net.c_sigma
    if net.kind == "fc":
        h = x
        for k in range(1, H + 1):
            h = np.sqrt(cs / m) * s(h @ P[f"W{k}"].T)
        return h @ P["a"].T
    if net.kind == "resnet":
        h = np.sqrt(cs / m) * s(x @ P["W1"].T)
        for k in range(2, H + 1):
            h = h + net.c_res / (H * np.sqrt(m)) * s(h @ P[f"W{k}"].T)
        return h @ P["a"].T
    pad = (net.q - 1) // 2
    h = np.sqrt(cs / m) * s(F.conv1d(x, P["W1"], padding=pad))
    for k in range(2, H + 1):
        h = h + net.c_res / (H * np.sqrt(m)) * s(F.conv1d(h, P[f"W{k}"], padding=pad))
    return (h.reshape(h.shape[0], -1) * P["a"]).sum(1, keepdim=True)


def _config(kind, act, seed):
    rng = np.random.default_rng(seed)
    d, m, H, n = int(rng.integers(2, 6)), int(rng.integers(5, 12)), int(rng.integers(2, 5)), int(rng.integers(2, 6))
    p = int(rng.integers(2, 7)) if kind == "conv" else None
    net = M.make(kind, d, m, H, p=p, activation=act, rng=rng, **({} if kind == "fc" else {"c_res": 0.3}))
    return net, M.unit_inputs(n, d, p, rng=rng), rng.standard_normal(n)


@pytest.mark.parametrize("kind", ["fc", "resnet", "conv"])
@pytest.mark.parametrize("act", ["softplus", "tanh", "relu"])
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_and_gradients_match_torch(kind, act, seed):
    net, X, y = _config(kind, act, seed)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in net.weights().items()}
    out_t = torch_forward(net, P, torch.tensor(X))
    loss_t = 0.5 * ((out_t.reshape(-1) - torch.tensor(y)) ** 2).sum()
    loss_t.backward()
    out = net.forward(X)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-13)
    net.backward(out - y[:, None])
    grads = net.gradients()
    for short, full in net.weight_names.items():
        np.testing.assert_allclose(grads[full], P[short].grad.numpy(), rtol=1e-11, atol=1e-12, err_msg=short)


@pytest.mark.parametrize("kind", ["fc", "resnet", "conv"])
def test_gram_matches_torch_per_sample_jacobians(kind):
    net, X, _ = _config(kind, "softplus", 3)
    P = {k: torch.tensor(v) for k, v in net.weights().items()}

    def single(Pd, xi):
        return torch_forward(net, Pd, xi[None]).reshape(())

    J = vmap(jacrev(single), in_dims=(None, 0))(P, torch.tensor(X))
    shares = M.gram(net, X, per_layer=True)
    for k, Jk in J.items():
        Jk = Jk.reshape(Jk.shape[0], -1)
        np.testing.assert_allclose(shares[k], (Jk @ Jk.T).numpy(), rtol=1e-11, atol=1e-13, err_msg=k)


def test_c_sigma_against_torch_monte_carlo():
    z = torch.randn(400_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for name, f in ACTS.items():
        v = f(z) ** 2
        assert abs(1.0 / c_sigma(name) - v.mean().item()) < 4 * v.std().item() / np.sqrt(z.numel()), name
