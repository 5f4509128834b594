"""The average-pooling image model (Kohler et al. 2024, model (AP)): η by its definition, windows,
pixel distribution, labels."""
import numpy as np
import pytest

from refnets.data import avgpool_images as AP


def test_eta_is_the_mean_of_m_over_the_kappa_windows(rng):
    x = rng.uniform(0, 1, (3, 5, 6))
    m = AP.m_pattern(AP.make_pattern("checker", 2), width=0.4)
    by_hand = np.array([np.mean([m(x[n, i:i + 2, j:j + 2][None])[0] for i in range(4) for j in range(5)])
                        for n in range(3)])
    assert np.allclose(AP.eta_avgpool(x, m, 2), by_hand, rtol=1e-13)
    # region "all": d1·d2 windows, zero-padded at the bottom/right
    xp = np.pad(x, ((0, 0), (0, 1), (0, 1)))
    by_hand_all = np.array([np.mean([m(xp[n, i:i + 2, j:j + 2][None])[0] for i in range(5) for j in range(6)])
                            for n in range(3)])
    assert np.allclose(AP.eta_avgpool(x, m, 2, region="all"), by_hand_all, rtol=1e-13)
    assert AP.kappa_windows(x, 2).shape == (3, 20, 2, 2)


def test_m_functions_detect_their_pattern():
    P = AP.make_pattern("checker", 3)
    for name in ("texture", "pattern"):
        m = AP.M_FUNCTIONS[name](P, width=0.3)
        assert m(P[None])[0] > 0.99 and m((1 - P)[None])[0] < 0.01
    shifts = AP.cyclic_shifts(P)                       # the 3x3 windows of the period-3 tiling of P
    assert shifts.shape[0] == 9 and np.all(AP.m_texture(P)(shifts) > 0.99)   # any phase of the texture
    assert AP.m_pattern(P)(shifts[1:2])[0] < 0.01                            # "pattern": one phase only
    assert AP.cyclic_shifts(AP.make_pattern("checker", 2)).shape[0] == 2
    r = AP.m_ridge(P)
    assert 0 < r(np.zeros((1, 3, 3)))[0] < r(P[None])[0] < 1
    with pytest.raises(ValueError):
        AP.make_pattern("zigzag", 3)


@pytest.mark.parametrize("d1,d2", [(8, 8), (7, 12)])
def test_distribution_shapes_ranges_and_labels(d1, d2):
    dist = AP.AvgPoolImages(d1=d1, d2=d2, kappa=2)
    x, y, eta = dist.sample(3000, rng=0)
    assert x.shape == (3000, 1, d1, d2) and x.min() >= 0 and x.max() <= 1
    assert np.all((eta >= 0) & (eta <= 1)) and np.allclose(eta, dist.eta(x))
    assert set(np.unique(y)) == {0.0, 1.0}
    assert abs(y.mean() - eta.mean()) < 4 * np.sqrt(0.25 / 3000)      # Y ~ Bernoulli(η)
    assert np.percentile(eta, 90) - np.percentile(eta, 10) > 0.3      # η really varies
    x2, y2, _ = dist.sample(3000, rng=0)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_density_drives_eta():
    P = AP.make_pattern("checker", 2)
    m = AP.m_texture(P)
    lo = AP.eta_avgpool(AP.sample_texture_images(200, 12, 12, P, density=0.0, rng=1), m, 2).mean()
    hi = AP.eta_avgpool(AP.sample_texture_images(200, 12, 12, P, density=1.0, noise=0.0, rng=1), m, 2).mean()
    assert hi > 0.99 and lo < 0.3


def test_bad_arguments():
    with pytest.raises(ValueError, match="noise"):
        AP.sample_texture_images(2, 8, 8, np.ones((2, 2)), noise=0.7)
    with pytest.raises(ValueError, match="unknown m"):
        AP.AvgPoolImages(m="wavelet")
    with pytest.raises(ValueError, match="exceeds"):
        AP.kappa_windows(np.zeros((1, 2, 2)), 3)
