"""Kohler, Krzyżak & Walter (2024), "Analysis of the rate of convergence of an over-parametrized CNN
image classifier learned by gradient descent", made visible. The paper has no experiments; these are
ours, built around Theorem 1 (PAPERS.md §4).

Every run draws images from the average-pooling model of :mod:`refnets.data.avgpool_images`
(texture detector m on κ×κ subimages, κ = 2, so η is known exactly), trains the K_n parallel CNNs of
:mod:`refnets.models.kohler2024` (L = 2, k = (4, 1), M = (2, 1): receptive field κ = 2) by t_n steps of
GD on F_n, and measures on an independent test sample the L2 error ∫|η̂ − η|² dP_X and the excess
risk of 1{η̂ ≥ ½} (:mod:`refnets.theory.kohler2024`).

* ``kohler2024.rate``       L2 error and excess risk against n on log-log axes, fitted slopes beside the
  theorem's exponents −1/(κ²+1) and −1/(2κ²+2).
* ``kohler2024.dimension``  κ fixed, d₁ = d₂ ∈ {8, 16, 32}: the GAP CNN against a fully connected
  network of similar parameter count.
* ``kohler2024.pooling``    global average pooling against max pooling against no pooling.
* ``kohler2024.overparam``  the effect of K_n (over-parametrization) and of the penalty c_n, and the
  paper's plain GD against the output-preconditioned step the other experiments use.

How the estimate is trained (R). The paper's plain GD on F_n is ill-conditioned here: the K_n pooled
features share a large common mean, ΦᵀΦ/n has eigenvalues from ~1e-7 to ~4–20, and GD with the
largest stable step λ_n = 1/λ_max(H) (H the output-layer Hessian) needs ~λ_max(H)/(2c_n) ≈ 10³–10⁴
steps (measured in experiment 4, right panel: after 60 (quick) / 600 (full) plain steps the test L2
error is still 15× / 2.9× that of the preconditioned run). The experiments therefore call
:func:`refnets.models.kohler2024.fit` with ``precondition="output"``: the same F_n, the inner
weights plain GD with λ_n, the output weights the exact step H⁻¹∇ of their convex quadratic problem (one K_n×K_n solve per step). After the first step
the inner weights barely move (F_n drops by ~1e-4 over the remaining t_n steps) — the regime of the
paper's analysis, in which the output layer does the learning on nearly fixed random CNN features.
``precondition="none"`` restores the paper's algorithm (a parameter of :func:`run_job`).

Times (warm Numba cache, 2-core machine): quick mode of all four 20 s wall / 17 s CPU
(``refnets reproduce kohler2024 --quick -q``); full mode 22.5 min wall / 14.2 min CPU
(``refnets reproduce kohler2024 --full --jobs 2 -q``, measured with the machine shared with other jobs,
load ≈ 5; per experiment: rate 507 s, dimension 260 s, pooling 31 s, overparam 547 s).

Choices (R: the theorem fixes them only up to constants or asymptotically): A = 8 (inner weights
and biases U[−A, A]: sharp features for the sharp texture detector; the model's default is 4),
λ_n = 1/λ_max of the output-layer Hessian at init (:func:`refnets.models.kohler2024.output_step_size`),
c_n = 1e-3 fixed (not shrinking with n; its effect is experiment 4), K_n = n/32 in the rate experiment
(over-parametrization growing with n) and 16 elsewhere, t_n = 3 (quick) / 10 (full) steps. Every
(setting × repeat) is one single-threaded job of :meth:`Context.map`, seeded by itself.
"""
from __future__ import annotations

import time

import numpy as np

from ..data.avgpool_images import AvgPoolImages
from ..kernels.threads import serial_numba
from ..models import kohler2024 as KW
from ..theory import kohler2024 as T
from .common import experiment, finish, new_figure, plot_rate, reference_slope

PAPER = "kohler2024"
KAPPA = 2
NET = dict(k=(4, 1), M=(2, 1))      # κ = 1 + (2 − 1) + (1 − 1) = 2
REPEATS = {True: 2, False: 5}


def _cfg(quick):
    """Sizes per mode: (quick) a first look in seconds; (full) the issue's sizes. In the rate experiment
    K_n grows with n (K_n = n/32, at least 4: over-parametrization grows with n, as in Theorem 1).
    ``t_plain`` steps of the paper's plain GD are compared with the preconditioned run in experiment 4."""
    if quick:
        return dict(ns=[125, 250, 500], K_of_n=_k_of_n, n_fixed=250, t_n=3, K_n=16, d=8, n_test=1000, A=8.0,
                    c_n=1e-3, dims=[8, 16], Ks=[2, 8, 32], cs=[0.0, 1e-3, 1e-1], precondition="output",
                    t_plain=60, plain_every=6)
    return dict(ns=[250, 500, 1000, 2000, 4000], K_of_n=_k_of_n, n_fixed=1000, t_n=10, K_n=16, d=8, n_test=4000,
                A=8.0, c_n=1e-3, dims=[8, 16, 32], Ks=[2, 4, 16, 64, 256], cs=[0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
                precondition="output", t_plain=600, plain_every=30)


def _k_of_n(n):
    """K_n = n/32 (at least 4) parallel CNNs in the rate experiment."""
    return max(4, n // 32)


def run_job(n, seed, d=8, K_n=16, t_n=20, c_n=1e-3, A=8.0, pool="avg", region="I_kappa", net="cnn",
            n_test=1000, kappa=KAPPA, fc_params=None, precondition="output"):
    """Train one estimate and measure it; every argument a plain value (a job of :meth:`Context.map`).

    ``precondition`` is passed to :func:`refnets.models.kohler2024.fit` ("output": the (R) output-layer
    step H⁻¹∇, inner weights plain GD with λ_n; "none": the paper's plain GD throughout).

    Returns a JSON-ready dict: l2 (∫|η̂ − η|² on the test sample), excess (excess risk of 1{η̂ ≥ ½}),
    bayes (R*), train_F (F_n at t_n), params (parameter count), seconds."""
    t0 = time.perf_counter()
    dist = AvgPoolImages(d1=d, kappa=kappa)
    x, y, _ = dist.sample(n, rng=np.random.default_rng([seed, n, d, 1]))
    xt, _, eta_t = dist.sample(n_test, rng=np.random.default_rng([seed, d, 2]))
    rng = np.random.default_rng([seed, 3])
    if net == "cnn":
        model = KW.KohlerCNN(d, K_n=K_n, A=A, pool=pool, region=region, rng=rng, **NET)
    else:
        h = KW.fc_width_for(fc_params, d)
        model = KW.FCNet(d, h=h, A=A, kappa=kappa, rng=rng)
    with serial_numba():
        lam = KW.output_step_size(model, x, c_n)
        tr = KW.fit(model, x, y, lam, t_n, c_n, precondition=precondition)
        eh = model.eta_hat(xt)
    return dict(l2=T.l2_error(eh, eta_t), excess=T.excess_risk(KW.classify(eh), eta_t),
                bayes=T.bayes_risk(eta_t), train_F=float(tr["loss"][-1]), 
                F_drop=float(tr["loss"][1] - tr["loss"][-1]) if t_n > 0 else 0.0,
                lambda_n=lam, params=model.n_parameters(), seconds=time.perf_counter() - t0)


def run_plain_job(n, seed, d=8, K_n=16, t_plain=600, every=30, c_n=1e-3, A=8.0, n_test=1000, kappa=KAPPA):
    """The paper's plain GD (one step λ_n = 1/λ_max(H) for every weight) for ``t_plain`` steps, with the test
    L2 error every ``every`` steps; beside it the preconditioned run's L2 after the same data and init
    (``precondition="output"``, 10 steps). Returns a JSON-ready dict of lists."""
    dist = AvgPoolImages(d1=d, kappa=kappa)
    x, y, _ = dist.sample(n, rng=np.random.default_rng([seed, n, d, 1]))
    xt, _, eta_t = dist.sample(n_test, rng=np.random.default_rng([seed, d, 2]))
    steps, l2s = [], []

    def record(t, model, trace):
        steps.append(int(t))
        l2s.append(T.l2_error(model.eta_hat(xt), eta_t))

    with serial_numba():
        model = KW.KohlerCNN(d, K_n=K_n, A=A, rng=np.random.default_rng([seed, 3]), **NET)
        pre = model.copy()
        lam = KW.output_step_size(model, x, c_n)
        tr = KW.fit(model, x, y, lam, t_plain, c_n, record_every=every, callback=record)
        trp = KW.fit(pre, x, y, lam, 10, c_n, precondition="output")
        l2_pre = T.l2_error(pre.eta_hat(xt), eta_t)
    return dict(steps=steps, l2=l2s, F=[float(v) for v in tr["loss"][::every]], l2_pre=l2_pre,
                F_pre=float(trp["loss"][-1]), lambda_n=lam)


def _sweep(ctx, settings, base):
    """Run every setting × repeat through ctx.map; returns rows (setting, repeat, results)."""
    jobs = [dict(base, **s, seed=ctx.seed * 1000 + r) for s in settings for r in range(REPEATS[ctx.quick])]
    res = ctx.map(run_job, jobs)
    return [dict(job, **out) for job, out in zip(jobs, res)]


def _agg(rows, key, by):
    """{value of ``by``: (mean, standard error) of ``key``} over repeats."""
    out = {}
    for v in dict.fromkeys(r[by] for r in rows):
        a = np.array([r[key] for r in rows if r[by] == v], float)
        out[v] = (float(a.mean()), float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else 0.0)
    return out


def _fixed_ticks(ax, xs, labels):
    """Label a log x axis at the data values only (minor tick labels of short log ranges overlap)."""
    from matplotlib.ticker import NullFormatter, NullLocator
    ax.set_xticks(xs, labels)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _figure(ncols, width=5.2, height=4.2):
    fig, axes = new_figure(ncols, 1, width=width, height=height)
    fig.set_layout_engine("constrained")
    return fig, axes


# ------------------------------------------------------------------------------------------ 1: rate
@experiment("kohler2024.rate", PAPER, "L2 error and excess risk of the GAP CNN against n, with Theorem 1's exponents",
            quick_seconds=4, full_seconds=60)
def rate(ctx):
    c = _cfg(ctx.quick)
    base = dict(d=c["d"], t_n=c["t_n"], c_n=c["c_n"], A=c["A"], n_test=c["n_test"], precondition=c["precondition"])
    rows = _sweep(ctx, [dict(n=n, K_n=c["K_of_n"](n)) for n in c["ns"]], base)
    ctx.table("rate", rows)
    ns = np.array(c["ns"], float)
    l2, ex = _agg(rows, "l2", "n"), _agg(rows, "excess", "n")
    fig, (a1, a2) = _figure(2)
    s_l2 = plot_rate(a1, ns, [l2[n][0] for n in c["ns"]], "GAP CNN, L2 error", yerr=[l2[n][1] for n in c["ns"]])
    e_l2, e_ex = T.l2_rate_exponent(KAPPA), T.excess_rate_exponent(KAPPA)
    reference_slope(a1, ns, e_l2, l2[c["ns"][0]][0], f"Theorem 1: n^{e_l2:+.2f}")
    finish(a1, "n (training images)", "∫|η̂ − η|² dP_X (test sample)", f"L2 error, κ = {KAPPA}, {c['d']}×{c['d']} images")
    s_ex = plot_rate(a2, ns, [max(ex[n][0], 1e-6) for n in c["ns"]], "GAP CNN, excess risk",
                     yerr=[ex[n][1] for n in c["ns"]])
    reference_slope(a2, ns, e_ex, max(ex[c["ns"][0]][0], 1e-6), f"Theorem 1: n^{e_ex:+.2f}")
    bound = [T.plugin_bound(l2[n][0]) for n in c["ns"]]
    a2.plot(ns, bound, ":", color="gray", label="plug-in bound 2(L2)^½")
    finish(a2, "n (training images)", "excess misclassification risk", "excess risk of 1{η̂ ≥ ½}")
    for a in (a1, a2):
        _fixed_ticks(a, ns, [str(n) for n in c["ns"]])
    ctx.figure(fig, "rate", f"L2 error and excess risk against n (means ± s.e. over {REPEATS[ctx.quick]} repeats), "
                            "fitted slopes in the legend, Theorem 1's exponents dashed")
    ctx.claim(f"the L2 error decreases with n at least at Theorem 1's rate: fitted slope ≤ −1/(κ²+1) = {e_l2:.3f}",
              f"fitted slope {s_l2:+.3f}", bool(np.isfinite(s_l2) and s_l2 <= e_l2))
    ctx.claim(f"the excess risk decreases with n at least at Theorem 1's rate: fitted slope ≤ −1/(2κ²+2) = {e_ex:.3f}",
              f"fitted slope {s_ex:+.3f}", bool(np.isfinite(s_ex) and s_ex <= e_ex))
    worst = max(ex[n][0] - T.plugin_bound(l2[n][0]) for n in c["ns"])
    ctx.claim("plug-in inequality: excess risk ≤ 2 (∫|η̂ − η|²)^½ at every n (a sanity check of the risk code)",
              f"max(excess − bound) = {worst:+.4f}", worst <= 0)
    Ks = ", ".join(f"{c['K_of_n'](n)}" for n in c["ns"])
    ctx.note(f"Theorem 1 is an upper bound up to constants and n^ε: a fitted slope at or below the theorem's "
             f"exponent is consistent with it (measured {s_l2:+.3f} for L2 against {e_l2:+.3f}, {s_ex:+.3f} for the "
             f"excess risk against {e_ex:+.3f}); a steeper slope says the bound is not tight for this smooth m, "
             f"not that the theorem is wrong. K_n = n/32 (= {Ks}), t_n = {c['t_n']}, c_n = {c['c_n']}, A = {c['A']}, "
             f"precondition = {c['precondition']!r} ((R): output weights take the exact step H⁻¹∇ of the convex "
             f"output-layer problem, inner weights plain GD with λ_n = 1/λ_max(H); the paper's plain GD would need "
             f"~λ_max(H)/(2c_n) ≈ 10³–10⁴ steps to reach the same point). The inner weights barely move in "
             f"t_n steps (train F_n drops by {np.mean([r['F_drop'] for r in rows]):.2e} on average after the "
             f"first step), as in the paper's analysis, where the output layer does the learning.")


# ------------------------------------------------------------------------------------ 2: dimension
@experiment("kohler2024.dimension", PAPER, "κ fixed, image size 8/16/32: GAP CNN against a fully connected net of similar size",
            quick_seconds=8, full_seconds=35)
def dimension(ctx):
    c = _cfg(ctx.quick)
    base = dict(n=c["n_fixed"], K_n=c["K_n"], t_n=c["t_n"], c_n=c["c_n"], A=c["A"], n_test=c["n_test"],
                precondition=c["precondition"])
    n_cnn = KW.KohlerCNN(8, K_n=c["K_n"], **NET).n_parameters()       # independent of d
    settings = [dict(d=d, net=net, fc_params=n_cnn) for d in c["dims"] for net in ("cnn", "fc")]
    rows = _sweep(ctx, settings, base)
    ctx.table("dimension", rows)
    fig, (a1, a2) = _figure(2)
    res = {}
    for net, lab in (("cnn", "GAP CNN"), ("fc", "fully connected")):
        sub = [r for r in rows if r["net"] == net]
        for a, key in ((a1, "l2"), (a2, "excess")):
            agg = _agg(sub, key, "d")
            a.errorbar(c["dims"], [agg[d][0] for d in c["dims"]], yerr=[agg[d][1] for d in c["dims"]], marker="o",
                       capsize=3, label=f"{lab} ({sub[0]['params']}–{sub[-1]['params']} params)")
            res[(net, key)] = agg
    # the constant predictor E η has L2 error Var η: the level of an estimate that learned nothing
    var_eta = [float(np.var(AvgPoolImages(d1=d, kappa=KAPPA).sample(
        c["n_test"], rng=np.random.default_rng([ctx.seed, d, 2]))[2])) for d in c["dims"]]
    a1.plot(c["dims"], var_eta, ":", color="gray", label="constant predictor E η (Var η)")
    for a, lab in ((a1, "∫|η̂ − η|² dP_X"), (a2, "excess risk")):
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        _fixed_ticks(a, c["dims"], [str(d) for d in c["dims"]])
        finish(a, "image side d₁ = d₂", lab, f"κ = {KAPPA} fixed, n = {c['n_fixed']}")
    ctx.figure(fig, "dimension", "L2 error and excess risk against the image size at fixed κ and n: GAP CNN "
                                 "and a one-hidden-layer FC network of similar parameter count")
    d0, d1 = c["dims"][0], c["dims"][-1]
    cnn_growth = res[("cnn", "l2")][d1][0] / res[("cnn", "l2")][d0][0]
    fc_growth = res[("fc", "l2")][d1][0] / res[("fc", "l2")][d0][0]
    ctx.claim(f"dimension reduction: from {d0}×{d0} to {d1}×{d1} the GAP CNN's L2 error grows less than the FC network's",
              f"L2 ratio {d1}/{d0}: CNN {cnn_growth:.2f}, FC {fc_growth:.2f}", cnn_growth < fc_growth)
    ctx.claim(f"the GAP CNN beats the FC network at {d1}×{d1}",
              f"L2 CNN {res[('cnn', 'l2')][d1][0]:.4f} vs FC {res[('fc', 'l2')][d1][0]:.4f}",
              res[("cnn", "l2")][d1][0] < res[("fc", "l2")][d1][0])
    fc_h = ", ".join(f"{KW.fc_width_for(n_cnn, d)} (d = {d})" for d in c["dims"])
    fc_l2 = ", ".join(f"{res[('fc', 'l2')][d][0]:.3f}" for d in c["dims"])
    ctx.note(f"At a matched parameter count the FC network has h = {fc_h} "
             f"hidden units; its L2 error ({fc_l2}) "
             f"is at or above the constant predictor's Var η ({', '.join(f'{v:.3f}' for v in var_eta)}): with so few units it "
             f"learns next to nothing at any d, so the contrast shows what the GAP CNN's weight sharing buys at equal size "
             f"rather than a gradual degradation of the FC net with d. "
             f"The GAP CNN's error falls with d: η averages m over more windows, and its estimate pools the same way.")


# -------------------------------------------------------------------------------------- 3: pooling
@experiment("kohler2024.pooling", PAPER, "global average pooling against max pooling and no pooling",
            quick_seconds=4, full_seconds=6)
def pooling(ctx):
    c = _cfg(ctx.quick)
    base = dict(n=c["n_fixed"], d=c["d"], K_n=c["K_n"], t_n=c["t_n"], c_n=c["c_n"], A=c["A"], n_test=c["n_test"],
                precondition=c["precondition"])
    pools = ["avg", "max", "none"]
    rows = _sweep(ctx, [dict(pool=p) for p in pools], base)
    ctx.table("pooling", rows)
    fig, (a1, a2) = _figure(2)
    aggs = {}
    for a, key, lab in ((a1, "l2", "∫|η̂ − η|² dP_X"), (a2, "excess", "excess risk")):
        agg = _agg(rows, key, "pool")
        aggs[key] = agg
        a.bar(range(3), [agg[p][0] for p in pools], yerr=[agg[p][1] for p in pools], capsize=4,
              color=["C0", "C1", "C2"], label="mean ± s.e.")
        a.set_xticks(range(3), ["average (paper)", "max", "none (read-out)"])
        finish(a, "pooling of the last channel", lab, f"n = {c['n_fixed']}, K_n = {c['K_n']}, {c['d']}×{c['d']}")
    ctx.figure(fig, "pooling", "Average pooling (the model's structure) against max pooling and a per-position linear read-out")
    l2 = aggs["l2"]
    ctx.claim("average pooling matches the average-pooling model best (lowest L2 error of the three)",
              ", ".join(f"{p} {l2[p][0]:.4f}" for p in pools), l2["avg"][0] <= min(l2["max"][0], l2["none"][0]))
    P = (c["d"] - KAPPA + 1) ** 2
    ctx.note(f"The read-out without pooling has K_n·|I_κ| = {c['K_n'] * P} output weights for n = {c['n_fixed']} images "
             f"(the pooled networks: {c['K_n']}); it has to learn from data the averaging that the model (AP) builds in, "
             f"and with the same c_n it overfits. Max pooling keeps K_n weights but summarises the wrong statistic "
             f"(η is a mean of m over windows, not a max).")


# ------------------------------------------------------------------------------------- 4: K_n, c_n
@experiment("kohler2024.overparam", PAPER, "the effect of K_n (over-parametrization) and of the penalty c_n",
            quick_seconds=3, full_seconds=105)
def overparam(ctx):
    c = _cfg(ctx.quick)
    base = dict(n=c["n_fixed"], d=c["d"], t_n=c["t_n"], A=c["A"], n_test=c["n_test"], precondition=c["precondition"])
    rows_k = _sweep(ctx, [dict(K_n=K, c_n=c["c_n"]) for K in c["Ks"]], base)
    rows_c = _sweep(ctx, [dict(K_n=c["K_n"], c_n=cn) for cn in c["cs"]], base)
    pjobs = [dict(n=c["n_fixed"], d=c["d"], K_n=c["K_n"], t_plain=c["t_plain"], every=c["plain_every"], c_n=c["c_n"],
                  A=c["A"], n_test=c["n_test"], seed=ctx.seed * 1000 + r) for r in range(REPEATS[ctx.quick])]
    rows_p = [dict(job, **out) for job, out in zip(pjobs, ctx.map(run_plain_job, pjobs))]
    ctx.table("overparam_K", rows_k)
    ctx.table("overparam_c", rows_c)
    ctx.table("overparam_plain_gd", rows_p)
    fig, (a1, a2, a3) = _figure(3)
    lk, ek = _agg(rows_k, "l2", "K_n"), _agg(rows_k, "excess", "K_n")
    Ks = c["Ks"]
    a1.errorbar(Ks, [lk[K][0] for K in Ks], yerr=[lk[K][1] for K in Ks], marker="o", capsize=3, label="L2 error")
    a1.errorbar(Ks, [ek[K][0] for K in Ks], yerr=[ek[K][1] for K in Ks], marker="s", capsize=3, label="excess risk")
    a1.set_xscale("log")
    a1.set_yscale("log")
    _fixed_ticks(a1, Ks, [str(K) for K in Ks])
    finish(a1, "K_n (parallel CNNs)", "test error", f"c_n = {c['c_n']}, n = {c['n_fixed']}")
    cs = c["cs"]
    lc, ec = _agg(rows_c, "l2", "c_n"), _agg(rows_c, "excess", "c_n")
    xs = [cn if cn > 0 else cs[1] / 10 for cn in cs]                 # c_n = 0 drawn one decade left
    a2.errorbar(xs, [lc[cn][0] for cn in cs], yerr=[lc[cn][1] for cn in cs], marker="o", capsize=3, label="L2 error")
    a2.errorbar(xs, [ec[cn][0] for cn in cs], yerr=[ec[cn][1] for cn in cs], marker="s", capsize=3, label="excess risk")
    a2.set_xscale("log")
    a2.set_yscale("log")
    _fixed_ticks(a2, xs, ["0"] + [f"{cn:g}" for cn in cs[1:]])
    finish(a2, "c_n (penalty on the output weights)", "test error", f"K_n = {c['K_n']}, n = {c['n_fixed']}")
    steps = np.array(rows_p[0]["steps"], float)
    l2p = np.array([r["l2"] for r in rows_p])
    pre = np.array([r["l2_pre"] for r in rows_p])
    a3.plot(np.maximum(steps, 0.5), l2p.mean(0), marker=".", label="paper's plain GD, λ_n = 1/λ_max(H)")
    a3.axhline(pre.mean(), color="C1", ls="--", label="output-preconditioned (R), 10 steps")
    a3.set_xscale("log")
    a3.set_yscale("log")
    finish(a3, "GD step t (step 0 drawn at ½)", "test L2 error", f"K_n = {c['K_n']}, c_n = {c['c_n']}, n = {c['n_fixed']}")
    ctx.figure(fig, "overparam", "Test errors against the number K_n of parallel CNNs and against the penalty c_n; "
                                 "right: the paper's plain GD against the output-preconditioned step used here")
    ctx.claim("more parallel CNNs help: the L2 error at the largest K_n is below that at the smallest",
              ", ".join(f"K_n={K}: {lk[K][0]:.4f}" for K in Ks), lk[Ks[-1]][0] < lk[Ks[0]][0])
    ctx.claim("a large penalty c_n over-regularises: the L2 error at the largest c_n exceeds the best one",
              ", ".join(f"c_n={cn:g}: {lc[cn][0]:.4f}" for cn in cs), lc[cs[-1]][0] > min(v[0] for v in lc.values()))
    first, last = l2p.mean(0)[0], l2p.mean(0)[-1]
    ctx.claim(f"the paper's plain GD is still improving after {c['t_plain']} steps, and the output-preconditioned "
              "step (10 steps) is at least as accurate (within 10%): why the experiments use it",
              f"plain GD test L2 {first:.4f} at step 0, {last:.4f} at step {c['t_plain']}; preconditioned "
              f"{pre.mean():.4f} (plain/preconditioned {last / pre.mean():.2f})",
              bool(last < first and pre.mean() <= 1.1 * last))
    ctx.note("Plain GD on F_n with the largest stable step λ_n = 1/λ_max(H) (H the output-layer Hessian) "
             "learns the common mean of the pooled features in a few steps and the rest slowly: ΦᵀΦ/n has "
             "eigenvalues down to ~1e-7, so the slow directions converge at rate ~2c_n λ_n per step. This is why the "
             "experiments use precondition='output' (R): the same F_n and the same inner-weight GD, but the "
             "output weights take the exact step H⁻¹∇ of their convex quadratic problem.")
