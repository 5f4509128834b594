"""Dense, activations, containers and losses against PyTorch in float64 (random shapes)."""
import numpy as np
import pytest

import refnets as rn
from refnets.losses import half_squared_sum, logistic_loss, mean_squared, softmax_cross_entropy

torch = pytest.importorskip("torch")
F = torch.nn.functional


def t(a, grad=True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


@pytest.mark.parametrize("seed", range(8))
def test_dense_matches_torch(seed):
    rng = np.random.default_rng(seed)
    n, d, m = rng.integers(1, 7, size=3)
    scale = float(rng.uniform(0.1, 2))
    layer = rn.Dense(d, m, bias=bool(seed % 2), scale=scale, rng=seed)
    x = rng.standard_normal((n, d))
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    xt, Wt = t(x), t(layer.params["W"])
    bt = t(layer.params["b"]) if "b" in layer.params else None
    ot = scale * F.linear(xt, Wt) + (bt if bt is not None else 0)
    ot.backward(t(dout, False))
    assert np.allclose(out, ot.detach().numpy(), rtol=1e-13, atol=1e-13)
    assert np.allclose(dx, xt.grad.numpy(), rtol=1e-13, atol=1e-13)
    assert np.allclose(layer.grads["W"], Wt.grad.numpy(), rtol=1e-13, atol=1e-13)
    if bt is not None:
        assert np.allclose(layer.grads["b"], bt.grad.numpy(), rtol=1e-13, atol=1e-13)


ACTS = [(rn.ReLU(), F.relu), (rn.LeakyReLU(0.2), lambda z: F.leaky_relu(z, 0.2)),
        (rn.Logistic(), torch.sigmoid), (rn.Softplus(), F.softplus), (rn.Tanh(), torch.tanh),
        (rn.Identity(), lambda z: z)]


@pytest.mark.parametrize("act,tfn", ACTS, ids=lambda a: type(a).__name__)
def test_activations_match_torch_including_kinks_and_tails(act, tfn):
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.standard_normal(50) * 5, [0.0, 0.0, -30.0, 30.0, -700.0, 700.0]]).reshape(2, 1, 4, 7)
    out = act.forward(z)
    dout = rng.standard_normal(z.shape)
    dz = act.backward(dout)
    zt = t(z)
    ot = tfn(zt)
    ot.backward(t(dout, False))
    # Absolute tolerance at the gradient's scale: in the far tails torch's σ(1−σ) and 1−tanh²
    # cancel, while refnets uses σ(z)σ(−z) and sech² (checked exactly in test_activation_tails).
    assert np.allclose(out, ot.detach().numpy(), rtol=1e-14, atol=1e-300)
    assert np.allclose(dz, zt.grad.numpy(), rtol=1e-13, atol=1e-13 * np.abs(dz).max())


@pytest.mark.parametrize("act,exact", [
    (rn.Logistic(), lambda z: np.exp(-abs(z)) / (1 + np.exp(-abs(z))) ** 2),
    (rn.Tanh(), lambda z: 4 * np.exp(-2 * abs(z)) / (1 + np.exp(-2 * abs(z))) ** 2),
    (rn.Softplus(), lambda z: 1 / (1 + np.exp(-z))),
])
def test_activation_tails(act, exact):
    z = np.array([-700.0, -300.0, -30.0, 30.0, 300.0])
    assert np.allclose(act.deriv(z), [exact(v) for v in z], rtol=1e-14, atol=0)


def test_losses_match_torch():
    rng = np.random.default_rng(1)
    pred = rng.standard_normal((9, 1)) * 10
    y = rng.standard_normal((9, 1))
    pm = rng.choice([-1.0, 1.0], size=9)
    logits = rng.standard_normal((9, 4)) * 20
    labels = rng.integers(0, 4, size=9)
    cases = [
        (half_squared_sum(pred, y), lambda p: 0.5 * ((p - t(y, False)) ** 2).sum(), pred),
        (mean_squared(pred, y), lambda p: ((p - t(y, False)) ** 2).sum() / 9, pred),
        (logistic_loss(pred, pm), lambda p: F.softplus(-t(pm, False)[:, None] * p).mean(), pred),
        (softmax_cross_entropy(logits, labels), lambda p: F.cross_entropy(p, torch.tensor(labels)), logits),
        (softmax_cross_entropy(logits, labels, "sum"),
         lambda p: F.cross_entropy(p, torch.tensor(labels), reduction="sum"), logits),
    ]
    for (value, d), tloss, inp in cases:
        pt = t(inp)
        lt = tloss(pt)
        lt.backward()
        assert np.isclose(value, lt.item(), rtol=1e-13)
        assert np.allclose(d, pt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_residual_parallel_network_matches_torch():
    rng = np.random.default_rng(2)
    d, m = 5, 6
    net = rn.Sequential({
        "l1": rn.Dense(d, m, rng=1), "s": rn.Softplus(),
        "res": rn.Residual(rn.Sequential(rn.Dense(m, m, rng=2), rn.ReLU()), scale=0.25),
        "mix": rn.Parallel(rn.Dense(m, 2, rng=3), rn.Dense(m, 2, bias=True, rng=4), weights="learned", rng=5),
    })
    x = rng.standard_normal((4, d))
    out = net.forward(x)
    dout = rng.standard_normal(out.shape)
    net.backward(dout)
    P = {k: t(v) for k, v in net.parameters().items()}
    h = F.softplus(t(x, False) @ P["l1.W"].T)
    h = h + 0.25 * F.relu(h @ P["res.branch.0.W"].T)
    o = P["mix.w"][0] * (h @ P["mix.0.W"].T) + P["mix.w"][1] * (h @ P["mix.1.W"].T + P["mix.1.b"])
    o.backward(t(dout, False))
    assert np.allclose(out, o.detach().numpy(), rtol=1e-13)
    for k, g in net.gradients().items():
        assert np.allclose(g, P[k].grad.numpy(), rtol=1e-12, atol=1e-14), k
