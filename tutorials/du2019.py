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
# # Du, Lee, Li, Wang & Zhai (2019): gradient descent finds global minima of deep neural networks
#
# The paper (arXiv 1811.03804) proves that randomly initialised gradient descent drives the training loss of a
# deep, wide network to **zero at a linear rate**, for arbitrary labels, for a fully connected network, a ResNet
# and a convolutional ResNet. The proof studies the residual y − u(k) of the predictions u(k) and shows
#
# $$y - u(k+1) \approx (I - \eta G(k))\,(y - u(k)), \qquad G_{ij}(k) = \Big\langle \frac{\partial u_i}{\partial\theta}, \frac{\partial u_j}{\partial\theta}\Big\rangle \tag{6}$$
#
# where the Gram matrix G(k) stays close to a deterministic limit K⁽ᴴ⁾ whose least eigenvalue λ sets the rate
# (1 − ηλ/2)ᵏ. This tutorial builds every piece with refnets, step by step, and asserts each claim it shows.
# It runs as a script in quick mode (well under a minute); `REFNETS_MODE=full` uses larger sizes. Figures go
# to `REFNETS_OUT` (default `tutorial_out/du2019`).

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from refnets.experiments.common import loglog_slope  # noqa: E402
from refnets.layers.activations import softplus, logistic  # noqa: E402
from refnets.models import du2019 as M  # noqa: E402
from refnets.theory import du2019 as T  # noqa: E402
from refnets.theory import gaussian as G  # noqa: E402

try:  # the matrices here are small (n ≤ 8 rows): one BLAS thread beats thread hand-off on a busy machine
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
except ImportError:  # pragma: no cover
    pass

FULL = os.environ.get("REFNETS_MODE", "quick") == "full"
OUT = Path(os.environ.get("REFNETS_OUT", "tutorial_out/du2019"))
OUT.mkdir(parents=True, exist_ok=True)
WIDTHS = [64, 256, 1024, 4096] if FULL else [64, 256, 1024]
print(f"mode: {'full' if FULL else 'quick'}; figures in {OUT}")

# %% [markdown]
# ## 1. The network, by hand
#
# The fully connected network of Eq. (1), with no biases and inputs on the unit sphere:
#
# $$x^{(0)} = x,\qquad x^{(h)} = \sqrt{\tfrac{c_\sigma}{m}}\,\sigma\big(W^{(h)} x^{(h-1)}\big)\ (h = 1..H),\qquad f(x) = a^\top x^{(H)} \tag{1}$$
#
# Every entry of every W⁽ʰ⁾ and of a is N(0, 1); the multiplier √(c_σ/m) — not the initialisation — keeps the
# hidden layers of order one (the "NTK parametrisation"). σ is smooth and analytic: softplus log(1 + eᶻ).
# We write Eq. (1) in NumPy and check refnets' `FCNet` against it.

# %%
d, m, H = 5, 64, 3
net = M.FCNet(d, m, H, rng=0)
X = M.unit_inputs(4, d, rng=1)                       # (n, d), ‖x_i‖ = 1
W = net.weights()                                    # {"W1": (m, d), "W2": (m, m), "W3": (m, m), "a": (1, m)}
cs = net.c_sigma
x = X.T
for h in range(1, H + 1):
    x = np.sqrt(cs / m) * softplus(W[f"W{h}"] @ x)
f_by_hand = (W["a"] @ x).ravel()
print("by hand:", f_by_hand)
print("FCNet:  ", net.forward(X).ravel())
assert np.allclose(f_by_hand, net.forward(X).ravel(), rtol=1e-13)

# %% [markdown]
# The ResNet (Eq. 2) adds the skip x⁽ʰ⁾ = x⁽ʰ⁻¹⁾ + (c_res/(H√m)) σ(W⁽ʰ⁾x⁽ʰ⁻¹⁾) at every layer h ≥ 2, and the
# convolutional ResNet (Eq. 3) replaces W⁽ʰ⁾x by W⁽ʰ⁾φ(x) with the patch operator φ (a 1-D convolution with
# kernel q = 3, "same" zero padding). They are `M.ResNet(d, m, H, c_res=…)` and `M.ConvResNet(d, p, m, H, …)`.

# %% [markdown]
# ## 2. c_σ
#
# $c_\sigma = 1 / \mathbb{E}_{z\sim N(0,1)}[\sigma(z)^2]$ normalises each layer: with ‖x⁽ʰ⁻¹⁾‖ ≈ 1,
# ‖x⁽ʰ⁾‖² = (c_σ/m) Σ_r σ(w_r·x)² → c_σ E σ(z)² = 1. refnets computes it by half-range Gauss–Hermite quadrature
# (exact for piecewise polynomials with their break at 0, so ReLU gives exactly 2).

# %%
rng = np.random.default_rng(0)
z = rng.standard_normal(1_000_000)
for act in ["softplus", "tanh", "logistic", "relu"]:
    fn = {"softplus": softplus, "tanh": np.tanh, "logistic": logistic, "relu": lambda t: np.maximum(t, 0)}[act]
    mc = 1 / np.mean(fn(z) ** 2)
    print(f"c_σ({act:8s}) quadrature {G.c_sigma(act):.10f}   Monte Carlo {mc:.4f}")
    assert abs(G.c_sigma(act) - mc) < 0.01 * mc
assert abs(G.c_sigma("relu") - 2.0) < 1e-12

# %% [markdown]
# ## 3. The limit kernel K⁽ᴴ⁾, by hand for three points, then with the library
#
# Sec. 5 defines, for h = 1..H−1,
#
# $$K^{(0)}_{ij} = \langle x_i, x_j\rangle,\quad A^{(h)}_{ij} = \begin{pmatrix} K^{(h-1)}_{ii} & K^{(h-1)}_{ij}\\ K^{(h-1)}_{ji} & K^{(h-1)}_{jj}\end{pmatrix},\quad K^{(h)}_{ij} = c_\sigma\,\mathbb{E}_{(u,v)\sim N(0, A^{(h)}_{ij})}[\sigma(u)\sigma(v)]$$
#
# and for the last layer $K^{(H)}_{ij} = c_\sigma K^{(H-1)}_{ij}\,\mathbb{E}_{(u,v)\sim N(0,A^{(H)}_{ij})}[\sigma'(u)\sigma'(v)]$.
# (The slides write A⁽ᴴ⁻¹⁾ here; the pre-activations of layer H have covariance K⁽ᴴ⁻¹⁾, which is A⁽ᴴ⁾ — the
# Monte Carlo test at m = 4096 in `tests/test_du2019_theory.py` confirms this reading.) Why: ∂f/∂W⁽ᴴ⁾ =
# √(c_σ/m) (a ⊙ σ′(W⁽ᴴ⁾x⁽ᴴ⁻¹⁾)) x⁽ᴴ⁻¹⁾ᵀ, so G⁽ᴴ⁾_ij = (c_σ/m) Σ_r a_r² σ′σ′ ⟨x⁽ᴴ⁻¹⁾_i, x⁽ᴴ⁻¹⁾_j⟩ → K⁽ᴴ⁾_ij.
# Every expectation is a 2-D Gaussian integral, `G.expect2d`.

# %%
X3 = M.unit_inputs(3, d, rng=2)
K = X3 @ X3.T
for h in range(1, H):
    K = np.array([[cs * G.expect2d("softplus", "softplus", K[i, i], K[i, j], K[j, j]) for j in range(3)] for i in range(3)])
KH_hand = np.array([[cs * K[i, j] * G.expect2d("softplus'", "softplus'", K[i, i], K[i, j], K[j, j])
                     for j in range(3)] for i in range(3)])
KH_lib = T.fc_kernel(X3, H)
print(np.round(KH_hand, 6))
assert np.allclose(KH_hand, KH_lib, atol=1e-14)
print("λ_min(K⁽ᴴ⁾) =", T.lambda_min(KH_lib))

# %% [markdown]
# The quadrature is checked independently against ReLU's arc-cosine closed forms,
# E[σ(u)σ(v)] = (sin θ + (π−θ)cos θ)/(2π) and E[σ′(u)σ′(v)] = (π−θ)/(2π) for unit variances at angle θ:

# %%
for rho in [-0.9, 0.0, 0.5, 0.99]:
    q1, c1 = G.expect2d("relu", "relu", 1, rho, 1), G.relu_expect_sigma_sigma(1, rho, 1)
    q2, c2 = G.expect2d("relu'", "relu'", 1, rho, 1), G.relu_expect_dsigma_dsigma(1, rho, 1)
    print(f"ρ = {rho:5.2f}: E σσ {q1:.12f} vs {c1:.12f};  E σ'σ' {q2:.12f} vs {c2:.12f}")
    assert abs(q1 - c1) < 1e-10 and abs(q2 - c2) < 1e-10

# %% [markdown]
# The ResNet (Def. 6.1) adds mean vectors b⁽ʰ⁾: the skip keeps the (non-zero) mean of σ in the hidden state, so
# ⟨x⁽ʰ⁻¹⁾_i, σ(W x⁽ʰ⁻¹⁾_j)⟩/√m → b_i E σ(v) does not vanish:
# K⁽ʰ⁾_ij = K⁽ʰ⁻¹⁾_ij + E[(c_res/H)(b_i σ(v) + b_j σ(u)) + (c_res/H)² σ(u)σ(v)], b⁽ʰ⁾_i = b⁽ʰ⁻¹⁾_i + (c_res/H) E σ(u).
# The conv ResNet (Def. 7.1) does the same on p×p blocks, with traces over the patch sets D_l. Library:
# `T.resnet_kernel`, `T.conv_resnet_kernel`.

# %% [markdown]
# ## 4. G(0) against K⁽ᴴ⁾
#
# G(0) comes from one forward, one backward with dout = 1 and each layer's exact share
# G⁽ʰ⁾ = (ΔΔᵀ) ⊙ (XXᵀ) (`M.gram`, no Jacobian). Its last hidden layer's share G⁽ᴴ⁾(0) approaches K⁽ᴴ⁾ like m^{−1/2}:

# %%
Xg = M.unit_inputs(6, 8, rng=3)
K_fc = T.fc_kernel(Xg, 2)
errs = []
for mm in WIDTHS:
    e = np.mean([np.linalg.norm(T.last_layer_gram(M.FCNet(8, mm, 2, rng=s), Xg) - K_fc, 2) for s in range(4)])
    errs.append(e)
    print(f"m = {mm:5d}: ‖G⁽ᴴ⁾(0) − K⁽ᴴ⁾‖₂ = {e:.4f}")
slope, _ = loglog_slope(WIDTHS, errs)
print(f"fitted slope {slope:+.2f} (theory −1/2)")
assert errs[-1] < errs[0] and slope < -0.2

# %% [markdown]
# G has one entry per pair of samples, so it can also be built block by block: `empirical_ntk(net, X, block=b)`
# runs one forward and backward per pair of b-sample blocks and fills G[I, J] from it. Only 2b samples'
# activations are held at a time (for n too large to hold them all), for about n/b times the work; the
# same G to rounding.

# %%
from refnets.ntk import empirical_ntk  # noqa: E402

net_c = M.ConvResNet(d=3, p=16, m=32, H=3, rng=6)
Xc = np.random.default_rng(7).standard_normal((10, 3, 16))
G_all = empirical_ntk(net_c, Xc)
G_blk = empirical_ntk(net_c, Xc, block=3)           # blocks of 3, 3, 3, 1 samples
print(f"max |G(block=3) − G| / max |G| = {np.abs(G_blk - G_all).max() / np.abs(G_all).max():.1e}")
assert np.allclose(G_blk, G_all, rtol=1e-12, atol=1e-14 * np.abs(G_all).max())

# %% [markdown]
# ## 5. The one-step dynamics
#
# One GD step θ ← θ − η ∇L with L = ½ Σ (u_i − y_i)² changes the predictions by −ηG(k)(u(k) − y) to first order
# (chain rule: ∂u_i/∂θ · ∇L = Σ_j G_ij (u_j − y_j)), so Eq. (6) holds up to O(η²). We measure the remainder for
# shrinking η: it halves twice when η halves (slope 2 on log-log axes).

# %%
net_r = M.ResNet(8, 128, 3, c_res=0.5, rng=4)
y = np.random.default_rng(5).choice([-1.0, 1.0], 6)
lmax = np.linalg.norm(T.gram(net_r, Xg), 2)
etas = np.array([4e-3, 2e-3, 1e-3, 5e-4]) / lmax
res = [T.one_step_residual(net_r, Xg, y, e) for e in etas]
s_eta, _ = loglog_slope(etas, res)
for e, r in zip(etas, res):
    print(f"η = {e:.2e}: ‖(y − u(k+1)) − (I − ηG)(y − u(k))‖ = {r:.3e}")
print(f"slope in η: {s_eta:.3f}")
assert 1.85 < s_eta < 2.15

# %% [markdown]
# ## 6. Training: zero loss at a linear rate
#
# Random ±1 labels, full-batch GD on every layer (a included), η = 1/λ_max(G(0)). Theorems 5.1/6.1/7.1 promise
# L(θ(k)) ≤ (1 − ηλ/2)ᵏ L(θ(0)) with λ = λ_min(K⁽ᴴ⁾). Since G(k) = Σ_h G⁽ʰ⁾(k) ⪰ G⁽ᴴ⁾(k), the whole network
# converges at least that fast — here much faster: K⁽ᴴ⁾ is only the last hidden layer's share. `T.train_gd` runs
# plain full-batch GD and records, every 10 steps, λ_min(G(k)), ‖G(k) − G(0)‖₂ and the movement
# (1/√m)‖W⁽ʰ⁾(k) − W⁽ʰ⁾(0)‖_F.

# %%
lamK = T.lambda_min(T.resnet_kernel(Xg, 3, c_res=0.5))
fig, ax = plt.subplots(figsize=(6, 4))
runs = {}
for mm in WIDTHS:
    net_t = M.ResNet(8, mm, 3, c_res=0.5, rng=6)
    eta = 1.0 / np.linalg.norm(T.gram(net_t, Xg), 2)
    out = T.train_gd(net_t, Xg, y, eta, 3000, record_every=10, stop_ratio=1e-6)
    runs[mm] = out
    loss = out["loss"]
    ax.semilogy(loss / loss[0], label=f"m = {mm}")
    print(f"m = {mm:5d}: {len(loss) - 1} steps to 1e-6 of the initial loss; "
          f"max movement {max(v.max() for v in out['movement'].values()):.3f}")
    assert loss[-1] <= 1e-6 * loss[0]
    k = np.arange(len(loss))
    assert np.all(loss <= T.rate_bound(k, eta, lamK, loss[0]) * (1 + 1e-9))
kk = np.arange(max(len(r["loss"]) for r in runs.values()))
ax.semilogy(kk, T.rate_bound(kk, eta, lamK), "k--", lw=1, label="(1 − ηλ_min(K⁽ᴴ⁾)/2)^k")
ax.set_xlabel("GD step k")
ax.set_ylabel("L(θ(k)) / L(θ(0))")
ax.set_ylim(1e-7, 2)
ax.set_title("ResNet (Eq. 2), random labels")
ax.legend(fontsize=8)
fig.savefig(OUT / "linear_rate.png", dpi=100, bbox_inches="tight")
plt.close(fig)

# %% [markdown]
# ## 7. The width sweep: why it works
#
# The proof's two pillars are visible in the same runs: the averaged weight movement and the drift of G(k) from
# G(0) both shrink as m grows (the network becomes its linearisation), so λ_min(G(k)) stays near λ_min(G(0)).
# In the linearised dynamics the movement at convergence is known in advance from θ(0) alone:
# W⁽ʰ⁾(∞) − W⁽ʰ⁾(0) = J_hᵀ G(0)⁻¹ (y − u(0)) (`T.linearised_movement`). It depends on the draw through u(0), so
# one network per width is a noisy sample of an m^(−1/2) trend (the experiment E4 averages over draws).

# %%
mv = [max(v.max() for v in runs[mm]["movement"].values()) for mm in WIDTHS]
gd = [runs[mm]["G_dist"].max() / np.linalg.norm(runs[mm]["G0"], 2) for mm in WIDTHS]
fig, ax = plt.subplots(figsize=(6, 4))
ax.loglog(WIDTHS, mv, "o-", label=f"max movement (slope {loglog_slope(WIDTHS, mv)[0]:+.2f})")
ax.loglog(WIDTHS, gd, "s-", label=f"max_k ‖G(k) − G(0)‖₂/‖G(0)‖₂ (slope {loglog_slope(WIDTHS, gd)[0]:+.2f})")
ax.loglog(WIDTHS, mv[0] * (np.array(WIDTHS) / WIDTHS[0]) ** -0.5, "k--", lw=1, label="m^(−1/2)")
ax.set_xlabel("width m")
ax.set_ylabel("over the whole run")
ax.legend(fontsize=8)
fig.savefig(OUT / "width_sweep.png", dpi=100, bbox_inches="tight")
plt.close(fig)
lin = [max(T.linearised_movement(M.ResNet(8, mm, 3, c_res=0.5, rng=6), Xg, y).values()) for mm in WIDTHS]
for mm, a, b, c in zip(WIDTHS, mv, gd, lin):
    print(f"m = {mm:5d}: movement {a:.4f} (linearised {c:.4f}), relative Gram drift {b:.2e}, "
          f"λ_min(G(k)) from {runs[mm]['lambda_min'][0]:.3f} to {runs[mm]['lambda_min'][-1]:.3f}")
assert mv[-1] < mv[0] and gd[-1] < gd[0]
assert abs(mv[-1] - lin[-1]) < 0.2 * lin[-1]      # the widest run moved as its linearisation predicts
print("Figures:", sorted(p.name for p in OUT.glob("*.png")))
