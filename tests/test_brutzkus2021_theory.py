"""Brutzkus & Globerson 2021 theory: lucky filters (Lemma 5.2), the first-layer lemmas under Theorem 5.1's
hyperparameters (Lemmas 5.3, C.1, C.2, 5.5, Cor. 5.4), Part 3 (v*, margin, â), Theorem 4.2 and Prop. 6.1."""
import itertools

import numpy as np
import pytest

from refnets.data import patterns as P
from refnets.models import brutzkus2021 as M
from refnets.theory import brutzkus2021 as T


# ----------------------------------------------------------------------------- Lemma 5.2
def test_lucky_sets_by_hand():
    O = np.eye(4)
    W = np.array([[2.0, 9.0, 1.0, 0.5],    # o₁ beats o₃, o₄ (o₂ ignored): W⁺; o₂ best overall: W⁻
                  [1.0, 0.0, 3.0, 0.0],    # o₃ wins: neither
                  [-1.0, -2.0, -0.5, -3.0],  # everything negative: neither
                  [0.0, 0.5, 0.1, 0.4]])   # W⁻
    a0 = np.array([1.0, 1.0, -1.0, -1.0])
    s = T.lucky_sets(W, a0, O)
    assert s["W_plus"].tolist() == [True, False, False, False]
    assert s["W_minus"].tolist() == [True, False, False, True]
    assert s["lucky_plus"].tolist() == [True, False, False, False]
    assert s["lucky_minus"].tolist() == [False, False, False, True]
    assert (s["n_lucky_plus"], s["n_lucky_minus"]) == (1, 1)


def test_p_lucky_formula_values():
    assert T.p_lucky(2) == pytest.approx(0.25)       # (1 − 1/2)/2
    assert T.p_lucky(3) == pytest.approx(0.1875)     # (1 − 1/4)/4
    for d in range(3, 30):
        assert 1 / (2 * d) <= T.p_lucky(d) <= 1 / d  # used in App. B


@pytest.mark.parametrize("d", [3, 5, 8])
def test_empirical_p_lucky_within_three_standard_errors(d):
    fr = T.sample_lucky_fraction(k=400, d=d, trials=150, rng=d)
    p = T.p_lucky(d)
    se = np.sqrt(p * (1 - p) / (400 * 150))
    assert abs(fr.mean() - p) < 3 * se, (fr.mean(), p, se)


def test_empirical_p_lucky_can_fail_for_a_wrong_formula():
    """The 3-SE test has power: it rejects P = 1/(2d) (the formula without its (d−1) and 2^{−d+1})."""
    d = 5
    fr = T.sample_lucky_fraction(k=400, d=d, trials=150, rng=d)
    se = np.sqrt(T.p_lucky(d) * (1 - T.p_lucky(d)) / 60000)
    assert abs(fr.mean() - 1 / (2 * d)) > 3 * se


def test_lemma_5_2_sizes_at_k_above_8d3():
    d = 3
    hp = M.theorem_5_1_hyperparameters(d, T1=5)
    lo, hi = T.lemma_5_2_bounds(hp["k"], d)
    for seed in range(5):
        net = M.ConvPool(d, hp["k"], r=hp["r"], rng=seed)
        s = T.lucky_sets(net.params["W"], net.params["a"], P.orthonormal_patterns(d, d, rng=seed))
        assert lo <= s["n_lucky_plus"] <= hi and lo <= s["n_lucky_minus"] <= hi


# ----------------------------------------------------------------------------- Lemmas 5.3, C.1, C.2, 5.5
def _lw_run(seed, d=3, n=3, m=30, T1=12, T2=0, callback2=None):
    hp = M.theorem_5_1_hyperparameters(d, T1)
    assert M.check_theorem_5_1(hp["k"], d, hp["eta1"], hp["eta2"], hp["r"], T1).ok
    O = P.orthonormal_patterns(d, d, rng=seed)
    x, y = P.sample(m, n, O, rng=seed + 100)
    s1, s2 = M.split_S(m)
    # Lemma C.3's event (Eq. 14): each class holds at least a third of S₁
    assert min(np.sum(y[s1] > 0), np.sum(y[s1] < 0)) >= (s1.stop / 3)
    net = M.ConvPool(d, hp["k"], r=hp["r"], rng=seed)
    xt, _ = P.sample(200, n, O, rng=seed + 200)
    rec = T.LemmaRecorder(O, net.params["a"].copy(), x[s1], y[s1], hp["eta1"], hp["r"], x_all=np.vstack([x, xt]))
    res = M.lw_cnn(net, x, y, T1, T2, hp["eta1"], hp["eta2"], callback1=rec, callback2=callback2)
    return net, rec, res, hp, O, x, y


@pytest.mark.parametrize("seed", range(4))
def test_lemmas_hold_at_every_step_under_theorem_5_1(seed):
    net, rec, res, hp, O, x, y = _lw_run(seed)
    assert rec.all_hold, rec.violations
    assert len(res.trace1["lemma_step"]) == 13          # every step t = 0..T₁ was checked
    assert set(rec.worst) == {c.name for c in T.lemma_5_3(net.params["W"], 0, 1, 1, O, rec.sets["lucky_plus"],
                                                          rec.sets["lucky_minus"], x[:15], y[:15])} | {
        "Lemma C.1: ‖w_i‖ ≤ η₁(t+1)", "Lemma C.2: |N(x)| ≤ 1/2 on S₁", "Lemma 5.5: x[j]·w_i ≤ 2η₁t"}


def test_lemma_checks_catch_violations():
    """Outside Theorem 5.1's regime (η₁ 10⁴× too large, r large) the same checks report failures."""
    d, n, m, T1 = 3, 3, 30, 12
    O = P.orthonormal_patterns(d, d, rng=0)
    x, y = P.sample(m, n, O, rng=100)
    eta1, r = 0.5, 1.0
    assert not M.check_theorem_5_1(217, d, eta1, 1.0, r, T1).ok
    net = M.ConvPool(d, 217, r=r, rng=0)
    rec = T.LemmaRecorder(O, net.params["a"].copy(), x[:15], y[:15], eta1, r)
    M.lw_cnn(net, x, y, T1, 0, eta1, 1.0, callback1=rec)
    failed = {name for _, name, _ in rec.violations}
    assert "Lemma C.2: |N(x)| ≤ 1/2 on S₁" in failed and "Lemma C.1: ‖w_i‖ ≤ η₁(t+1)" in failed


# ----------------------------------------------------------------------------- Part 3
def test_part_3_margin_and_norm_of_v_star():
    net, rec, res, hp, O, x, y = _lw_run(1)
    k, d, T1 = hp["k"], 3, 12
    v = T.v_star(rec.sets["lucky_plus"], rec.sets["lucky_minus"], k, d, hp["eta1"], T1)
    xs, ys = P.sample(300, 3, O, rng=9)       # fresh points of 𝒟: 𝒟_z is separable with margin 1
    assert T.margin(net.features(xs), ys, v) > 1
    assert np.linalg.norm(v) <= T.v_star_norm_bound(k, d, hp["eta1"], T1)
    # ‖z(x)‖² ≤ 4kη₁²T₁² (Lemma 5.5)
    assert np.max(np.sum(net.features(xs) ** 2, axis=1)) <= 4 * k * hp["eta1"] ** 2 * T1 ** 2


def test_max_margin_separator_on_a_known_case():
    Z = np.array([[2.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    y = np.array([1.0, 1.0, -1.0])
    v = T.max_margin_separator(Z, y)
    assert np.min(y * (Z @ v)) == pytest.approx(1.0, abs=1e-8)
    # the minimum-norm separator with margin 1 here is (1/2, 1): binding at rows 1 and 2 (row 3 slack)
    np.testing.assert_allclose(v, [0.5, 1.0], atol=1e-8)
    with pytest.raises(ValueError, match="not linearly separable"):
        T.max_margin_separator(np.array([[1.0], [1.0]]), np.array([1.0, -1.0]), max_sweeps=2000)


def test_angle_between_a_and_the_max_margin_separator_goes_to_zero():
    snaps = {}

    def cb(step, model, trace):
        if step in (10, 100, 1000, 3000):
            snaps[step] = model.params["a"].copy()
    net, rec, res, hp, O, x, y = _lw_run(0, m=24, T1=10, T2=3000, callback2=cb)
    s2 = M.split_S(24)[1]
    ahat = T.max_margin_separator(net.features(x[s2]), y[s2])
    ang = {t: T.angle(a, ahat) for t, a in snaps.items()}
    assert ang[3000] < ang[1000] < ang[100] < ang[10]
    assert ang[3000] < 0.5 * ang[10]
    assert M.error_rate(net, x[s2], y[s2]) == 0 and res.trace2["loss"][-1] < res.trace2["loss"][0]


# ----------------------------------------------------------------------------- Theorem 4.2
def _check_labelings(n, labelings, O=None, last="o1"):
    net = None
    for yl in labelings:
        W, a, X, alpha = T.shattering_network(n, yl, O, last)
        net = net or M.ConvPool(W.shape[1], W.shape[0])
        net.set_parameters({"W": W, "a": a})
        out = net.decision(X)
        np.testing.assert_allclose(out, yl, atol=1e-9)      # N(x_I) = y_I exactly
        np.testing.assert_array_equal(net.predict(X), yl)   # so sign N = y


@pytest.mark.parametrize("n", [2, 3, 4])
def test_theorem_4_2_shatters_B_for_every_labeling(n):
    M_ = 2 ** (n - 1)
    labelings = [np.array(l, float) for l in itertools.product((-1.0, 1.0), repeat=M_)]
    assert len(labelings) == 2 ** (2 ** (n - 1))
    _check_labelings(n, labelings)


@pytest.mark.parametrize("n", [5, 6])
def test_theorem_4_2_sampled_labelings_random_patterns(n):
    rng = np.random.default_rng(n)
    O = P.orthonormal_patterns(2 * n, 2 * n, rng=n)
    labelings = [rng.choice([-1.0, 1.0], size=2 ** (n - 1)) for _ in range(25)]
    _check_labelings(n, labelings, O, last="alternate")


def test_shattering_set_is_in_the_support_and_alpha_solves_eq_5():
    n = 3
    X, Is = T.shattering_set(n)
    assert X.shape == (4, 3 * 6) and len({tuple(r) for r in X}) == 4
    pats = X.reshape(4, 3, 6)
    assert np.all(pats[:, -1] @ np.eye(6)[0] == 1)       # x_I[n] = o₁
    y = np.array([1.0, -1.0, -1.0, 1.0])
    alpha = T.alpha_system(y, Is)
    for s, I in enumerate(Is):
        comp = [t for t, J in enumerate(Is) if np.all(J == 1 - I)][0]
        assert alpha.sum() - alpha[s] == pytest.approx(y[comp])


# ----------------------------------------------------------------------------- Proposition 6.1
@pytest.mark.parametrize("n, l", [(2, 4), (3, 4), (4, 3)])
def test_prop_6_1_min_norm_separator_has_norm_at_least_n(n, l):
    O = P.orthonormal_patterns(l, 5, rng=n)
    w = T.min_norm_separator(O, n)
    X, y = P.support(O, n)
    assert np.min(y * (X @ w)) >= 1 - 1e-8
    assert np.sum(w ** 2) >= n
    # our closed form: ŵ[j] = o₁ − o₂ for every j, ‖ŵ‖² = 2n
    assert np.sum(w ** 2) == pytest.approx(2 * n, rel=1e-6)
    np.testing.assert_allclose(w.reshape(n, 5), np.tile(O[0] - O[1], (n, 1)), atol=1e-6)


def test_prop_6_1_witness():
    O = np.eye(4)
    n = 3
    w = 0.9 * np.tile(O[0] - O[1], n) / np.sqrt(2)        # ‖w‖² = 0.81·n < n
    xp, xm = T.prop_6_1_witness(w, O, n)
    assert w @ xp < 1 or w @ xm > -1
    assert T.prop_6_1_witness(np.tile(O[0] - O[1], n), O, n) is None
