"""Allen-Zhu, Li & Song 2019 data: the normalisation ‖x‖ = 1 with last coordinate 1/√2, δ-separation,
and the synthetic sets."""
import itertools

import numpy as np
import pytest

from refnets.data import synthetic as S


def test_sphere_normalisation_is_exact(rng):
    raw = rng.standard_normal((7, 4)) * rng.uniform(0.1, 10, size=(7, 1))
    x = S.normalize_inputs(raw)
    assert x.shape == (7, 5)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(x[:, -1], 1 / np.sqrt(2), rtol=0, atol=1e-15)
    # the body keeps each raw direction
    body = x[:, :-1] / np.linalg.norm(x[:, :-1], axis=1, keepdims=True)
    np.testing.assert_allclose(body, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-14)
    x2 = S.normalize_inputs(raw, last=0.3)
    np.testing.assert_allclose(x2[:, -1], 0.3, atol=1e-15)


def test_pad_renormalise_keeps_relative_norms(rng):
    raw = rng.standard_normal((5, 3)) * np.array([[0.5], [1.0], [2.0], [3.0], [4.0]])
    x = S.normalize_inputs(raw, method="pad_renormalise")
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-14)
    norms = np.linalg.norm(raw, axis=1)
    med = int(np.argsort(norms)[2])
    assert abs(x[med, -1] - 1 / np.sqrt(2)) < 1e-14
    # larger raw norm -> smaller padded coordinate
    order = np.argsort(norms)
    assert np.all(np.diff(x[order, -1]) < 0)


@pytest.mark.parametrize("bad, msg", [
    (dict(x=np.zeros((2, 3))), "zero"),
    (dict(x=np.ones(3)), "shape"),
    (dict(x=np.ones((2, 3)), last=1.0), "last"),
    (dict(x=np.ones((2, 3)), method="nope"), "method"),
    (dict(x=np.array([[np.nan, 1.0]])), "non-finite"),
])
def test_normalisation_rejects_bad_input(bad, msg):
    with pytest.raises(ValueError, match=msg):
        S.normalize_inputs(**bad)


def test_separation_matches_brute_force(rng):
    x = S.normalize_inputs(rng.standard_normal((9, 3)))
    brute = min((np.linalg.norm(x[i] - x[j]), (i, j)) for i, j in itertools.combinations(range(9), 2))
    delta, pair = S.separation(x, return_pair=True)
    assert abs(delta - brute[0]) < 1e-12 and pair == brute[1]
    assert S.separation(x[:1]) == np.inf
    assert S.separation(np.vstack([x, x[:1]])) == 0.0


@pytest.mark.parametrize("delta", [1e-4, 0.05, 0.7])
def test_controlled_separation_is_exact(delta):
    x, y, measured = S.controlled_separation(12, 8, delta, d_out=2, rng=3)
    assert x.shape == (12, 8) and y.shape == (12, 2)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-14)
    np.testing.assert_allclose(x[:, -1], 1 / np.sqrt(2), atol=1e-15)
    assert abs(measured - delta) < 1e-10 * max(1.0, delta) + 1e-12
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-14)


def test_controlled_separation_rejects_impossible_delta():
    with pytest.raises(ValueError, match="delta"):
        S.controlled_separation(4, 5, 2.0)
    with pytest.raises(ValueError, match="cannot place"):
        S.controlled_separation(60, 3, 1.3, rng=0)


def test_synthetic_sets(rng):
    x, y, delta = S.sphere_regression(10, 6, d_out=3, rng=rng)
    assert x.shape == (10, 6) and y.shape == (10, 3) and delta == S.separation(x) > 0
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-14)
    x, labels, delta = S.gaussian_classes(12, 5, 3, rng=rng)
    assert x.shape == (12, 5) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [4, 4, 4] and delta > 0
    _, rl, _ = S.gaussian_classes(200, 5, 3, rng=0, random_labels=True)
    assert set(rl.tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(S.one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])


def test_same_seed_same_bits():
    a = S.sphere_regression(5, 4, rng=7)
    b = S.sphere_regression(5, 4, rng=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("quick", [True, False])
def test_the_gradient_ratio_experiment_can_build_every_data_set_it_asks_for(quick):
    """Full mode once asked for 16 points in d = 16 at δ = 0.8, which cannot be placed: caught here,
    without running the (minutes-long) experiment."""
    from refnets.experiments.allenzhu2019 import GRADIENT
    from refnets.data.synthetic import controlled_separation
    cfg = GRADIENT[quick]
    for n, delta in [(cfg["n0"], dl) for dl in cfg["deltas"]] + [(n, cfg["delta0"]) for n in cfg["ns"]]:
        x, _, dl = controlled_separation(n, cfg["d"], delta, rng=0)
        assert x.shape == (n, cfg["d"]) and abs(dl - delta) < 1e-9
