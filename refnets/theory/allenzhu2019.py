"""The quantities of Allen-Zhu, Li & Song (2019) that refnets measures, and the shapes of its bounds.

Measured along a trajectory W(t) (Sec. 5–8 of arXiv 1811.03962; names as in the paper):

* :func:`radius` — ω(t) = max_ℓ ‖W_ℓ(t) − W_ℓ⁽⁰⁾‖₂ (spectral norm), the radius of the ball around
  the random initialisation in which the landscape is "almost convex and semi-smooth";
* :func:`gradient_ratio` — max_ℓ ‖∇_{W_ℓ}F‖_F² / F and Σ_ℓ ‖∇_{W_ℓ}F‖_F² / F, bounded below by
  Ω(δm/(dn²)) (:func:`gradient_scale`) and above by O(Lnm/d) (:func:`gradient_upper_scale`)
  ("no bad critical points", Theorem 3);
* :func:`semi_smooth_remainder` — F(W + W′) − F(W) − ⟨∇F(W), W′⟩ (Theorem 4), beside its bound shape
  :func:`semi_smooth_bound`;
* :func:`flip_fraction` — the fraction of ReLU signs that differ from those at W⁰;
* :func:`function_gap` — ‖f_t − f_lin,t‖ between the network and its linearisation.

Theorem shapes (R): the abstract (the only seed) states "polynomial" without exponents. The exponents
used as defaults below are those of the arXiv version's Theorem 1 footnote as far as refnets can
reconstruct them (m ≥ Ω̃(n²⁴L¹²dδ⁻⁸), η = Θ(dδ/(n⁴L²m)), T = Θ(n⁶L²δ⁻² log ε⁻¹)); every exponent
and every constant is a parameter. Constants are not given in closed form: the functions return the
shape with constant ``c`` (default 1).
"""
from __future__ import annotations

import numpy as np

from ..layers.base import as_rng


# ----------------------------------------------------------------------------- norms
def spectral_norm(M, tol=1e-6, max_iter=500, v0=None, return_vector=False):
    """‖M‖₂ (largest singular value) by power iteration on MᵀM, warm-startable.

    Power iteration costs two matrix-vector products per step instead of an O(m³) SVD, and a
    warm start (the previous right singular vector along a trajectory) converges in a few steps.
    The estimate approaches ‖M‖₂ from below; it stops when the relative change is below ``tol``.

    Parameters
    ----------
    M : (p, q) array. v0 : optional (q,) start vector. return_vector : also return v.

    Returns
    -------
    sigma (and the unit right singular vector estimate v).
    """
    M = np.asarray(M)
    if M.ndim != 2:
        M = M.reshape(M.shape[0], -1)
    q = M.shape[1]
    if not np.any(M):
        v = np.zeros(q)
        return (0.0, v) if return_vector else 0.0
    if min(M.shape) <= 32:
        s = float(np.linalg.norm(M, 2))
        if return_vector:
            v = np.linalg.svd(M)[2][0]
            return s, v
        return s
    v = np.asarray(v0, dtype=M.dtype).copy() if v0 is not None and np.any(v0) else \
        np.random.default_rng(0).standard_normal(q).astype(M.dtype)
    v /= np.linalg.norm(v)
    sigma = 0.0
    for _ in range(max_iter):
        u = M @ v
        s_new = float(np.linalg.norm(u))
        w = M.T @ u
        nw = np.linalg.norm(w)
        if nw == 0:
            break
        v = w / nw
        if abs(s_new - sigma) <= tol * s_new:
            sigma = s_new
            break
        sigma = s_new
    # ‖M v‖ for the final v is the best lower bound we have
    sigma = max(sigma, float(np.linalg.norm(M @ v)))
    return (sigma, v) if return_vector else sigma


def layer_distances(params, params0, names, vectors=None, tol=1e-6):
    """{name: ‖W_ℓ − W_ℓ⁽⁰⁾‖₂} for the named parameters; ``vectors`` (dict) warm-starts and is updated."""
    out = {}
    for k in names:
        v0 = None if vectors is None else vectors.get(k)
        s, v = spectral_norm(params[k] - params0[k], tol=tol, v0=v0, return_vector=True)
        if vectors is not None:
            vectors[k] = v
        out[k] = s
    return out


def radius(params, params0, names, relative=False, norms0=None, vectors=None):
    """ω = max_ℓ ‖W_ℓ − W_ℓ⁽⁰⁾‖₂ (Allen-Zhu et al. 2019, Sec. 5: the ball max_ℓ ‖W_ℓ − W_ℓ⁽⁰⁾‖₂ ≤ ω).

    ``relative=True`` returns max_ℓ ‖W_ℓ − W_ℓ⁽⁰⁾‖₂ / ‖W_ℓ⁽⁰⁾‖₂ (``norms0`` caches the denominators).
    """
    dist = layer_distances(params, params0, names, vectors)
    if not relative:
        return max(dist.values())
    if norms0 is None:
        norms0 = {k: spectral_norm(params0[k]) for k in names}
    return max(dist[k] / norms0[k] for k in names)


# ----------------------------------------------------------------------------- gradients
def gradient_ratio(grads, F, names):
    """(max_ℓ ‖∇_{W_ℓ}F‖_F² / F,  Σ_ℓ ‖∇_{W_ℓ}F‖_F² / F) over the trained layers ``names``.

    Theorem 3 (gradient bounds, shape as in PAPERS.md §2): inside the ball of radius ω,
    Ω(F δm/(dn²)) ≤ max_ℓ ‖∇_{W_ℓ}F‖_F² and ‖∇F‖_F² ≤ O(F Lnm/d). F ≤ 0 gives (nan, nan).
    """
    if not F > 0:
        return float("nan"), float("nan")
    sq = [float(np.sum(np.asarray(grads[k], dtype=np.float64) ** 2)) for k in names]
    return max(sq) / F, sum(sq) / F


def gradient_scale(delta, m, d, n, c=1.0):
    """c · δ m / (d n²): the lower-bound scale of max_ℓ ‖∇_{W_ℓ}F‖_F² / F (Theorem 3)."""
    return c * delta * m / (d * n * n)


def gradient_upper_scale(L, n, m, d, c=1.0):
    """c · L n m / d: the upper-bound scale of ‖∇F‖_F² / F (Theorem 3)."""
    return c * L * n * m / d


# ----------------------------------------------------------------------------- semi-smoothness
def random_direction(params, names, norm, rng=None, tol=1e-6):
    """W′ with Gaussian entries, each W′_ℓ rescaled to ‖W′_ℓ‖₂ = ``norm`` (so max_ℓ ‖W′_ℓ‖₂ = norm), to the
    relative accuracy ``tol`` of the power iteration (a Gaussian matrix's top singular values crowd together,
    so a tight tolerance costs many iterations at large m)."""
    rng = as_rng(rng)
    out = {}
    for k in names:
        G = rng.standard_normal(params[k].shape).astype(params[k].dtype)
        out[k] = G * (norm / spectral_norm(G, tol=tol, max_iter=2000))
    return out


def loss_and_gradient(model, loss, x, y, names):
    """F(W) and {name: ∇_{W_ℓ}F} at the model's current parameters (one forward and backward)."""
    out = model.forward(x)
    F = loss.forward(out, y)
    model.backward(loss.backward())
    g = model.gradients()
    return F, {k: g[k].copy() for k in names}


def semi_smooth_remainder(model, loss, x, y, directions, names=None):
    """R(W′) = F(W + W′) − F(W) − ⟨∇F(W), W′⟩ for each direction in ``directions`` (Theorem 4).

    The model's parameters are restored afterwards. ``directions`` is a list of dicts
    {name: array}; ``names`` defaults to the keys of the first one.

    Returns (F(W), array of remainders, array of ⟨∇F, W′⟩).
    """
    names = list(directions[0]) if names is None else list(names)
    params = model.parameters()
    F, g = loss_and_gradient(model, loss, x, y, names)
    saved = {k: params[k].copy() for k in names}
    rem, lin = [], []
    try:
        for D in directions:
            for k in names:
                params[k][...] = saved[k] + D[k]
            F2 = loss.forward(model.forward(x), y)
            inner = float(sum(np.sum(g[k] * D[k]) for k in names))
            rem.append(F2 - F - inner)
            lin.append(inner)
    finally:
        for k in names:
            params[k][...] = saved[k]
    return F, np.asarray(rem), np.asarray(lin)


def semi_smooth_bound(F, r, n, m, d, L, c1=1.0, c2=1.0, L_exp=2.0, r_exp=4.0 / 3.0):
    """The shape of Theorem 4's upper bound on the remainder at ‖W′‖₂ = r (PAPERS.md §2, (R) L_exp):

        c1 · √F · L^{L_exp} · √(n m log m)/√d · r^{4/3}  +  c2 · L^{L_exp} · n m/d · r².
    """
    r = np.asarray(r, dtype=float)
    pl = float(L) ** L_exp
    return (c1 * np.sqrt(max(F, 0.0)) * pl * np.sqrt(n * m * np.log(m)) / np.sqrt(d) * r ** r_exp
            + c2 * pl * n * m / d * r ** 2)


# ----------------------------------------------------------------------------- patterns, coupling
def flip_fraction(patterns0, patterns):
    """Fraction of ReLU signs that differ: Σ_ℓ #{1{z_ℓ > 0} ≠ 1{z_ℓ⁽⁰⁾ > 0}} / Σ_ℓ #entries.

    ``patterns0`` and ``patterns`` are lists of boolean arrays of equal shapes (one per layer,
    from :meth:`refnets.models.allenzhu2019.AllenZhuNet.activation_pattern`).
    """
    if len(patterns0) != len(patterns):
        raise ValueError(f"flip_fraction: {len(patterns0)} layers against {len(patterns)}")
    flips = total = 0
    for a, b in zip(patterns0, patterns):
        if a.shape != b.shape:
            raise ValueError(f"flip_fraction: pattern shapes differ, {a.shape} and {b.shape}")
        flips += int(np.count_nonzero(a != b))
        total += a.size
    return flips / total if total else 0.0


def flip_bound(omega, c=1.0, exponent=2.0 / 3.0):
    """c · ω^{2/3}: the shape of the bound on the fraction of sign changes inside the ball of radius ω
    (Allen-Zhu et al. 2019, Lemma 8.2 (R): at most O(m ω^{2/3}) changed signs per layer)."""
    return c * np.asarray(omega, dtype=float) ** exponent


def function_gap(f, f_lin):
    """‖f − f_lin‖_F over all samples and outputs (the NTK coupling, Sec. 1 and 8)."""
    return float(np.linalg.norm(np.asarray(f) - np.asarray(f_lin)))


def coupling_bound(omega, m, d, L, c=1.0, L_exp=1.5):
    """c · L^{1.5} · ω^{1/3} · √(m log m)/√d · ω: the shape of the bound on ‖f(W⁰+W′) − f_lin(W′)‖ per
    sample for ‖W′‖₂ ≤ ω (Sec. 8, (R) L_exp). With ω ∝ m^{−1/2} it scales as m^{−1/6}·√log m."""
    omega = np.asarray(omega, dtype=float)
    return c * float(L) ** L_exp * omega ** (4.0 / 3.0) * np.sqrt(m * np.log(m)) / np.sqrt(d)


# ----------------------------------------------------------------------------- theorem shapes
def step_size_theorem(d, delta, n, L, m, c=1.0, n_exp=4.0, L_exp=2.0):
    """η = c · dδ / (n^{n_exp} L^{L_exp} m) (Theorem 1 shape; exponents (R))."""
    return c * d * delta / (n ** n_exp * L ** L_exp * m)


def iterations_theorem(n, L, delta, eps, c=1.0, n_exp=6.0, L_exp=2.0):
    """T = c · n^{n_exp} L^{L_exp} / δ² · log(1/ε) (Theorem 1 shape; exponents (R))."""
    return c * n ** n_exp * L ** L_exp / delta ** 2 * np.log(1.0 / eps)


def width_theorem(n, L, delta, d, c=1.0, n_exp=24.0, L_exp=12.0, delta_exp=8.0):
    """m ≥ c · n^{n_exp} L^{L_exp} d δ^{−delta_exp} (Theorem 1 shape; exponents (R), log factors dropped)."""
    return c * n ** n_exp * L ** L_exp * d / delta ** delta_exp


# ----------------------------------------------------------------------------- NTK and step size
def ntk_lambda_max(model, x, names, tol=1e-6, max_iter=200, rng=None):
    """λ_max(J Jᵀ) of the trained parameters ``names`` on x, matrix-free: v ↦ J(Jᵀv) by one backward
    (Jᵀv) and one jvp (J·) through the model's caches. Works for any output dimension and variant.

    GD on ½‖f − y‖² is stable in the linear regime for η < 2/λ_max; refnets' default step size is
    η = c/λ_max(K₀) (c ≤ 1), an explicit stand-in for the theorem's Θ(dδ/(poly(n,L) m)) whose
    constant is not given.
    """
    out = model.forward(x)
    rng = as_rng(rng)
    v = rng.standard_normal(out.shape).astype(out.dtype)
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(max_iter):
        model.backward(v)
        g = model.gradients()
        w = model.jvp(None, {k: g[k] for k in names})
        lam_new = float(np.sum(w * v))
        nw = np.linalg.norm(w)
        if nw == 0:
            return 0.0
        v = w / nw
        if abs(lam_new - lam) <= tol * abs(lam_new):
            return lam_new
        lam = lam_new
    return lam


def ntk_matrix(model, x, names=None):
    """The empirical NTK K = J Jᵀ (N, N) of a scalar-output model (d_out = 1) restricted to ``names``,
    summed from the layers' exact Gram shares (one forward, one backward)."""
    out = model.forward(x)
    if out.ndim != 2 or out.shape[1] != 1:
        raise ValueError(f"ntk_matrix: needs one output per sample, got shape {out.shape}")
    model.backward(np.ones_like(out))
    shares = model.gram()
    names = list(shares) if names is None else names
    return sum(shares[k] for k in names)


def gradient_ratio_extremes(model, x, names=None):
    """(2λ_min(K), 2λ_max(K)) with K = Σ_ℓ K_ℓ the NTK of the layers ``names`` (default: the trained
    ``model.hidden_names``) at the current W (d_out = 1).

    For F = ½‖r‖² with r = f − y, ∇F = Jᵀr and ‖∇F‖²/F = 2 rᵀKr/‖r‖², so these are the exact minimum and
    maximum of Σ_ℓ‖∇_{W_ℓ}F‖²/F over every possible residual (every choice of targets): the worst cases
    that Theorem 3 bounds. The per-layer max of the theorem lies between the minimum / L and the minimum.
    """
    names = list(model.hidden_names) if names is None else names
    ev = np.linalg.eigvalsh(ntk_matrix(model, x, names))
    return 2.0 * float(ev[0]), 2.0 * float(ev[-1])


# ----------------------------------------------------------------------------- rates
def linear_rate(values, steps=None, start=0.0):
    """Fit log v_t = a − ρ t by least squares over the part after fraction ``start`` of the run.

    Returns (ρ per step, R² of the fit). A straight line on a log scale (R² ≈ 1, ρ > 0) is the
    linear convergence of Theorem 1/2.
    """
    v = np.asarray(values, dtype=float)
    t = np.arange(v.size, dtype=float) if steps is None else np.asarray(steps, dtype=float)
    ok = np.isfinite(v) & (v > 0)
    t, v = t[ok], v[ok]
    k0 = int(start * t.size)
    t, lv = t[k0:], np.log(v[k0:])
    if t.size < 3:
        return float("nan"), float("nan")
    a, b = np.polyfit(t, lv, 1)
    resid = lv - (a * t + b)
    ss = float(np.sum((lv - lv.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss if ss > 0 else 1.0
    return float(-a), r2


def iterations_to(values, eps, steps=None):
    """First step t with v_t ≤ eps (None if never)."""
    v = np.asarray(values, dtype=float)
    t = np.arange(v.size) if steps is None else np.asarray(steps)
    hit = np.nonzero(v <= eps)[0]
    return int(t[hit[0]]) if hit.size else None


def accuracy(pred, labels):
    """Fraction of rows whose argmax equals the label."""
    return float(np.mean(np.argmax(pred, axis=1) == np.asarray(labels)))


# ----------------------------------------------------------------------------- the trace
class Recorder:
    """A :func:`refnets.train.train` callback that records the paper's quantities on the full set.

    At every call it appends to the trace: ``rec_step``, ``F`` (full loss), ``acc`` (if ``labels``),
    ``radius`` (max_ℓ ‖W_ℓ − W_ℓ⁽⁰⁾‖₂), ``radius_rel`` (max_ℓ of the same over ‖W_ℓ⁽⁰⁾‖₂),
    ``grad_ratio_max`` and ``grad_ratio_sum`` (‖∇F‖²/F, :func:`gradient_ratio`), ``flip``
    (:func:`flip_fraction` on the training inputs; 0 for a linearised model, whose patterns are
    frozen by definition) and, with ``keep_outputs``, ``output`` (the (N, d_out) predictions).

    Parameters
    ----------
    model : the model at W⁰ (its initial parameters are copied here).
    x, y : the full training set; loss : the training :class:`refnets.losses.Loss`.
    names : trained parameter names (default ``model.hidden_names``).
    labels : int labels for the accuracy (classification), or None.
    full_batch : True for GD: reuse the forward/backward that the trainer has just done on the full
        set (no extra cost); False for SGD: one extra full forward and backward per record.
    """

    def __init__(self, model, x, y, loss, names=None, labels=None, full_batch=True, keep_outputs=False):
        self.x, self.y, self.loss = x, y, loss
        self.names = list(model.hidden_names if names is None else names)
        params = model.parameters()
        self.W0 = {k: params[k].copy() for k in self.names}
        self.norms0 = {k: spectral_norm(self.W0[k], tol=1e-7, max_iter=1000) for k in self.names}
        self.labels = labels
        self.full_batch = full_batch
        self.keep_outputs = keep_outputs
        self._vectors = {}
        self.patterns0 = model.activation_pattern(x) if hasattr(model, "activation_pattern") else None

    def __call__(self, step, model, trace):
        if self.full_batch:
            F = trace["loss"][-1]
            grads, out = model.gradients(), model.output
        else:
            out = model.forward(self.x)
            F = self.loss.forward(out, self.y)
            model.backward(self.loss.backward())
            grads = model.gradients()
        params = model.parameters()
        dist = layer_distances(params, self.W0, self.names, self._vectors)
        gmax, gsum = gradient_ratio(grads, F, self.names)
        rec = dict(rec_step=step, F=F, radius=max(dist.values()),
                   radius_rel=max(dist[k] / self.norms0[k] for k in self.names),
                   grad_ratio_max=gmax, grad_ratio_sum=gsum)
        if self.patterns0 is not None and hasattr(model, "preactivations"):
            rec["flip"] = flip_fraction(self.patterns0, [z > 0 for z in model.preactivations()])
        else:
            rec["flip"] = 0.0
        if self.labels is not None:
            rec["acc"] = accuracy(out, self.labels)
        if self.keep_outputs:
            rec["output"] = np.array(out, copy=True)
        trace.record(**rec)
