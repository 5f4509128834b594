# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Brutzkus & Globerson (2021): an optimization and generalization analysis for max-pooling networks
#
# The paper (UAI 2021) studies a pattern-detection problem: every input holds n patterns; a positive input
# contains the pattern o₁ somewhere, a negative one o₂, and every other position holds a *spurious* pattern
# that says nothing about the label. A network with a convolution, ReLU, **max-pooling** and a linear layer
# (ConvPool, Eq. 1) can shatter exponentially many points (VC dimension ≥ 2^{d/2−1}, Theorem 4.2), yet
# layerwise gradient descent (LW_CNN, Algorithm 1) learns it with O(d) samples (Theorem 5.1), while fully
# connected networks and the linear SVM have bounds that grow like n² (Proposition 6.1).
#
# This tutorial follows the proof step by step with refnets and asserts every claim it shows. It runs as a
# plain script (quick mode, well under a minute); `REFNETS_MODE=full` uses larger sizes. Figures go to
# `REFNETS_OUT` (default `tutorial_out/brutzkus2021`).

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from refnets.data import patterns as P  # noqa: E402
from refnets.experiments.brutzkus2021 import compare_job, single_thread  # noqa: E402
from refnets.models import brutzkus2021 as M  # noqa: E402
from refnets.theory import brutzkus2021 as T  # noqa: E402

FULL = os.environ.get("REFNETS_MODE", "quick") == "full"
OUT = Path(os.environ.get("REFNETS_OUT", "tutorial_out/brutzkus2021"))
OUT.mkdir(parents=True, exist_ok=True)
print(f"mode: {'full' if FULL else 'quick'}; figures in {OUT}")
threads = single_thread()   # small matrices: one thread is faster than two (see the experiments module)
threads.__enter__()

# %% [markdown]
# ## 1. The distribution 𝒟
#
# O = {o₁, …, o_l} orthonormal in ℝᵈ. A sample: y = ±1 with probability ½; o₁ (or o₂) at a uniform
# position j, a uniformly drawn spurious pattern o₃ … o_l everywhere else. x = (x[1], …, x[n]) ∈ ℝ^{nd}.

# %%
d, n = 4, 3
O = P.orthonormal_patterns(d, d, basis="random", rng=0)
x, y, idx = P.sample(6, n, O, rng=1, return_indices=True)
for row, lab in zip(idx, y):
    print(f"y = {int(lab):+d}: patterns", ["o%d" % (i + 1) for i in row])
assert np.allclose(O @ O.T, np.eye(d))
assert all(((r == 0).sum(), (r == 1).sum()) == ((1, 0) if lab > 0 else (0, 1)) for r, lab in zip(idx, y))

# %% [markdown]
# ## 2. ConvPool and its lucky filters (Lemma 5.2)
#
# N(x) = Σᵢ aᵢ max_j σ(wᵢ·x[j]). Theorem 5.1 initialises wᵢ uniform on the sphere of radius r and aᵢ = ±1.
# A filter is **lucky** if o₁ is the pattern (of O∖{o₂}) it likes best, positively, and aᵢ = +1 — it is
# already a (weak) detector of the positive class with the right sign — or symmetrically for o₂ and −1.
# Lemma 5.2: P(i ∈ W₀⁺ ∩ A⁺) = (1 − 2^{−d+1})/(2(d−1)), so about k/(2d) filters are lucky for each class.
#
# Theorem 5.1's hyperparameters: k > 8d³, η₁ ≤ 1/(4k(T₁+1)), r ≤ η₁/200, η₂ < 8k.

# %%
T1 = 20 if FULL else 12
hp = M.theorem_5_1_hyperparameters(d, T1)
check = M.check_theorem_5_1(hp["k"], d, hp["eta1"], hp["eta2"], hp["r"], T1)
print(check)
assert check.ok
print("and a setting that breaks it:")
print(M.check_theorem_5_1(100, d, 10 * hp["eta1"], hp["eta2"], hp["r"], T1))

m = 60 if FULL else 40
x, y = P.sample(m, n, O, rng=2)
net = M.ConvPool(d, hp["k"], r=hp["r"], rng=3)
a0 = net.params["a"].copy()
sets = T.lucky_sets(net.params["W"], a0, O)
lo, hi = T.lemma_5_2_bounds(hp["k"], d)
print(f"k = {hp['k']}: |W0+ ∩ A+| = {sets['n_lucky_plus']}, |W0- ∩ A-| = {sets['n_lucky_minus']}; "
      f"Lemma 5.2 range [{lo:.1f}, {hi:.1f}]; expected k·P(lucky) = {hp['k'] * T.p_lucky(d):.1f}")
assert lo <= sets["n_lucky_plus"] <= hi and lo <= sets["n_lucky_minus"] <= hi

fr = T.sample_lucky_fraction(k=400, d=d, trials=100 if FULL else 40, rng=4)
se = np.sqrt(T.p_lucky(d) * (1 - T.p_lucky(d)) / (400 * len(fr)))
print(f"empirical P(lucky) = {fr.mean():.4f} ± {se:.4f} (1 SE); formula {T.p_lucky(d):.4f}")
assert abs(fr.mean() - T.p_lucky(d)) < 3 * se

# %%
W0 = net.params["W"] / hp["r"]
proj = W0 @ O.T
best_spur = proj[:, 2:].max(axis=1)
fig, ax = plt.subplots(figsize=(5.2, 4.2))
kinds = [("lucky +  (W0+ ∩ A+)", sets["lucky_plus"], "C3"), ("lucky −  (W0− ∩ A−)", sets["lucky_minus"], "C0")]
other = ~(sets["lucky_plus"] | sets["lucky_minus"])
ax.scatter(proj[other, 0], best_spur[other], s=6, c="0.75", label="other filters")
for (lab, mask, c), col in zip(kinds, (0, 1)):
    ax.scatter(proj[mask, col], best_spur[mask], s=10, c=c, label=lab)
ax.plot([-1, 1], [-1, 1], "k:", lw=1, label="o_c ties the best spurious pattern")
ax.set_xlabel("o₁ · wᵢ⁽⁰⁾ / r   (o₂ · wᵢ⁽⁰⁾ / r for the lucky − filters)")
ax.set_ylabel("max over spurious o_j · wᵢ⁽⁰⁾ / r")
ax.set_title("Lucky filters at initialisation", fontsize=10)
ax.legend(fontsize=7)
fig.savefig(OUT / "lucky_filters.png", dpi=110, bbox_inches="tight")
plt.close(fig)

# %% [markdown]
# ## 3. First stage: GD on W with a frozen (Lemmas 5.3, C.1, C.2, 5.5)
#
# Lemma 5.3: for lucky filters, o₁·wᵢ⁽ᵗ⁾ ≥ tη₁/9 (they grow towards their pattern) while o_j·wᵢ⁽ᵗ⁾ ≤ r for
# j ≠ 1, and every positive input of S₁ activates them at o₁. Lemma C.1 bounds every filter, ‖wᵢ⁽ᵗ⁾‖ ≤ η₁(t+1);
# Lemma C.2 keeps |N(x)| ≤ ½ (so ℓ′ stays away from 0); Lemma 5.5: x[j]·wᵢ⁽ᵗ⁾ ≤ 2η₁t. A `LemmaRecorder`
# checks all of them at every step; a second callback records the projections for the plot.

# %%
s1, s2 = M.split_S(m)
rec = T.LemmaRecorder(O, a0, x[s1], y[s1], hp["eta1"], hp["r"], x_all=x)
traj = []


def both(step, model, trace):
    rec(step, model, trace)
    traj.append(model.params["W"] @ O.T)


T2 = 20000 if FULL else 3000
snaps = {}


def stage2(step, model, trace):
    if step in (1, 10, 100, 1000, T2) or step % 500 == 0:
        snaps[step] = model.params["a"].copy()


res = M.lw_cnn(net, x, y, T1, T2, hp["eta1"], hp["eta2"], callback1=both, callback2=stage2)
print("every lemma held at every step:", rec.all_hold)
for name, slack in rec.worst.items():
    print(f"  {name}: worst slack {slack:.3g}")
assert rec.all_hold, rec.violations

# %%
traj = np.array(traj)                                # (T1+1, k, l)
t = np.arange(T1 + 1)
fig, ax = plt.subplots(figsize=(5.6, 4.2))
for i in np.nonzero(sets["lucky_plus"])[0][:30]:
    ax.plot(t * hp["eta1"] / 9, traj[:, i, 0], color="C3", lw=0.7, alpha=0.6)
for i in np.nonzero(other)[0][:30]:
    ax.plot(t * hp["eta1"] / 9, traj[:, i, 0], color="0.6", lw=0.7, alpha=0.6)
ax.plot(t * hp["eta1"] / 9, t * hp["eta1"] / 9, "k--", lw=1.5, label="tη₁/9 (Lemma 5.3 lower bound)")
ax.plot([], [], color="C3", label="lucky filters (W₀⁺∩A⁺)")
ax.plot([], [], color="0.6", label="other filters")
ax.set_xlabel("tη₁/9")
ax.set_ylabel("o₁ · wᵢ⁽ᵗ⁾")
ax.set_title("First-layer dynamics under Theorem 5.1's hyperparameters", fontsize=10)
ax.legend(fontsize=7)
fig.savefig(OUT / "trajectories.png", dpi=110, bbox_inches="tight")
plt.close(fig)
lucky_proj = traj[:, sets["lucky_plus"], 0]
assert np.all(lucky_proj >= (t * hp["eta1"] / 9)[:, None])

# %% [markdown]
# ## 4. Second stage: GD on a converges in direction to the max-margin separator (Part 3)
#
# After T₁ steps the pooled features z(x)ᵢ = max_j σ(wᵢ⁽ᵀ¹⁾·x[j]) are linearly separable with margin 1 by
# v* (80d/(kη₁T₁) on the lucky filters, signed), ‖v*‖² ≤ 2·80²d/(kη₁²T₁²). Training a is logistic
# regression on z, so a⁽ᵗ⁾/‖a⁽ᵗ⁾‖ → â/‖â‖ (Soudry et al. 2018) — slowly, like 1/log t.

# %%
Z = net.features(x[s2])
v = T.v_star(sets["lucky_plus"], sets["lucky_minus"], hp["k"], d, hp["eta1"], T1)
xf, yf = P.sample(500, n, O, rng=9)
mg = T.margin(net.features(xf), yf, v)
print(f"margin of v* on 500 fresh samples: {mg:.3f} (> 1); ‖v*‖ = {np.linalg.norm(v):.4g} ≤ bound "
      f"{T.v_star_norm_bound(hp['k'], d, hp['eta1'], T1):.4g}")
assert mg > 1 and np.linalg.norm(v) <= T.v_star_norm_bound(hp["k"], d, hp["eta1"], T1)
ahat = T.max_margin_separator(Z, y[s2])
steps = sorted(snaps)
angles = [T.angle(snaps[s], ahat) for s in steps]
for s, a in zip(steps, angles):
    if s in (1, 10, 100, 1000, T2):
        print(f"  t = {s:6d}: angle(a⁽ᵗ⁾, â) = {a:.4f} rad")
assert angles[-1] < angles[steps.index(100)] < angles[steps.index(10)]
test_err = M.error_rate(net, xf, yf)
print(f"LW_CNN: training error on S₂ {M.error_rate(net, x[s2], y[s2]):.3f}, test error {test_err:.3f}")
fig, ax = plt.subplots(figsize=(5.2, 3.8))
ax.semilogx(steps, angles, "o-")
ax.set_xlabel("GD step t on a (log scale)")
ax.set_ylabel("angle(a⁽ᵗ⁾, â) [rad]")
ax.set_title("Implicit bias of the second stage", fontsize=10)
fig.savefig(OUT / "angle.png", dpi=110, bbox_inches="tight")
plt.close(fig)

# %% [markdown]
# ## 5. Shattering by hand (Theorem 4.2, n = 3, d = 6)
#
# B = {x_I : I ∈ {0,1}²}, x_I[j] = I[j] o_{2j+1} + (1−I[j]) o_{2j+2} (j = 1, 2), x_I[3] = o₁. Two points
# x_I, x_{I'} share a pattern unless I' = Iᶜ. Give each I a weight α_I and two filters,
# w^{(I)} = max(α_I, 0) Σ_{j<n} x_I[j] (a = +1) and u^{(I)} = max(−α_I, 0) Σ_{j<n} x_I[j] (a = −1): filter I
# fires with value |α_I| on every point except x_{Iᶜ}, so N(x_I) = Σ_{I'≠Iᶜ} α_{I'}. Choosing α to solve
# Σ_{I'≠I} α_{I'} = y_{Iᶜ} (Eq. 5; matrix 𝟙𝟙ᵀ − I) gives N(x_I) = y_I for *any* labels.

# %%
Xb, Is = T.shattering_set(3)
yb = np.array([+1.0, -1.0, -1.0, +1.0])           # an XOR-like labeling
W, a, Xb, alpha = T.shattering_network(3, yb)
# by hand: s = Σα = Σy/(M−1) = 0/3 = 0, so α_I = −y_{Iᶜ}
print("I      y_I   α_I")
for I, yi, al in zip(Is, yb, alpha):
    print(I, f"{yi:+.0f}  {al:+.3f}")
comp = {tuple(I): s for s, I in enumerate(Is)}
assert np.allclose(alpha, [-yb[comp[tuple(1 - I)]] for I in Is])
cnn = M.ConvPool(6, W.shape[0])
cnn.set_parameters({"W": W, "a": a})
print("N(x_I) =", cnn.decision(Xb), " y_I =", yb)
assert np.allclose(cnn.decision(Xb), yb)
n_ok = 0
for labels in np.array(np.meshgrid(*[[-1.0, 1.0]] * 4)).reshape(4, -1).T:
    W, a, _, _ = T.shattering_network(3, labels)
    cnn.set_parameters({"W": W, "a": a})
    n_ok += int(np.all(cnn.predict(Xb) == labels))
print(f"all {n_ok}/16 labelings of B realised: B is shattered")
assert n_ok == 16

# %% [markdown]
# ## 6. Why fully connected models need more data (Proposition 6.1)
#
# Any w with y w·x ≥ 1 on the support of 𝒟 has ‖w‖² ≥ n, so the margin bound ‖w‖²R² of the linear SVM and of
# the FC networks of Brutzkus et al. (2018) is O(n²), while ConvPool's is O(d). We compute the min-norm
# separator on the enumerated support: it is ŵ[j] = o₁ − o₂ at every position, ‖ŵ‖² = 2n.

# %%
for nn in (2, 3, 4):
    w = T.min_norm_separator(P.orthonormal_patterns(4, 4, rng=nn), nn)
    print(f"n = {nn}: ‖ŵ‖² = {np.sum(w ** 2):.4f} (Prop. 6.1: ≥ {nn})")
    assert np.sum(w ** 2) >= nn

# %% [markdown]
# ## 7. CNN vs MLP vs SVM (Sec. 7)
#
# The paper's setting (d = 20, n = 10, k = 500, patterns from a random orthogonal matrix), all three trained
# to zero training error: ConvPool with Adam, an MLP (one leaky-ReLU hidden layer, as many parameters) with
# Adam, and the hard-margin linear SVM. `refnets reproduce brutzkus2021` runs the full figures.

# %%
sizes = [50, 200, 500] if FULL else [40, 160]
rows = []
for mm in sizes:
    r = compare_job("patterns", mm, 0, 20, 20, 10, 500, 0.0, 1000 if FULL else 500, 1e-2, 300, 1e-3, 1.0, 0.01)
    rows.append(r)
    print(f"m = {mm:4d}: test error ConvPool {r['ConvPool_test']:.3f} | MLP {r['MLP_test']:.3f} | "
          f"SVM {r['SVM_test']:.3f}  (training errors {r['ConvPool_train']}, {r['MLP_train']}, {r['SVM_train']})")
assert all(r["ConvPool_test"] < r["MLP_test"] for r in rows)
assert all(r["ConvPool_test"] <= r["SVM_test"] for r in rows)
threads.__exit__(None, None, None)
