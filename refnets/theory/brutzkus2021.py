"""The quantities of Brutzkus & Globerson (2021)'s theorems, as functions a reader can call.

Notation (Sec. 3, 5): patterns O = (o₁, …, o_l) as rows of an (l, d) array (o₁ positive, o₂ negative);
filters W (k, d), row i = wᵢ; output weights a (k,); inputs x (m, n·d); labels y (m,) of ±1.

* Lucky filters (Eq. 6, Lemma 5.2): :func:`lucky_sets`, :func:`p_lucky`, :func:`lemma_5_2_bounds`.
* First-layer dynamics under Theorem 5.1's hyperparameters, checkable at every step t ≤ T₁:
  :func:`lemma_5_3` (with Corollary 5.4), :func:`lemma_c1`, :func:`lemma_c2`, :func:`lemma_5_5`;
  :class:`LemmaRecorder` checks all of them as a :func:`refnets.train.train` callback.
* Part 3 (App. E): :func:`v_star`, :func:`v_star_norm_bound`, :func:`margin`,
  :func:`max_margin_separator` (â of Eq. 25), :func:`angle`.
* Theorem 4.2 (shattering): :func:`shattering_set`, :func:`alpha_system`, :func:`shattering_network`.
* Proposition 6.1: :func:`min_norm_separator` on the support of 𝒟, :func:`prop_6_1_witness`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


# ----------------------------------------------------------------------------- Part 1: lucky filters
def lucky_sets(W: np.ndarray, a0: np.ndarray, O: np.ndarray) -> dict:
    """The sets of Eq. 6 and Lemma 5.2 as boolean masks over the k filters.

    W_t⁺ = {i : argmax_{l ∈ O∖{2}} wᵢ·o_l = 1 and wᵢ·o₁ > 0}, W_t⁻ = {i : argmax_{l ∈ O∖{1}} wᵢ·o_l = 2 and
    wᵢ·o₂ > 0}, A^± = {i : aᵢ⁽⁰⁾ = ±1}; the lucky filters are W_t⁺ ∩ A⁺ and W_t⁻ ∩ A⁻.

    Shapes: W (k, d), a0 (k,), O (l, d). Returns a dict of (k,) boolean masks "W_plus", "W_minus",
    "A_plus", "A_minus", "lucky_plus", "lucky_minus", and their sizes "n_lucky_plus", "n_lucky_minus".
    """
    P = W @ O.T                                        # (k, l): wᵢ·o_l
    best_spurious = P[:, 2:].max(axis=1)               # max over 𝒮 = {3, …, l}
    # "argmax over O∖{2} is 1" = o₁ strictly beats every spurious pattern (ties have probability 0 at init).
    w_plus = (P[:, 0] > 0) & (P[:, 0] > best_spurious)
    w_minus = (P[:, 1] > 0) & (P[:, 1] > best_spurious)
    a_plus, a_minus = a0 == 1, a0 == -1
    out = {"W_plus": w_plus, "W_minus": w_minus, "A_plus": a_plus, "A_minus": a_minus,
           "lucky_plus": w_plus & a_plus, "lucky_minus": w_minus & a_minus}
    out["n_lucky_plus"] = int(out["lucky_plus"].sum())
    out["n_lucky_minus"] = int(out["lucky_minus"].sum())
    return out


def p_lucky(d: int) -> float:
    """P(i ∈ W₀⁺ ∩ A⁺) = (1 − 2^{−d+1}) / (2(d−1)) (Lemma 5.2, App. B; l = d patterns)."""
    return (1.0 - 2.0 ** (-d + 1)) / (2.0 * (d - 1))


def lemma_5_2_bounds(k: int, d: int) -> tuple[float, float]:
    """Lemma 5.2: with probability ≥ 1 − 4e^{−d} (for k > 8d³), k/(4d) ≤ |W₀^± ∩ A^±| ≤ k/d."""
    return k / (4.0 * d), k / float(d)


def sample_lucky_fraction(k: int, d: int, trials: int, rng=None) -> np.ndarray:
    """Fractions |W₀⁺ ∩ A⁺|/k over ``trials`` fresh inits of k filters (spherical W, Rademacher a), with
    the standard basis as O (l = d; the distribution is rotation invariant so the basis is no loss).
    Returns (trials,)."""
    from ..layers.base import as_rng
    rng = as_rng(rng)
    O = np.eye(d)
    out = np.empty(trials)
    for t in range(trials):
        W = rng.standard_normal((k, d))            # direction uniform; the radius does not matter
        a0 = rng.choice(np.array([-1.0, 1.0]), size=k)
        out[t] = lucky_sets(W, a0, O)["n_lucky_plus"] / k
    return out


# ----------------------------------------------------------------------------- Part 2: the lemmas
@dataclass
class Check:
    """One inequality at one step: ``holds``, its worst ``slack`` (≥ 0 iff it holds), a ``detail``."""

    name: str
    holds: bool
    slack: float
    detail: str = ""


def _patches(x, d):
    return x.reshape(x.shape[0], -1, d)


def lemma_5_3(W, t, eta1, r, O, lucky_plus, lucky_minus, x1, y1) -> list[Check]:
    """Lemma 5.3 and Corollary 5.4 at step t, for the lucky filters (masks from :func:`lucky_sets` at t = 0):

    1. i ∈ W₀⁺∩A⁺: o₁·wᵢ⁽ᵗ⁾ ≥ tη₁/9;  i ∈ W₀⁻∩A⁻: o₂·wᵢ⁽ᵗ⁾ ≥ tη₁/9;
    2. i ∈ W₀⁺∩A⁺: o_j·wᵢ⁽ᵗ⁾ ≤ r for every j ≠ 1 (j ≠ 2 for W₀⁻∩A⁻), over the rows of O;
    3. for every positive x₊ ∈ S₁⁺, p_i⁽ᵗ⁾(x₊) = o₁ (negative: o₂): the position holding o₁ strictly
       maximizes wᵢ·x₊[j] and wᵢ·o₁ > 0 (Eq. 3's definition of p); slack = min(lead over the best other
       position, wᵢ·o₁), > 0 iff the claim holds. Needs noiseless inputs (o_c exactly once per input).

    Shapes: W (k, d); O (l, d); masks (k,); x1 (m₁, n·d) = S₁'s inputs, y1 (m₁,).
    Returns three :class:`Check` (claims 1–3, both classes together).
    """
    d = W.shape[1]
    P = W @ O.T
    out = []
    s1, s2, s3 = [np.inf], [np.inf], [np.inf]
    for mask, c, label in ((lucky_plus, 0, 1.0), (lucky_minus, 1, -1.0)):
        if not mask.any():
            continue
        s1.append(float(np.min(P[mask, c] - t * eta1 / 9.0)))
        rest = np.delete(P[mask], c, axis=1)
        if rest.size:
            s2.append(float(np.min(r - rest)))
        xs = x1[np.asarray(y1) == label]
        if xs.size:
            px = _patches(xs, d)                                           # (m, n, d)
            u = px @ W[mask].T                                             # (m, n, |mask|): wᵢ·x[j]
            at_c = np.all(np.abs(px - O[c]) <= 1e-12, axis=-1)             # (m, n): where o_c sits
            if not np.all(at_c.sum(axis=1) == 1):
                raise ValueError("lemma_5_3: every S₁ input of the class must hold o_c exactly once "
                                 "(noiseless 𝒟)")
            u_c = np.where(at_c[..., None], u, -np.inf).max(axis=1)        # wᵢ·o_c
            u_rest = np.where(at_c[..., None], -np.inf, u).max(axis=1)     # best other position
            # p_i(x) = o_c  ⇔  o_c is the (unique) maximizer and wᵢ·o_c > 0: slack = min(lead, wᵢ·o_c) > 0.
            s3.append(float(np.min(np.minimum(u_c - u_rest, u_c))))
    out.append(Check("Lemma 5.3.1 / Cor. 5.4.1: o_c·w_i ≥ tη₁/9", min(s1) >= 0, min(s1)))
    out.append(Check("Lemma 5.3.2 / Cor. 5.4.2: o_j·w_i ≤ r (j ≠ c)", min(s2) >= 0, min(s2)))
    out.append(Check("Lemma 5.3.3 / Cor. 5.4.3: p_i(x) = o_c on S₁ of that class", min(s3) > 0, min(s3)))
    return out


def lemma_c1(W, t, eta1) -> Check:
    """Lemma C.1: ‖wᵢ⁽ᵗ⁾‖ ≤ η₁(t+1) for all i (needs r ≤ η₁ and ‖∂ℒ₁/∂wᵢ‖ ≤ 1). Slack η₁(t+1) − max‖wᵢ‖."""
    s = eta1 * (t + 1) - float(np.max(np.linalg.norm(W, axis=1)))
    return Check("Lemma C.1: ‖w_i‖ ≤ η₁(t+1)", s >= 0, s)


def lemma_c2(outputs) -> Check:
    """Lemma C.2: |N(x)| ≤ ½ for x ∈ S₁ during the first stage. ``outputs`` (m₁,) = N(x) on S₁."""
    s = 0.5 - float(np.max(np.abs(outputs)))
    return Check("Lemma C.2: |N(x)| ≤ 1/2 on S₁", s >= 0, s)


def lemma_5_5(W, t, eta1, x) -> Check:
    """Lemma 5.5: x[j]·wᵢ⁽ᵗ⁾ ≤ 2η₁t for all i, j and x from 𝒟 (1 ≤ t ≤ T₁; at t = 0 the bound is r ≤ η₁)."""
    d = W.shape[1]
    top = float(np.max(_patches(x, d) @ W.T))
    bound = 2 * eta1 * t if t >= 1 else eta1
    s = bound - top
    return Check("Lemma 5.5: x[j]·w_i ≤ 2η₁t", s >= 0, s)


class LemmaRecorder:
    """A :func:`refnets.train.train` callback for LW_CNN's first stage: at every recorded step t it checks
    Lemmas 5.3 (with Cor. 5.4), C.1, C.2 and 5.5 and records each claim's slack into the trace as
    ``"lemma:<name>"``; ``violations`` lists (t, claim, slack) of every failure.

    Parameters: O (l, d); a0 (k,) = a⁽⁰⁾; x1, y1 = S₁; x_all = inputs for Lemma 5.5 (e.g. all of S or a
    test sample); eta1, r. The lucky masks are fixed at t = 0 (the lemma is about W₀^± ∩ A^±).
    """

    def __init__(self, O, a0, x1, y1, eta1, r, x_all=None):
        self.O, self.a0, self.x1, self.y1 = O, np.asarray(a0), x1, np.asarray(y1)
        self.eta1, self.r = eta1, r
        self.x_all = x1 if x_all is None else x_all
        self.sets = None
        self.violations = []
        self.worst = {}

    def __call__(self, step, model, trace):
        W = model.params["W"]
        if self.sets is None:
            self.sets = lucky_sets(W, self.a0, self.O)
        outputs = model.decision(self.x1)
        checks = lemma_5_3(W, step, self.eta1, self.r, self.O, self.sets["lucky_plus"], self.sets["lucky_minus"],
                           self.x1, self.y1)
        checks += [lemma_c1(W, step, self.eta1), lemma_c2(outputs), lemma_5_5(W, step, self.eta1, self.x_all)]
        rec = {}
        for c in checks:
            rec["lemma:" + c.name] = c.slack
            self.worst[c.name] = min(self.worst.get(c.name, np.inf), c.slack)
            if not c.holds:
                self.violations.append((step, c.name, c.slack))
        trace.record(lemma_step=step, **rec)

    @property
    def all_hold(self) -> bool:
        return not self.violations


# ----------------------------------------------------------------------------- Part 3: the second layer
def v_star(lucky_plus, lucky_minus, k, d, eta1, T1) -> np.ndarray:
    """The separator of App. E: v*ᵢ = 80d/(kη₁T₁) on W₀⁺∩A⁺, −80d/(kη₁T₁) on W₀⁻∩A⁻, 0 elsewhere. (k,)."""
    c = 80.0 * d / (k * eta1 * T1)
    return c * lucky_plus.astype(float) - c * lucky_minus.astype(float)


def v_star_norm_bound(k, d, eta1, T1) -> float:
    """‖v*‖ ≤ √(2·80²d/(kη₁²T₁²)) (App. E, using |W₀^± ∩ A^±| ≤ k/d)."""
    return float(np.sqrt(2 * 80.0 ** 2 * d / (k * eta1 ** 2 * T1 ** 2)))


def margin(Z, y, v) -> float:
    """min_i yᵢ v·z(xᵢ): the margin of the features Z (m, k) under v (k,) (App. E claims > 1 for v*)."""
    return float(np.min(np.asarray(y) * (Z @ v)))


def max_margin_separator(Z, y, tol=1e-10, max_sweeps=100_000) -> np.ndarray:
    """â = argmin ‖v‖² s.t. yᵢ v·zᵢ ≥ 1 (Eq. 25 / Eq. 9; no bias), by dual coordinate ascent.

    Dual: max_{α ≥ 0} Σαᵢ − ½‖Σ αᵢyᵢzᵢ‖², v = Σ αᵢyᵢzᵢ. Exact coordinate steps
    αᵢ ← max(0, αᵢ + (1 − yᵢ v·zᵢ)/‖zᵢ‖²) until the KKT violation is below ``tol`` (relative).
    Raises ValueError if it has not converged after ``max_sweeps`` sweeps: on inseparable data the dual
    is unbounded and never converges (:func:`refnets.models.brutzkus2021.linearly_separable` decides
    separability exactly).

    Shapes: Z (m, k), y (m,) -> â (k,).
    """
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    G = y[:, None] * Z
    q = np.einsum("ij,ij->i", G, G)
    if np.any(q == 0):
        raise ValueError("max_margin_separator: a zero feature vector cannot be separated with margin 1")
    K = G @ G.T
    m = len(y)
    alpha = np.zeros(m)
    f = np.zeros(m)                      # f = K α = yᵢ v·zᵢ
    for sweep in range(max_sweeps):
        viol = 0.0
        for i in range(m):
            g = 1.0 - f[i]
            new = max(0.0, alpha[i] + g / q[i])
            delta = new - alpha[i]
            if delta != 0.0:
                alpha[i] = new
                f += delta * K[:, i]
            pg = g if alpha[i] > 0 else max(g, 0.0)
            viol = max(viol, abs(pg))
        if viol < tol:
            return G.T @ alpha
    raise ValueError(f"max_margin_separator: no convergence in {max_sweeps} sweeps (KKT violation {viol:.3g}, "
                     f"sum of dual variables {alpha.sum():.3g}); the data are probably not linearly separable")


def angle(u, v) -> float:
    """The angle between u and v in radians (0 when they point the same way)."""
    c = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


# ----------------------------------------------------------------------------- Theorem 4.2: shattering
def shattering_set(n: int, O: np.ndarray | None = None, last: str = "o1"):
    """The set B of Theorem 4.2 (d = 2n): x_I[j] = I[j] o_{2j+1} + (1 − I[j]) o_{2j+2} for j = 1..n−1 and
    x_I[n] = o₁ (``last="o1"``) or o₂ (``"o2"``; the proof allows either, ``"alternate"`` mixes them).

    O : (2n, d') patterns (rows), default the standard basis of ℝ^{2n}.
    Returns (X (2^{n−1}, n·d'), Is (2^{n−1}, n−1) the 0/1 index vectors I, in lexicographic order).
    """
    if n < 2:
        raise ValueError(f"shattering_set: Theorem 4.2 needs n >= 2, got {n}")
    O = np.eye(2 * n) if O is None else np.asarray(O, dtype=np.float64)
    if O.shape[0] < 2 * n:
        raise ValueError(f"shattering_set: needs 2n = {2 * n} patterns, got {O.shape[0]}")
    Is = np.array(list(itertools.product((0, 1), repeat=n - 1)), dtype=int)
    rows = []
    for s, I in enumerate(Is):
        # 1-based o_{2j+1} / o_{2j+2} are rows 2j and 2j+1 of O (0-based), j = 1..n−1.
        pats = [O[2 * j] if I[j - 1] else O[2 * j + 1] for j in range(1, n)]
        end = {"o1": O[0], "o2": O[1], "alternate": O[s % 2]}[last]
        rows.append(np.concatenate(pats + [end]))
    return np.array(rows), Is


def alpha_system(y_by_I: np.ndarray, Is: np.ndarray) -> np.ndarray:
    """Solve Eq. 5: for every I, Σ_{I' ≠ I} α_{I'} = y_{Iᶜ}; the matrix is 𝟙𝟙ᵀ − I (invertible for
    M = 2^{n−1} ≥ 2, Sherman–Morrison). Closed form: s = Σα = Σ_I y_I/(M − 1), α_I = s − y_{Iᶜ}.

    Shapes: y_by_I (M,) labels in the order of ``Is`` (M, n−1). Returns α (M,).
    """
    M = len(Is)
    index = {tuple(I): s for s, I in enumerate(Is)}
    y_comp = np.array([y_by_I[index[tuple(1 - I)]] for I in Is], dtype=np.float64)
    A = np.ones((M, M)) - np.eye(M)
    return np.linalg.solve(A, y_comp)


def shattering_network(n: int, y_by_I, O: np.ndarray | None = None, last: str = "o1"):
    """Theorem 4.2's network for the labels y_by_I (M = 2^{n−1},) of B: W has rows
    w^{(I)} = max(α_I, 0) Σ_{j<n} x_I[j] followed by u^{(I)} = max(−α_I, 0) Σ_{j<n} x_I[j], and
    a = (1, …, 1, −1, …, −1). Then N(x_I) = Σ_{I' ≠ Iᶜ} α_{I'} = y_I.

    Returns (W (2M, d'), a (2M,), X (M, n·d'), alpha (M,)).
    """
    X, Is = shattering_set(n, O, last)
    dd = X.shape[1] // n
    alpha = alpha_system(np.asarray(y_by_I, dtype=np.float64), Is)
    S = X.reshape(len(Is), n, dd)[:, : n - 1].sum(axis=1)        # Σ_{j ≤ n−1} x_I[j]
    W = np.concatenate([np.maximum(alpha, 0)[:, None] * S, np.maximum(-alpha, 0)[:, None] * S])
    a = np.concatenate([np.ones(len(Is)), -np.ones(len(Is))])
    return W, a, X, alpha


# ----------------------------------------------------------------------------- Proposition 6.1
def min_norm_separator(O: np.ndarray, n: int, tol=1e-12) -> np.ndarray:
    """ŵ of Eq. 9: the minimum-norm w ∈ ℝ^{nd} with y w·x ≥ 1 on the whole support of 𝒟
    (enumerated by :func:`refnets.data.patterns.support`: keep n and l small). Returns (n·d,).

    Proposition 6.1: ‖ŵ‖² ≥ n. (Our own computation by symmetry, not in the paper: ŵ[j] = o₁ − o₂ for
    every j, ‖ŵ‖² = 2n; the tests check both.)"""
    from ..data.patterns import support
    X, y = support(O, n)
    return max_margin_separator(X, y, tol=tol)


def prop_6_1_witness(w: np.ndarray, O: np.ndarray, n: int):
    """The proof of Proposition 6.1 as a function: if ‖w‖² < n, some block has ‖w[i]‖ < 1, and the pair
    x₊ = (o₃, …, o₁ at i, …, o₃), x₋ = (o₃, …, o₂ at i, …, o₃) of the support violates y w·x ≥ 1.

    Returns None if ‖w‖² ≥ n, else (x₊, x₋) (each (n·d,)), for which w·x₊ < 1 or w·x₋ > −1.
    """
    d = O.shape[1]
    blocks = np.asarray(w).reshape(n, d)
    if float(np.sum(blocks ** 2)) >= n:
        return None
    i = int(np.argmin(np.linalg.norm(blocks, axis=1)))
    xp = np.tile(O[2], (n, 1))
    xm = xp.copy()
    xp[i], xm[i] = O[0], O[1]
    return xp.ravel(), xm.ravel()
