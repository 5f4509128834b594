"""ConvPool and the MLP baseline against PyTorch (float64): forward and every gradient, written in torch
from Eq. 1 (conv1d with kernel = stride = d, ReLU, max over positions, linear), including the exact max
ties that the pattern data produce (a spurious pattern repeated in one input), where both send the
gradient to the first maximising position (the documented winner)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refnets.data import patterns as P  # noqa: E402
from refnets.losses import logistic_loss  # noqa: E402
from refnets.models import brutzkus2021 as M  # noqa: E402

F = torch.nn.functional


def torch_convpool(x, W, a, d):
    """Eq. 1 as the paper writes it: ReLU first, then the max over positions (first winner on ties)."""
    u = F.conv1d(x[:, None, :], W[:, None, :], stride=d)            # (N, k, n)
    z = F.adaptive_max_pool1d(F.relu(u), 1)[:, :, 0]                 # (N, k)
    return z @ a


def _compare(net, x, y):
    d = net.d
    out = net.forward(x)
    value, dp = logistic_loss(out, y)
    dx = net.backward(dp)
    xt = torch.tensor(x, requires_grad=True)
    Wt = torch.tensor(net.params["W"].copy(), requires_grad=True)
    at = torch.tensor(net.params["a"].copy(), requires_grad=True)
    o = torch_convpool(xt, Wt, at, d)
    lt = F.softplus(-torch.tensor(y) * o).mean()
    lt.backward()
    np.testing.assert_allclose(out[:, 0], o.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert value == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(net.grads["W"], Wt.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(net.grads["a"], at.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("seed", range(4))
def test_convpool_random_shapes(seed):
    rng = np.random.default_rng(seed)
    d, n, k, N = (int(v) for v in rng.integers([2, 1, 1, 1], [9, 7, 12, 8]))
    net = M.ConvPool(d, k, r=float(rng.uniform(0.1, 2)), rng=rng)
    x = rng.standard_normal((N, n * d))
    y = rng.choice([-1.0, 1.0], size=N)
    _compare(net, x, y)


@pytest.mark.parametrize("seed", range(3))
def test_convpool_on_pattern_data_with_exact_ties(seed):
    d, n = 4, 6
    O = P.orthonormal_patterns(d, d, basis="standard" if seed == 0 else "random", rng=seed)
    x, y, idx = P.sample(12, n, O, rng=seed, return_indices=True)
    # with 2 spurious patterns in 5 spurious slots every input repeats one: exact ties of wᵢ·x[j]
    assert all(len(set(r)) < n for r in idx)
    net = M.ConvPool(d, 9, r=1.0, rng=seed + 10)
    net.forward(x)
    assert net.max_margin() == 0.0          # the ties are there
    _compare(net, x, y)


def test_relu_then_max_equals_max_then_relu_even_with_ties():
    """Eq. 1's max_j σ(·) and refnets' σ(max_j ·): same values, same first winner where the max is > 0."""
    x = torch.tensor([[[1.0, -2.0, 1.0, 0.5], [-1.0, -1.0, -3.0, -1.0]]], dtype=torch.float64, requires_grad=True)
    a = F.adaptive_max_pool1d(F.relu(x), 1).sum()
    a.backward()
    g1 = x.grad.clone()
    x.grad = None
    F.relu(F.adaptive_max_pool1d(x, 1)).sum().backward()
    np.testing.assert_array_equal(g1.numpy(), x.grad.numpy())
    assert g1[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0]       # the first of the tied maxima


def test_mlp_baseline_against_torch():
    rng = np.random.default_rng(5)
    mlp = M.make_mlp(15, width=7, alpha=0.2, rng=rng)
    x = rng.standard_normal((6, 15))
    out = mlp.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = mlp.backward(dout)
    g = mlp.gradients()
    xt = torch.tensor(x, requires_grad=True)
    W = torch.tensor(mlp.parameters()["W.W"].copy(), requires_grad=True)
    a = torch.tensor(mlp.parameters()["a.W"].copy(), requires_grad=True)
    o = F.leaky_relu(xt @ W.T, 0.2) @ a.T
    (o * torch.tensor(dout)).sum().backward()
    np.testing.assert_allclose(out, o.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(g["W.W"], W.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(g["a.W"], a.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10)
