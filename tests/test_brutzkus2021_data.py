"""Brutzkus & Globerson 2021 data: the pattern distribution 𝒟 (Sec. 3) and the digit-detection task (Sec. 7)."""
import numpy as np
import pytest

from refnets.data import patterns as P


@pytest.mark.parametrize("basis", ["random", "standard"])
def test_patterns_are_orthonormal(basis):
    O = P.orthonormal_patterns(5, 7, basis, rng=3)
    assert O.shape == (5, 7)
    np.testing.assert_allclose(O @ O.T, np.eye(5), atol=1e-12)
    if basis == "standard":
        np.testing.assert_array_equal(O, np.eye(7)[:5])


def test_random_patterns_depend_on_the_seed_only():
    np.testing.assert_array_equal(P.orthonormal_patterns(4, 6, rng=1), P.orthonormal_patterns(4, 6, rng=1))
    assert not np.allclose(P.orthonormal_patterns(4, 6, rng=1), P.orthonormal_patterns(4, 6, rng=2))


@pytest.mark.parametrize("l, d", [(2, 5), (6, 5)])
def test_pattern_count_is_checked(l, d):
    with pytest.raises(ValueError, match="3 <= l <= d"):
        P.orthonormal_patterns(l, d)


def test_samples_follow_the_definition_of_D():
    O = P.orthonormal_patterns(6, 6, rng=0)
    x, y, idx = P.sample(2000, 5, O, rng=1, return_indices=True)
    assert x.shape == (2000, 30) and set(np.unique(y)) == {-1.0, 1.0}
    # exactly one discriminative pattern, of the label's class; every other position spurious
    n_pos, n_neg = (idx == 0).sum(1), (idx == 1).sum(1)
    np.testing.assert_array_equal(n_pos, (y > 0).astype(int))
    np.testing.assert_array_equal(n_neg, (y < 0).astype(int))
    assert np.all((idx >= 0) & (idx < 6))
    np.testing.assert_allclose(P.patches(x, 6), O[idx])
    # P(y = 1) = 1/2, the class pattern's position uniform, the spurious patterns uniform over S
    assert abs(np.mean(y > 0) - 0.5) < 0.04
    pos = np.argmax(idx <= 1, axis=1)
    assert np.all(np.abs(np.bincount(pos, minlength=5) / 2000 - 0.2) < 0.04)
    spur = idx[idx >= 2]
    assert np.all(np.abs(np.bincount(spur, minlength=6)[2:] / spur.size - 0.25) < 0.03)


@pytest.mark.parametrize("noise", ["ball", "sphere"])
def test_noise_is_bounded_by_rho(noise):
    O = P.orthonormal_patterns(5, 8, rng=0)
    x, y, idx = P.sample(400, 3, O, rho=0.7, rng=2, noise=noise, return_indices=True)
    v = P.patches(x, 8) - O[idx]
    norms = np.linalg.norm(v, axis=-1)
    assert norms.max() <= 0.7 + 1e-12
    if noise == "sphere":
        np.testing.assert_allclose(norms, 0.7)
    else:
        # uniform in the 8-ball: P(‖v‖ ≤ ρ s) = s⁸, so the median radius is ρ·2^{-1/8}
        assert abs(np.median(norms) / 0.7 - 2 ** (-1 / 8)) < 0.03


def test_support_enumerates_every_point():
    O = np.eye(4)
    x, y = P.support(O, 3)
    assert x.shape == (2 * 3 * 2 ** 2, 12)
    assert len({tuple(r) for r in x}) == len(x)
    x2, y2 = P.sample(300, 3, O, rng=5)
    rows = {tuple(r) for r in x}
    assert all(tuple(r) in rows for r in x2)


def test_distribution_object_keeps_its_patterns():
    D = P.PatternDistribution(l=5, d=6, n=4, rho=0.5, seed=3)
    x1, _ = D.sample(10, rng=1)
    x2, _ = D.sample(10, rng=2)
    assert x1.shape == (10, 24)
    np.testing.assert_array_equal(D.O, P.orthonormal_patterns(5, 6, rng=np.random.default_rng(3)))
    assert not np.allclose(x1, x2)


def test_digit_detection_task():
    pytest.importorskip("sklearn")
    from refnets.data.digits import DigitDetection, load_digits
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.min() >= 0 and images.max() <= 1
    task = DigitDetection(images, labels, seed=0)
    x, y = task.sample(200, "train", rng=1)
    assert x.shape == (200, 4 * 64) and set(np.unique(y)) <= {-1.0, 1.0}
    # identify each patch's digit through the image pool
    lookup = {images[i].tobytes(): int(labels[i]) for i in range(len(labels))}
    digs = np.array([[lookup[p.reshape(8, 8).tobytes()] for p in row] for row in x.reshape(200, 4, 64)])
    assert np.all((digs == 3).sum(1) == (y > 0)) and np.all((digs == 5).sum(1) == (y < 0))
    # train and test inputs are built from disjoint image pools
    xt, _ = task.sample(200, "test", rng=2)
    train_imgs = {p.tobytes() for p in x.reshape(-1, 64)}
    assert not any(p.tobytes() in train_imgs for p in xt.reshape(-1, 64))
    assert task.as_images(x).shape == (200, 8, 32)
    np.testing.assert_array_equal(task.as_images(x)[0, :, 8:16], x[0, 64:128].reshape(8, 8))
