"""Allen-Zhu, Li & Song 2019 training: GD and SGD (n/b scaling) on the over-parameterised variants
reduce the loss linearly, A and B stay fixed, the linearised model trains by the same algorithm,
cross-entropy reaches 100% training accuracy; the experiments are registered."""
import numpy as np
import pytest

from refnets.data.synthetic import gaussian_classes, sphere_regression
from refnets.losses import HalfSquaredSum, SoftmaxCrossEntropy
from refnets.models import allenzhu2019 as AZ
from refnets.optim import GD
from refnets.theory import allenzhu2019 as T
from refnets.train import train


def _step(net, x, c=1.0):
    """η = c/λ_max(K₀), the largest stable step of the linearised dynamics (c < 2)."""
    return c / T.ntk_lambda_max(net, x, net.hidden_names, tol=1e-4)


@pytest.mark.parametrize("variant", ["fc", "resnet", "cnn"])
def test_gd_converges_linearly_and_keeps_a_b_fixed(variant):
    if variant == "cnn" and not AZ.conv_available():
        pytest.skip("conv not available")
    x, y, _ = sphere_regression(6, 6, d_out=2, rng=0)
    m = 16 if variant == "cnn" else 64
    net = AZ.make_network(variant, 6, m, 2, d_out=2, rng=1, **({"input_shape": (2, 3)} if variant == "cnn" else {}))
    A0, B0 = net.params["A"].copy(), net.params["B"].copy()
    loss = HalfSquaredSum()
    tr = train(net, loss, x, y, GD(net, _step(net, x, 0.7), trainable=AZ.TRAINABLE), steps=100)
    F = np.asarray(tr["loss"])
    assert F[-1] < 1e-3 * F[0]
    rho, r2 = T.linear_rate(F)
    assert rho > 0 and r2 > 0.9
    # no loss of speed (as a sublinear rate would show): the last third contracts at ≥ 1/3 of the average rate
    rho_late, _ = T.linear_rate(F, start=2 / 3)
    assert rho_late > rho / 3
    np.testing.assert_array_equal(net.params["A"], A0)
    np.testing.assert_array_equal(net.params["B"], B0)


def test_sgd_with_n_over_b_scaling_converges_linearly():
    x, y, _ = sphere_regression(8, 6, rng=0)
    net = AZ.FCNet(6, 64, 2, rng=1)
    loss = HalfSquaredSum()
    eta = 0.5 * _step(net, x)
    rec = T.Recorder(net, x, y, loss, full_batch=False)
    tr = train(net, loss, x, y, GD(net, eta, trainable=AZ.TRAINABLE), steps=300, batch_size=2, rng=0,
               callback=rec, record_every=10)
    F = np.asarray(tr["F"])
    assert F[-1] < 1e-3 * F[0]
    rho, r2 = T.linear_rate(F, tr["rec_step"])
    assert rho > 0 and r2 > 0.9


def test_minibatch_gradient_is_unbiased_with_n_over_b():
    """E_S[(n/b) Σ_{i∈S} ∇Fᵢ] = ∇F: averaging over all b-subsets gives the full gradient exactly."""
    import itertools
    from refnets.train import loss_and_grads
    x, y, _ = sphere_regression(4, 5, rng=0)
    net = AZ.FCNet(5, 6, 1, rng=1)
    loss = HalfSquaredSum()
    _, full = loss_and_grads(net, loss, x, y)
    subsets = list(itertools.combinations(range(4), 2))
    avg = sum(loss_and_grads(net, loss, x[list(s)], y[list(s)], scale=4 / 2)[1]["W1"] for s in subsets) / len(subsets)
    np.testing.assert_allclose(avg, full["W1"], rtol=1e-12)


def test_linearised_model_trains_by_the_same_algorithm_and_stays_close():
    x, y, _ = sphere_regression(6, 5, rng=0)
    net = AZ.FCNet(5, 256, 2, rng=1)
    lin = AZ.Linearised(net, x)
    loss = HalfSquaredSum()
    eta = _step(net, x)
    out = {}
    for name, model in (("net", net), ("lin", lin)):
        rec = T.Recorder(model, x, y, loss, keep_outputs=True)
        out[name] = train(model, loss, x, y, GD(model, eta, trainable=AZ.TRAINABLE), steps=80,
                          callback=rec, record_every=20).arrays()
    assert out["lin"]["F"][-1] < 1e-3 * out["lin"]["F"][0]
    gaps = [T.function_gap(a, b) for a, b in zip(out["net"]["output"], out["lin"]["output"])]
    assert gaps[0] == 0.0 and max(gaps) < 0.1 * np.linalg.norm(y)
    assert np.all(out["lin"]["flip"] == 0)


def test_cross_entropy_reaches_full_training_accuracy():
    x, labels, _ = gaussian_classes(12, 6, 3, rng=0, random_labels=True)
    net = AZ.FCNet(6, 64, 2, d_out=3, rng=1)
    loss = SoftmaxCrossEntropy(reduction="sum")
    rec = T.Recorder(net, x, labels, loss, labels=labels)
    tr = train(net, loss, x, labels, GD(net, _step(net, x), trainable=AZ.TRAINABLE), steps=200,
               callback=rec, record_every=10)
    assert tr["acc"][-1] == 1.0 and tr["acc"][0] < 1.0


def test_experiments_are_registered():
    from refnets.experiments import common
    import refnets.experiments.allenzhu2019  # noqa: F401
    names = {n for n in common.REGISTRY if n.startswith("allenzhu2019.")}
    assert {"allenzhu2019.convergence", "allenzhu2019.radius", "allenzhu2019.gradient_ratio",
            "allenzhu2019.ntk_gap", "allenzhu2019.iterations", "allenzhu2019.classification",
            "allenzhu2019.semismooth"} <= names
