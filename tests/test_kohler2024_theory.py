"""Risks with a known η (Kohler, Krzyżak & Walter 2024): Bayes risk, excess risk, L2 error, exponents."""
import numpy as np
import pytest

from refnets.theory import kohler2024 as T


def test_risks_by_hand():
    eta = np.array([0.9, 0.2, 0.5, 0.6])
    assert np.isclose(T.bayes_risk(eta), (0.1 + 0.2 + 0.5 + 0.4) / 4)
    pred = np.array([0, 0, 1, 0])                     # wrong on samples 0 and 3, tie on 2
    assert np.isclose(T.risk(pred, eta), (0.9 + 0.2 + 0.5 + 0.6) / 4)
    assert np.isclose(T.excess_risk(pred, eta), (0.8 + 0.2) / 4)
    assert np.isclose(T.excess_risk(pred, eta), T.risk(pred, eta) - T.bayes_risk(eta))
    assert T.excess_risk(T.bayes_classifier(eta), eta) == 0


def test_excess_is_risk_minus_bayes_and_plugin_inequality(rng):
    eta = rng.uniform(0, 1, 500)
    eta_hat = np.clip(eta + 0.2 * rng.standard_normal(500), -1, 1)
    pred = (eta_hat >= 0.5).astype(int)
    ex = T.excess_risk(pred, eta)
    assert np.isclose(ex, T.risk(pred, eta) - T.bayes_risk(eta), atol=1e-14)
    assert 0 < ex <= T.plugin_bound(T.l2_error(eta_hat, eta))
    assert np.isclose(T.l2_error(eta_hat, eta), np.mean((eta_hat - eta) ** 2))


def test_exponents():
    assert T.l2_rate_exponent(2) == pytest.approx(-1 / 5)
    assert T.excess_rate_exponent(2) == pytest.approx(-1 / 10)
    assert T.l2_rate_exponent(3, eps=0.01) == pytest.approx(-0.1 + 0.01)
    for kappa in (1, 2, 5):   # near Stone's rate for κ² variables and p = 1/2
        assert T.l2_rate_exponent(kappa) == pytest.approx(T.stone_exponent(0.5, kappa ** 2))


def test_bad_inputs():
    with pytest.raises(ValueError, match="eta"):
        T.bayes_risk(np.array([0.2, 1.2]))
    with pytest.raises(ValueError, match="0 or 1"):
        T.risk(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="shape"):
        T.l2_error(np.zeros(3), np.zeros(2))
