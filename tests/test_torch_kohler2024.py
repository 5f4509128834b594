"""Kohler, Krzyżak & Walter 2024 model against PyTorch (float64): the whole network written in torch —
grouped convolutions, zero padding at the bottom/right only, logistic, global average (or max) pooling
over the index set I_κ, the linear combination — forward, every gradient, and a full GD step on F_n."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refnets.layers.pooling import kohler_index_set  # noqa: E402
from refnets.models import kohler2024 as KW  # noqa: E402

F = torch.nn.functional


@pytest.fixture(autouse=True)
def _serial_numba():
    """Tiny shapes: Numba's thread hand-off would cost more than the arithmetic."""
    numba = pytest.importorskip("numba")
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(old)


def torch_forward(model, p, x):
    """f_w(x) in PyTorch from the equations; p: name -> tensor."""
    o = x
    for r in range(1, model.L + 1):
        Mr = model.M[r - 1]
        o = F.pad(o, (0, Mr - 1, 0, Mr - 1))          # torch orders (left, right, top, bottom)
        o = torch.sigmoid(F.conv2d(o, p[f"w{r}"], p[f"w{r}_bias"], groups=1 if r == 1 else model.K_n))
    if model.region == "I_kappa":
        mask = torch.tensor(kohler_index_set(model.d1, model.d2, model.kappa))
    else:
        mask = torch.ones(model.d1, model.d2, dtype=torch.bool)
    flat = o[:, :, mask]                               # (N, K, |I_κ|)
    if model.pool == "avg":
        return flat.mean(2) @ p[model.output_name]
    if model.pool == "max":
        return flat.amax(2) @ p[model.output_name]
    return (flat * p[model.output_name][None]).sum((1, 2))


CONFIGS = [dict(d1=7, d2=6, K_n=3, k=(2, 1), M=(3, 2)),
           dict(d1=6, d2=6, K_n=4, k=(3, 2, 1), M=(2, 2, 1), region="all"),
           dict(d1=5, d2=7, K_n=2, k=(1,), M=3, pool="max"),
           dict(d1=5, d2=5, K_n=2, k=(2, 1), M=2, pool="none")]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.get('pool', 'avg')}-{c.get('region', 'I')}-L{len(c['k'])}")
@pytest.mark.parametrize("seed", [0, 1])
def test_model_matches_torch(cfg, seed):
    rng = np.random.default_rng(seed)
    m = KW.KohlerCNN(rng=rng, A=2.0, **cfg)
    w = m.params[m.output_name]
    w[...] = rng.standard_normal(w.shape)
    x = rng.uniform(0, 1, (5, 1, m.d1, m.d2))
    out = m.forward(x)
    c = rng.standard_normal(5)
    dx = m.backward(c)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in m.params.items()}
    tx = torch.tensor(x, requires_grad=True)
    tout = torch_forward(m, tp, tx)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-13)
    grads = torch.autograd.grad((tout * torch.tensor(c)).sum(), [tx] + list(tp.values()))
    np.testing.assert_allclose(dx, grads[0].numpy(), rtol=1e-10, atol=1e-13)
    for name, g in zip(tp, grads[1:]):
        np.testing.assert_allclose(m.grads[name], g.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)


def test_one_gd_step_on_F_n_matches_torch():
    rng = np.random.default_rng(5)
    m = KW.KohlerCNN(8, K_n=6, k=(3, 1), M=(2, 2), A=3.0, rng=rng)
    m.params["w3"][...] = 0.3 * rng.standard_normal(6)
    x = rng.uniform(0, 1, (12, 1, 8, 8))
    y = (rng.random(12) < 0.5).astype(float)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in m.params.items()}
    lam, c_n = 0.05, 0.01
    KW.fit(m, x, y, lambda_n=lam, t_n=1, c_n=c_n)
    Fn = ((torch.tensor(y) - torch_forward(m, tp, torch.tensor(x))) ** 2).mean() + c_n * (tp["w3"] ** 2).sum()
    grads = torch.autograd.grad(Fn, list(tp.values()))
    for (name, t), g in zip(tp.items(), grads):
        np.testing.assert_allclose(m.params[name], (t - lam * g).detach().numpy(), rtol=1e-11, atol=1e-14,
                                   err_msg=name)
