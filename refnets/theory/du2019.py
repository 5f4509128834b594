"""The quantities of Du, Lee, Li, Wang, Zhai (2019), arXiv 1811.03804, as library functions.

Limit Gram matrices (the infinite-width objects whose λ_min sets the rate):

* :func:`fc_kernel` — K⁽ᴴ⁾ of the fully connected network (Sec. 5);
* :func:`resnet_kernel` — K⁽ᴴ⁾ of the ResNet with the mean vectors b⁽ʰ⁾ (Def. 6.1);
* :func:`conv_resnet_kernel` — K⁽ᴴ⁾ of the convolutional ResNet on p×p blocks with traces over the
  patch index sets D_l (Def. 7.1);
* :func:`limit_kernel` — the one that belongs to a model of :mod:`refnets.models.du2019`.

Theorems 5.1 / 6.1 / 7.1: :func:`rate_bound` (1 − ηλ/2)ᵏ L(θ(0)); :func:`width_fc`, :func:`width_resnet`,
:func:`width_conv` and :func:`step_fc`, :func:`step_resnet`, :func:`step_conv` (their O/Ω expressions,
every hidden constant and exponent a parameter, default 1).

Finite width: :func:`gram` (G(k) = Σ_h G⁽ʰ⁾(k) from the layers' ``gram()``, re-exported from the model
module), :func:`last_layer_gram` (G⁽ᴴ⁾), :func:`movement` ((1/√m)‖W⁽ʰ⁾(k) − W⁽ʰ⁾(0)‖_F),
:func:`linearised_movement` (its value at convergence if G stayed G(0)),
:func:`one_step_residual` (the identity y − u(k+1) = (I − ηG(k))(y − u(k)) + O(η²)) and
:func:`train_gd` (full-batch GD on ½Σ(f − y)² with the trace the paper's proofs talk about).
λ_min is :func:`refnets.ntk.lambda_min`.

Readings (R) — derived from the networks, and checked by Monte Carlo at width 4096 in the tests
----------------------------------------------------------------------------------------------
* **Which A in the last layer.** The seed writes K⁽ᴴ⁾_ij = c K⁽ᴴ⁻¹⁾_ij E_{N(0, A⁽ᴴ⁻¹⁾_ij)}[σ′(u)σ′(v)]. The
  expectation is over the pre-activations of layer H, W⁽ᴴ⁾x⁽ᴴ⁻¹⁾_i, whose covariance is ⟨x⁽ᴴ⁻¹⁾_i, x⁽ᴴ⁻¹⁾_j⟩
  → K⁽ᴴ⁻¹⁾_ij: that is A⁽ᴴ⁾ in the definition A⁽ʰ⁾ = [[K⁽ʰ⁻¹⁾_ii, K⁽ʰ⁻¹⁾_ij], …]. ``reading="network"``
  (default) uses A⁽ᴴ⁾; ``reading="slides"`` uses A⁽ᴴ⁻¹⁾ literally. The Monte Carlo test
  (tests/test_du2019_theory.py) separates the two: G⁽ᴴ⁾(0) at m = 4096 matches the network reading and
  misses the slides' one (softplus FC, n = 6, relative Frobenius error 0.018 against 0.045 at H = 3,
  0.013 against 0.095 at H = 2).
* **The ResNet cross term.** ⟨x⁽ʰ⁻¹⁾_i, σ(W x⁽ʰ⁻¹⁾_j)⟩/√m → b_i · E σ(v) (i's mean with j's activation);
  the seed pairs b_i with σ(u). The two agree whenever all K_ii are equal (unit-norm inputs make them
  equal at every layer); ``cross="network"`` (default) or ``"slides"``.
* **The conv ResNet.** K⁽⁰⁾_ij = φ(x_i)ᵀφ(x_j) is a p×p block. Every layer's pre-activation covariance is
  the patch trace of the raw Gram H⁽ʰ⁾ = lim x⁽ʰ⁾ᵀx⁽ʰ⁾: K⁽ʰ⁾_{ij,lr} = tr(H⁽ʰ⁾_{ij, D_l D_r}) =
  Σ_t H⁽ʰ⁾_ij[l+t, r+t] over the patch offsets t (zero padding: terms outside 1..p vanish). We apply it at
  h = 1 as well (the seed writes K⁽¹⁾ without it; with q = 1 the two coincide). The mean vectors
  b⁽ʰ⁾_i ∈ ℝᵖ are per position. The last layer is K⁽ᴴ⁾_ij = (c_res/H)² Σ_l K⁽ᴴ⁻¹⁾_{ij,ll} E[σ′(u_l)σ′(v_l)]
  = (c_res/H)² tr(M⁽ᴴ⁾_ij): E[a_{rl}a_{rl'}] = δ_{ll'} keeps only the diagonal. The factor (c_res/H)²
  (written in Def. 6.1, not in the seed's Def. 7.1) makes K⁽ᴴ⁾ the limit of G⁽ᴴ⁾(0), so that
  λ_min(G(0)) ≥ λ_min(G⁽ᴴ⁾(0)) ≈ λ_min(K⁽ᴴ⁾) and the rate line is a bound.
* **H = 1** has no residual layer: the last (and only) layer is √(c_σ/m)σ(W⁽¹⁾·), factor c_σ.

Cost: each layer needs E[σ(u)σ(v)] on every pair, by the polar quadrature of :mod:`.gaussian`
(~1500 nodes per pair): FC/ResNet n(n+1)/2 pairs, conv ResNet np(np+1)/2 pairs.
"""
from __future__ import annotations

import numpy as np

from ..ntk import lambda_min  # noqa: F401  (re-exported: Du et al.'s λ_min)
from .gaussian import N_R, N_THETA, c_sigma as _c_sigma, expect1d, expect2d

READINGS = ("network", "slides")


# ----------------------------------------------------------------------------- helpers
def _act(activation, c_sigma):
    from ..layers.activations import get_activation
    act = get_activation(activation)
    return act, (_c_sigma(act) if c_sigma is None else float(c_sigma))


def _pairs(g, h, S, n_theta, n_r, mask=None):
    """E_{(u,v)~N(0, [[S_ii, S_ij], [S_ji, S_jj]])}[g(u)h(v)] for all i ≤ j (or the pairs of ``mask``), symmetrised."""
    N = S.shape[0]
    d = np.diag(S)
    if mask is None:
        iu, ju = np.triu_indices(N)
    else:
        iu, ju = np.nonzero(np.triu(mask))
    out = np.zeros((N, N))
    out[iu, ju] = expect2d(g, h, d[iu], S[iu, ju], d[ju], n_theta, n_r)
    out[ju, iu] = out[iu, ju]
    return out


def _check_reading(reading, cross="network"):
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
    if cross not in READINGS:
        raise ValueError(f"cross must be one of {READINGS}, got {cross!r}")


def _unit_check(where, X):
    X = np.asarray(X, dtype=float)
    if X.ndim < 2:
        raise ValueError(f"{where}: X must be (n, d) (or (n, d, p) for the conv ResNet), got shape {X.shape}")
    return X


# ----------------------------------------------------------------------------- FC (Sec. 5)
def fc_kernel(X, H, activation="softplus", c_sigma=None, reading="network", return_all=False,
              n_theta=N_THETA, n_r=N_R):
    """K⁽ᴴ⁾ of the fully connected network (Du et al. 2019, Sec. 5, before Thm 5.1).

    K⁽⁰⁾ = XXᵀ; K⁽ʰ⁾_ij = c_σ E_{N(0, A⁽ʰ⁾_ij)}[σ(u)σ(v)] (h = 1..H−1);
    K⁽ᴴ⁾_ij = c_σ K⁽ᴴ⁻¹⁾_ij E_{N(0, A⁽ᴴ⁾_ij)}[σ′(u)σ′(v)] (``reading="network"``; "slides": A⁽ᴴ⁻¹⁾), with
    A⁽ʰ⁾_ij = [[K⁽ʰ⁻¹⁾_ii, K⁽ʰ⁻¹⁾_ij], [K⁽ʰ⁻¹⁾_ji, K⁽ʰ⁻¹⁾_jj]].

    Parameters
    ----------
    X : (n, d) inputs (the theorem assumes ‖x_i‖ = 1). H : depth ≥ 1. activation, c_sigma : σ and c_σ.
    return_all : also return [K⁽⁰⁾, …, K⁽ᴴ⁻¹⁾].

    Returns K⁽ᴴ⁾ (n, n) (and the list).
    """
    _check_reading(reading)
    act, cs = _act(activation, c_sigma)
    X = _unit_check("fc_kernel", X)
    Ks = [X @ X.T]
    for _ in range(1, H):
        Ks.append(cs * _pairs(act.fn, act.fn, Ks[-1], n_theta, n_r))
    A = Ks[-1] if (reading == "network" or H == 1) else Ks[-2]
    KH = cs * Ks[-1] * _pairs(act.deriv, act.deriv, A, n_theta, n_r)
    return (KH, Ks) if return_all else KH


# ----------------------------------------------------------------------------- ResNet (Def. 6.1)
def resnet_kernel(X, H, activation="softplus", c_res=0.1, c_sigma=None, reading="network", cross="network",
                  return_all=False, n_theta=N_THETA, n_r=N_R):
    """K⁽ᴴ⁾ of the ResNet (Du et al. 2019, Def. 6.1), with the mean vectors b⁽ʰ⁾.

    K⁽⁰⁾ = XXᵀ, K⁽¹⁾_ij = c_σ E_{N(0, A⁽¹⁾_ij)}[σ(u)σ(v)], b⁽¹⁾_i = √c_σ E_{u~N(0, K⁽⁰⁾_ii)}[σ(u)];
    for h = 2..H−1:
    K⁽ʰ⁾_ij = K⁽ʰ⁻¹⁾_ij + E_{N(0, A⁽ʰ⁾_ij)}[(c_res/H)(b⁽ʰ⁻¹⁾_i σ(v) + b⁽ʰ⁻¹⁾_j σ(u)) + (c_res/H)² σ(u)σ(v)],
    b⁽ʰ⁾_i = b⁽ʰ⁻¹⁾_i + (c_res/H) E_{u~N(0, K⁽ʰ⁻¹⁾_ii)}[σ(u)];
    K⁽ᴴ⁾_ij = (c_res/H)² K⁽ᴴ⁻¹⁾_ij E_{N(0, A⁽ᴴ⁾_ij)}[σ′(u)σ′(v)] (H ≥ 2; H = 1: the FC formula).

    b⁽ʰ⁾_i is the limit of (1/√m) Σ_r x⁽ʰ⁾_{i,r}: the skip keeps the mean of σ in the hidden state, so
    the cross term ⟨x⁽ʰ⁻¹⁾_i, σ(z_j)⟩/√m does not vanish. ``cross`` and ``reading``: see the module docstring.

    Parameters: as :func:`fc_kernel`, plus c_res. Returns K⁽ᴴ⁾ (n, n) (with ``return_all``, also
    the lists [K⁽⁰⁾..K⁽ᴴ⁻¹⁾] and [b⁽¹⁾..b⁽ᴴ⁻¹⁾]).
    """
    _check_reading(reading, cross)
    act, cs = _act(activation, c_sigma)
    X = _unit_check("resnet_kernel", X)
    Ks = [X @ X.T]
    if H == 1:
        KH = cs * Ks[0] * _pairs(act.deriv, act.deriv, Ks[0], n_theta, n_r)
        return (KH, Ks, []) if return_all else KH
    Ks.append(cs * _pairs(act.fn, act.fn, Ks[0], n_theta, n_r))
    bs = [np.sqrt(cs) * expect1d(act.fn, np.diag(Ks[0]))]
    t = c_res / H
    for _ in range(2, H):
        K, b = Ks[-1], bs[-1]
        Es = expect1d(act.fn, np.diag(K))
        cr = np.outer(b, Es) + np.outer(Es, b) if cross == "network" else (b * Es)[:, None] + (b * Es)[None, :]
        Ks.append(K + t * cr + t * t * _pairs(act.fn, act.fn, K, n_theta, n_r))
        bs.append(b + t * Es)
    A = Ks[-1] if reading == "network" else Ks[-2]
    KH = t * t * Ks[-1] * _pairs(act.deriv, act.deriv, A, n_theta, n_r)
    return (KH, Ks, bs) if return_all else KH


# ----------------------------------------------------------------------------- conv ResNet (Def. 7.1)
def patch_trace(R, q):
    """K_{ij,lr} = tr(R_{ij, D_l D_r}) = Σ_t R_ij[l+t, r+t] over the q patch offsets t (Du et al. 2019, Def. 7.1).

    The patch index set of position l is D_l = {l − (q−1)/2, …, l + (q−1)/2} ∩ [p] (zero padding outside), so this
    is ⟨φ(x_i)[:, l], φ(x_j)[:, r]⟩ when R_ij = x_iᵀx_j.

    Parameters: R (n, p, n, p) or (n·p, n·p) with index (i, l) flattened i-major; q odd patch size.
    Returns the same shape.
    """
    R = np.asarray(R, dtype=float)
    flat = R.ndim == 2
    if flat:
        raise ValueError("patch_trace: pass R as (n, p, n, p)")
    n, p = R.shape[:2]
    left = (q - 1) // 2
    out = np.zeros_like(R)
    for t in range(-left, q - left):
        lo, hi = max(0, -t), min(p, p - t)   # positions l with l + t inside [0, p)
        if lo < hi:
            out[:, lo:hi, :, lo:hi] += R[:, lo + t:hi + t, :, lo + t:hi + t]
    return out


def conv_resnet_kernel(X, H, activation="softplus", c_res=0.1, q=3, c_sigma=None, reading="network",
                       cross="network", return_all=False, n_theta=N_THETA, n_r=N_R):
    """K⁽ᴴ⁾ of the convolutional ResNet (Du et al. 2019, Def. 7.1): p×p blocks and patch traces.

    With (i, l) a sample and a position and D_l the patch index set of position l:

    K⁽⁰⁾_ij = φ(x_i)ᵀφ(x_j) ∈ ℝ^{p×p};
    H⁽¹⁾_ij = c_σ E[σ(u)σ(v)ᵀ], (u, v) ~ N(0, [[K⁽⁰⁾_ii, K⁽⁰⁾_ij], [K⁽⁰⁾_ji, K⁽⁰⁾_jj]]) (u, v ∈ ℝᵖ; each entry
    is a 2-D expectation), b⁽¹⁾_i = √c_σ E_{u~N(0, K⁽⁰⁾_ii)}[σ(u)] ∈ ℝᵖ;
    K⁽ʰ⁻¹⁾_{ij,lr} = tr(H⁽ʰ⁻¹⁾_{ij, D_l D_r}) (:func:`patch_trace`), then for h = 2..H−1
    H⁽ʰ⁾_ij = H⁽ʰ⁻¹⁾_ij + E[(c_res/H)(b⁽ʰ⁻¹⁾_i σ(v)ᵀ + σ(u) b⁽ʰ⁻¹⁾_jᵀ) + (c_res/H)² σ(u)σ(v)ᵀ] over N(0, A⁽ʰ⁾_ij) of
    the K⁽ʰ⁻¹⁾ blocks, b⁽ʰ⁾_i = b⁽ʰ⁻¹⁾_i + (c_res/H) E σ(u);
    M⁽ᴴ⁾_{ij,lr} = K⁽ᴴ⁻¹⁾_{ij,lr} E[σ′(u_l)σ′(v_r)], K⁽ᴴ⁾_ij = (c_res/H)² tr(M⁽ᴴ⁾_ij).

    Parameters
    ----------
    X : (n, d, p) inputs (‖x_i‖_F = 1 in the theorem). H, activation, c_res, c_sigma, reading, cross : as
    :func:`resnet_kernel`. q : patch size (odd). return_all : also return the list of the p×p-block matrices
    K⁽⁰⁾..K⁽ᴴ⁻¹⁾ as (n, p, n, p) arrays.

    Returns K⁽ᴴ⁾ (n, n). With p = 1 (or q = 1 and one position) it equals :func:`resnet_kernel`.
    """
    from ..layers.conv import patches1d

    _check_reading(reading, cross)
    act, cs = _act(activation, c_sigma)
    X = np.asarray(X, dtype=float)
    if X.ndim != 3:
        raise ValueError(f"conv_resnet_kernel: X must be (n, d, p), got shape {X.shape}")
    if q % 2 == 0:
        raise ValueError(f"conv_resnet_kernel: q must be odd, got {q}")
    n, _, p = X.shape
    N = n * p
    P = patches1d(X, q)                                          # (n, q·d, p)
    Ks = [np.einsum("ial,jar->iljr", P, P)]                      # K⁽⁰⁾ as (n, p, n, p)
    same_l = np.kron(np.ones((n, n)), np.eye(p)).astype(bool)    # pairs (i,l), (j,l)

    def last(Kb, A, factor):
        S, SA = Kb.reshape(N, N), A.reshape(N, N)
        E = _pairs(act.deriv, act.deriv, SA, n_theta, n_r, mask=same_l)
        return factor * np.einsum("iljl->ij", (S * E).reshape(n, p, n, p))

    if H == 1:
        KH = last(Ks[0], Ks[0], cs)
        return (KH, Ks) if return_all else KH
    S0 = Ks[0].reshape(N, N)
    R = cs * _pairs(act.fn, act.fn, S0, n_theta, n_r)             # H⁽¹⁾, raw Gram of x⁽¹⁾
    b = np.sqrt(cs) * expect1d(act.fn, np.diag(S0))
    t = c_res / H
    for _ in range(2, H):
        Ks.append(patch_trace(R.reshape(n, p, n, p), q))
        S = Ks[-1].reshape(N, N)
        Es = expect1d(act.fn, np.diag(S))
        cr = np.outer(b, Es) + np.outer(Es, b) if cross == "network" else (b * Es)[:, None] + (b * Es)[None, :]
        R = R + t * cr + t * t * _pairs(act.fn, act.fn, S, n_theta, n_r)
        b = b + t * Es
    Ks.append(patch_trace(R.reshape(n, p, n, p), q))
    A = Ks[-1] if reading == "network" else Ks[-2]
    KH = last(Ks[-1], A, t * t)
    return (KH, Ks) if return_all else KH


def limit_kernel(model, X, reading="network", **kw):
    """K⁽ᴴ⁾ for a model of :mod:`refnets.models.du2019` (its σ, c_σ, c_res, q, H) on inputs X."""
    common = dict(activation=model.activation, c_sigma=model.c_sigma, reading=reading, **kw)
    if model.kind == "fc":
        return fc_kernel(X, model.H, **common)
    if model.kind == "resnet":
        return resnet_kernel(X, model.H, c_res=model.c_res, **common)
    if model.kind == "conv":
        return conv_resnet_kernel(X, model.H, c_res=model.c_res, q=model.q, **common)
    raise TypeError(f"limit_kernel: not a Du et al. model: {model!r}")


# ----------------------------------------------------------------------------- theorems
def rate_bound(k, eta, lam, loss0=1.0):
    """(1 − ηλ/2)ᵏ L(θ(0)), the conclusion of Theorems 5.1, 6.1 and 7.1; k scalar or array."""
    return loss0 * (1.0 - 0.5 * eta * lam) ** np.asarray(k, dtype=float)


def width_fc(n, lam, H, delta=0.1, c=1.0, c_exp=1.0):
    """Thm 5.1: m = Ω(2^{O(H)} max{n⁴/λ⁴, n/δ, n² log(Hn/δ)/λ²}) as c · 2^{c_exp·H} · max{…}."""
    return c * 2.0 ** (c_exp * H) * max(n ** 4 / lam ** 4, n / delta, n ** 2 * np.log(H * n / delta) / lam ** 2)


def step_fc(n, lam, H, c=1.0, c_exp=1.0):
    """Thm 5.1: η = O(λ / (n² 2^{O(H)})) as c · λ / (n² 2^{c_exp·H})."""
    return c * lam / (n ** 2 * 2.0 ** (c_exp * H))


def width_resnet(n, lam, H, delta=0.1, c=1.0):
    """Thm 6.1: m = Ω(max{n⁴/(λ⁴H⁶), n²/(λ²H²), n/δ, n² log(Hn/δ)/λ²}) as c · max{…}."""
    return c * max(n ** 4 / (lam ** 4 * H ** 6), n ** 2 / (lam ** 2 * H ** 2), n / delta,
                   n ** 2 * np.log(H * n / delta) / lam ** 2)


def step_resnet(n, lam, H, c=1.0):
    """Thm 6.1: η = O(λH²/n²) as c · λH²/n²."""
    return c * lam * H ** 2 / n ** 2


def width_conv(n, lam, H, p, delta=0.1, c=1.0, p_exp=1.0):
    """Thm 7.1: the ResNet width times poly(p), as :func:`width_resnet` · p^{p_exp}."""
    return width_resnet(n, lam, H, delta, c) * p ** p_exp


def step_conv(n, lam, H, p, c=1.0, p_exp=1.0):
    """Thm 7.1: η = O(λH²/(n² poly(p))) as c · λH²/(n² p^{p_exp})."""
    return c * lam * H ** 2 / (n ** 2 * p ** p_exp)


# ----------------------------------------------------------------------------- finite width
def gram(model, X, per_layer=False):
    """G(θ) = Σ_{h=1}^{H+1} G⁽ʰ⁾ on X from the layers' ``gram()`` (see :func:`refnets.models.du2019.gram`)."""
    from ..models.du2019 import gram as _gram
    return _gram(model, X, per_layer)


def last_layer_gram(model, X):
    """G⁽ᴴ⁾(θ), the share of the last hidden layer W⁽ᴴ⁾, whose limit is K⁽ᴴ⁾ (n, n).

    One forward, then the backward (dout = 1) only down to the block holding W⁽ᴴ⁾ and that block's
    ``gram()``: the lower layers' weight gradients (m×m each) are never computed.
    """
    out = model.forward(X)
    dout = np.ones_like(out)
    target = model.weight_names[f"W{model.H}"].split(".")[0]
    for name in reversed(list(model.layers)):
        layer = model.layers[name]
        dout = layer.backward(dout)
        if name == target:
            shares = layer.gram()
            return shares[model.weight_names[f"W{model.H}"][len(name) + 1:]]
    raise RuntimeError(f"last_layer_gram: no layer {target!r} in {model!r}")


def movement(W, W0, m):
    """(1/√m)‖W − W⁽⁰⁾‖_F, the averaged movement the proofs keep small (Sec. 4)."""
    return float(np.linalg.norm(np.asarray(W) - np.asarray(W0)) / np.sqrt(m))


def linearised_movement(model, X, y):
    """The movement {name: (1/√m)‖W⁽ʰ⁾(∞) − W⁽ʰ⁾(0)‖_F} that GD run to convergence would make if G stayed G(0).

    In the linearised dynamics u(k+1) − y = (I − ηG)(u(k) − y) (Du et al. 2019, Sec. 4), the weights move by
    W⁽ʰ⁾(k) − W⁽ʰ⁾(0) = Σ_{j<k} η J_hᵀ(y − u(j)) → J_hᵀ G⁻¹ (y − u(0)), J_h = ∂u/∂W⁽ʰ⁾, whatever the step η, so
    ‖W⁽ʰ⁾(∞) − W⁽ʰ⁾(0)‖_F² = zᵀ G⁽ʰ⁾ z with z = G(0)⁻¹ (y − u(0)). It depends on the network's draw through
    u(0) and G(0): this is what makes one run's movement a noisy sample (E4); its average over draws falls like
    m^(−1/2). The model's parameters are not changed. Shapes: X (n, …), y (n,). Returns {name: float}.
    """
    y = np.asarray(y, dtype=float).reshape(-1)
    shares = gram(model, X, per_layer=True)
    G = sum(shares.values())
    r = y - model.forward(X).reshape(-1)
    z = np.linalg.solve(G, r)
    return {k: float(np.sqrt(max(z @ Gh @ z, 0.0) / model.m)) for k, Gh in shares.items()}


def one_step_residual(model, X, y, eta):
    """‖(y − u(k+1)) − (I − ηG(k))(y − u(k))‖₂ after one GD step of size η from the current θ (= O(η²)).

    The model's parameters are restored afterwards. Shapes: X (n, …), y (n,). Returns a float.
    """
    from ..losses import half_squared_sum
    y = np.asarray(y, dtype=float).reshape(-1)
    params = model.parameters()
    saved = {k: v.copy() for k, v in params.items()}
    G = gram(model, X)
    u0 = model.forward(X).reshape(-1)
    _, dpred = half_squared_sum(u0, y)
    model.backward(dpred.reshape(-1, 1))
    grads = {k: g.copy() for k, g in model.gradients().items()}
    try:
        for k, p in params.items():
            p -= eta * grads[k]
        u1 = model.forward(X).reshape(-1)
    finally:
        for k, p in params.items():
            p[...] = saved[k]
    return float(np.linalg.norm((y - u1) - (np.eye(len(y)) - eta * G) @ (y - u0)))


def train_gd(model, X, y, eta, steps, record_every=10, stop_ratio=None, keep_G=False, G_norm=True):
    """Full-batch GD on L(θ) = ½ Σ (f(θ, x_i) − y_i)², every layer (a included), with Du et al.'s trace.

    A lean loop (same losses as :func:`refnets.train.train` with :class:`refnets.optim.GD`, without its
    per-step parameter copies); every ``record_every`` steps (and at the last step) it records, besides the
    loss at every step:

    * "movement": {name: (1/√m)‖W⁽ʰ⁾(k) − W⁽ʰ⁾(0)‖_F} for W1..WH and a;
    * "lambda_min": λ_min(G(k)); "G_dist": ‖G(k) − G(0)‖₂ (``G_norm``); "G" the matrices (``keep_G``).

    Parameters
    ----------
    model : a :class:`refnets.models.du2019.DuNet`. X : (n, …). y : (n,). eta : step size. steps : max steps.
    stop_ratio : stop once L(θ(k)) ≤ stop_ratio · L(θ(0)).

    Returns a dict of plain arrays: "loss" (k = 0..K), "rec_step", "lambda_min", "G_dist", "movement"
    ({name: array}), "G0", optionally "G" (list), and "diverged" (bool).
    """
    from .._validate import NonFiniteError
    from ..losses import half_squared_sum

    y2 = np.asarray(y, dtype=float).reshape(-1, 1)
    W0 = {k: v.copy() for k, v in model.weights().items()}
    G0 = gram(model, X)
    m = model.m
    rec = {"rec_step": [], "lambda_min": [], "G_dist": [], "movement": {k: [] for k in W0}, "G": []}

    def record(k, mdl):
        G = gram(mdl, X)
        rec["rec_step"].append(k)
        rec["lambda_min"].append(lambda_min(G))
        rec["G_dist"].append(float(np.linalg.norm(G - G0, 2)) if G_norm else np.nan)
        for name, W in mdl.weights().items():
            rec["movement"][name].append(movement(W, W0[name], m))
        if keep_G:
            rec["G"].append(G)

    # A lean full-batch GD loop rather than refnets.train.train: that loop copies every parameter before each
    # step (to restore them on divergence) and scans every gradient and parameter for non-finite entries: at
    # m = 4096 (ResNet, H = 4, one core) that loop took 1.16 s a step, this one 0.68 s (profiled; the rest is
    # the dense backward). Divergence shows in the next loss, which is checked at every step; the parameters
    # are then left where they are (the trace stops there).
    # tests/test_du2019_theory.py checks this loop against refnets.train.train (same losses to 1e-12).
    params = model.parameters()
    losses, diverged, stop = [], False, None
    for k in range(steps + 1):
        try:        # the layers refuse non-finite inputs: after a divergent step that is the signal
            with np.errstate(over="ignore", invalid="ignore"):
                value, dpred = half_squared_sum(model.forward(X), y2)
        except NonFiniteError:
            value = np.inf
        if not np.isfinite(value):
            diverged = True
            break
        losses.append(value)
        if stop is None:
            stop = -np.inf if stop_ratio is None else stop_ratio * value
        if k % record_every == 0 or k == steps:
            record(k, model)        # gram() reruns the forward at θ(k): the caches below are unchanged
        if k == steps or value <= stop:
            break
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                model.backward(dpred)
        except NonFiniteError:
            diverged = True
            break
        grads = model.gradients()
        with np.errstate(over="ignore", invalid="ignore"):
            for name, p in params.items():
                g = grads[name]
                g *= eta                # the layer's own fresh array (backward overwrites, never accumulates)
                p -= g
    last = len(losses) - 1
    if not diverged and rec["rec_step"] and rec["rec_step"][-1] != last:
        record(last, model)
    out = {"loss": np.asarray(losses), "rec_step": np.asarray(rec["rec_step"]),
           "lambda_min": np.asarray(rec["lambda_min"]), "G_dist": np.asarray(rec["G_dist"]),
           "movement": {k: np.asarray(v) for k, v in rec["movement"].items()}, "G0": G0, "diverged": diverged}
    if keep_G:
        out["G"] = rec["G"]
    return out
