"""Brutzkus & Globerson (2021), "An Optimization and Generalization Analysis for Max-Pooling Networks":
the experiments of Sec. 7 (Fig. 3a, 3b, 3c and 4), ConvPool against the MLP and the linear SVM.

Setting (Sec. 7): patterns o ∈ ℝ²⁰ from the rows of a uniformly random orthogonal matrix (l = d = 20),
n = 10 patterns per input, ConvPool with k = 500 channels trained end to end with Adam, an MLP with one
hidden leaky-ReLU layer and the same number of parameters, a hard-margin linear SVM; a test set of 1000,
5 repeats, mean ± std.

* ``brutzkus2021.fig3a``  test error against the training-set size on 𝒟 (linearly separable).
* ``brutzkus2021.fig3b``  the same with noise ‖v‖ ≤ 1 added to every pattern (not linearly separable at
  the larger sizes; the SVM fails).
* ``brutzkus2021.fig4``   test error against n at a fixed training-set size, with noise ‖v‖ ≤ 1.
* ``brutzkus2021.fig3c``  digit detection: 4 digits per input, 3 against 5, the others spurious
  (scikit-learn's 8×8 digits by default; MNIST when ``REFNETS_MNIST`` names a folder holding
  ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]``).

Reconstructed (R), each a key of the configurations below: the training sizes (the paper's x-axis values
are not in the text; ours span 20 … 1000, quick mode 50 … 300 with 2 repeats), the sample size of Fig. 4
and its values of n, Adam's learning
rate (1e-2, full batch), the stopping rule (training error 0 and mean logistic loss ≤ 1e-3, at most
``max_epochs``), ConvPool's init radius (r = 1), the MLP's leaky-ReLU slope (α = 0.01) and init, the
SVM's C on non-separable data (see :func:`refnets.models.brutzkus2021.hard_margin_svm`).
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from ..data import patterns as P
from ..models import brutzkus2021 as M
from .common import experiment, finish, new_figure

PAPER = "brutzkus2021"
MODELS = ("ConvPool", "MLP", "SVM")
COLORS = {"ConvPool": "C0", "MLP": "C1", "SVM": "C2"}

BASE = dict(d=20, l=20, n=10, k=500, test_size=1000, lr=1e-2, stop_loss=1e-3, r=1.0, alpha=0.01)
QUICK = dict(repeats=2, sizes=[50, 150, 300], max_epochs=150, fig4_m=200, fig4_n=[4, 10, 20],
             digit_sizes=[50, 150, 300], test_size=500)
FULL = dict(repeats=5, sizes=[20, 50, 100, 200, 500, 1000], max_epochs=400, fig4_m=500, fig4_n=[5, 10, 20, 40],
            digit_sizes=[20, 50, 100, 200, 500, 1000], test_size=1000)


def config(quick: bool) -> dict:
    """The settings of one mode: :data:`BASE` (the paper's d, n, k, …) updated by :data:`QUICK` or :data:`FULL`."""
    cfg = dict(BASE)
    cfg.update(QUICK if quick else FULL)
    return cfg


@contextlib.contextmanager
def single_thread():
    """Numba kernels and BLAS on one thread inside the block. The jobs are independent (a parallel backend
    runs them side by side) and their matrices small, where thread hand-off costs more than it saves:
    measured on the busy 2-core machine, 38 ms against 4 ms per ConvPool forward/backward (k = 513, N = 30;
    Numba threads) and 2.5 s against 0.12 s for a whole MLP fit at m = 100 (BLAS threads)."""
    with contextlib.ExitStack() as stack:
        try:
            import numba
            old = numba.get_num_threads()
            numba.set_num_threads(1)
            stack.callback(numba.set_num_threads, old)
        except (ImportError, RuntimeError):  # pragma: no cover
            pass
        try:
            from threadpoolctl import threadpool_limits
            stack.enter_context(threadpool_limits(1))
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            pass
        yield


def _mnist(folder):
    from ..data.digits import load_mnist
    folder = Path(folder)
    for suffix in ("", ".gz"):
        im, lb = folder / f"train-images-idx3-ubyte{suffix}", folder / f"train-labels-idx1-ubyte{suffix}"
        if im.exists() and lb.exists():
            return load_mnist(im, lb)
    raise FileNotFoundError(f"REFNETS_MNIST={folder}: expected train-images-idx3-ubyte[.gz] and "
                            f"train-labels-idx1-ubyte[.gz] there")


def compare_job(task, m, seed, d, l, n, k, rho, test_size, lr, max_epochs, stop_loss, r, alpha, mnist=None):
    """One (size × repeat) job: draw a training set of size m and a test set, train ConvPool and the MLP
    with Adam and fit the SVM; return test and training errors, epochs and seconds (JSON).

    task: "patterns" (𝒟 with l patterns in ℝᵈ, n per input, noise ρ) or "digits" (n digits per input).
    """
    rng = np.random.default_rng(seed)
    if task == "patterns":
        O = P.orthonormal_patterns(l, d, "random", rng)
        x, y = P.sample(m, n, O, rho, rng)
        xt, yt = P.sample(test_size, n, O, rho, rng)
    else:
        from ..data.digits import DigitDetection
        imgs = _mnist(mnist) if mnist else (None, None)
        taskobj = DigitDetection(*imgs, n_digits=n, seed=seed)
        d = taskobj.d
        x, y = taskobj.sample(m, "train", rng)
        xt, yt = taskobj.sample(test_size, "test", rng)
    out = {"task": task, "m": m, "n": n, "rho": rho, "seed": seed, "d": d}
    with single_thread():
        t0 = time.perf_counter()
        net = M.ConvPool(d, k, r=r, rng=rng)
        fit = M.train_adam(net, x, y, lr=lr, max_epochs=max_epochs, stop_loss=stop_loss, rng=rng)
        out.update(ConvPool_test=M.error_rate(net, xt, yt), ConvPool_train=fit["train_error"],
                   ConvPool_epochs=fit["epochs"], ConvPool_seconds=time.perf_counter() - t0,
                   ConvPool_params=net.n_parameters())
        t0 = time.perf_counter()
        mlp = M.make_mlp(n * d, match=(d, k), alpha=alpha, rng=rng)
        fit = M.train_adam(mlp, x, y, lr=lr, max_epochs=max_epochs, stop_loss=stop_loss, rng=rng)
        out.update(MLP_test=M.error_rate(mlp, xt, yt), MLP_train=fit["train_error"], MLP_epochs=fit["epochs"],
                   MLP_seconds=time.perf_counter() - t0, MLP_params=mlp.n_parameters())
        try:
            t0 = time.perf_counter()
            svm = M.hard_margin_svm(x, y)
            out.update(SVM_test=M.error_rate(svm, xt, yt), SVM_train=svm.train_error, SVM_separable=svm.separable,
                       SVM_seconds=time.perf_counter() - t0)
        except ImportError:  # the baselines extra is missing: no SVM curve
            out.update(SVM_test=None, SVM_train=None, SVM_separable=None, SVM_seconds=0.0)
    return out


def _jobs(cfg, task, xs, xkey, ctx, rho=0.0, n=None, m=None):
    jobs = []
    for rep in range(cfg["repeats"]):
        for v in xs:
            job = dict(task=task, m=m, seed=int(ctx.seed * 1000 + rep), d=cfg["d"], l=cfg["l"],
                       n=n if n is not None else cfg["n"], k=cfg["k"], rho=rho, test_size=cfg["test_size"],
                       lr=cfg["lr"], max_epochs=cfg["max_epochs"], stop_loss=cfg["stop_loss"], r=cfg["r"],
                       alpha=cfg["alpha"], mnist=os.environ.get("REFNETS_MNIST") if task == "digits" else None)
            job[xkey] = int(v)
            jobs.append(job)
    return jobs


def summarize(results, xkey) -> list[dict]:
    """Mean ± std over repeats of every model's test error, by the swept value."""
    rows = []
    for v in sorted({r[xkey] for r in results}):
        rs = [r for r in results if r[xkey] == v]
        row = {xkey: v, "repeats": len(rs)}
        for mname in MODELS:
            te = [r[f"{mname}_test"] for r in rs if r[f"{mname}_test"] is not None]
            tr = [r[f"{mname}_train"] for r in rs if r[f"{mname}_train"] is not None]
            row[f"{mname}_mean"] = float(np.mean(te)) if te else None
            row[f"{mname}_std"] = float(np.std(te)) if te else None
            row[f"{mname}_max_train_error"] = float(np.max(tr)) if tr else None
        row["SVM_separable_fraction"] = float(np.mean([bool(r["SVM_separable"]) for r in rs])) \
            if rs[0]["SVM_separable"] is not None else None
        row["seconds"] = float(sum(r["ConvPool_seconds"] + r["MLP_seconds"] + r["SVM_seconds"] for r in rs))
        rows.append(row)
    return rows


def format_table(rows, xkey, title) -> str:
    """The rows of :func:`summarize` as a plain-text table (mean ± std per model, SVM separable fraction)."""
    head = f"{xkey:>6} | " + " | ".join(f"{m:>15}" for m in MODELS) + " | SVM separable"
    lines = [title, head, "-" * len(head)]
    for r in rows:
        cells = []
        for m in MODELS:
            cells.append(f"{r[m + '_mean']:.3f} ± {r[m + '_std']:.3f}" if r[m + "_mean"] is not None else "n/a")
        sep = "n/a" if r["SVM_separable_fraction"] is None else f"{r['SVM_separable_fraction']:.0%}"
        lines.append(f"{r[xkey]:>6} | " + " | ".join(f"{c:>15}" for c in cells) + f" | {sep}")
    return "\n".join(lines)


def _plot(ctx, rows, xkey, xlabel, title, stem, caption, logx=True):
    fig, ax = new_figure(width=5.6, height=4.0)
    xs = [r[xkey] for r in rows]
    for m in MODELS:
        if rows[0][m + "_mean"] is None:
            continue
        ax.errorbar(xs, [r[m + "_mean"] for r in rows], yerr=[r[m + "_std"] for r in rows], marker="o",
                    capsize=3, color=COLORS[m], label=m)
    if logx:
        ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(bottom=-0.01)
    finish(ax, xlabel, "test error (mean ± std over repeats)", title)
    ctx.figure(fig, stem, caption)


def _claims_beats(ctx, rows, xkey, what):
    """Holds iff ConvPool's mean test error is below the baseline's wherever the baseline errs at all, and
    never above it (where both are 0 they tie)."""
    for base in ("MLP", "SVM"):
        if rows[0][base + "_mean"] is None:
            continue
        wins = [r[xkey] for r in rows if r["ConvPool_mean"] < r[base + "_mean"]]
        ties = [r[xkey] for r in rows if r["ConvPool_mean"] == r[base + "_mean"]]
        losses = [r[xkey] for r in rows if r["ConvPool_mean"] > r[base + "_mean"]]
        gaps = ", ".join(f"{r[xkey]}: {r['ConvPool_mean']:.3f} vs {r[base + '_mean']:.3f}" for r in rows)
        ctx.claim(f"{what}: ConvPool has lower mean test error than the {base} at every {xkey} where the {base} "
                  f"errs (Sec. 7, as published)",
                  f"lower at {len(wins)}, tied at {len(ties)}, higher at {len(losses)} of {len(rows)} values "
                  f"(ConvPool vs {base}: {gaps})",
                  not losses and all(r["ConvPool_mean"] < r[base + "_mean"] for r in rows if r[base + "_mean"] > 0))


def _run_sweep(ctx, jobs, xkey, title, stem, xlabel, caption, logx=True):
    t0 = time.perf_counter()
    results = ctx.map(compare_job, jobs)
    seconds = time.perf_counter() - t0
    ctx.table(stem + "_runs", results)
    rows = summarize(results, xkey)
    ctx.table(stem, rows)
    table = format_table(rows, xkey, f"{title} ({ctx.mode} mode, {len(jobs)} jobs, {seconds:.1f} s)")
    print(table, flush=True)
    ctx.note("```\n" + table + "\n```")
    _plot(ctx, rows, xkey, xlabel, title, stem, caption, logx)
    return results, rows


# ----------------------------------------------------------------------------- Fig. 3a
@experiment("brutzkus2021.fig3a", PAPER, "Fig. 3a: test error against training size on the pattern distribution D",
            quick_seconds=8, full_seconds=20)
def fig3a(ctx):
    cfg = config(ctx.quick)
    jobs = _jobs(cfg, "patterns", cfg["sizes"], "m", ctx, rho=0.0)
    results, rows = _run_sweep(ctx, jobs, "m", "Fig. 3a: D, d=20, n=10, k=500", "fig3a", "training-set size m",
                               "Test error against the training-set size (log axis), noiseless D")
    _claims_beats(ctx, rows, "m", "Fig. 3a")
    worst = {mname: max(r[f"{mname}_train"] for r in results) for mname in MODELS
             if results[0][f"{mname}_train"] is not None}
    ctx.claim("Fig. 3a: D is linearly separable and every model reaches zero training error",
              ", ".join(f"{k}: max training error {v:.3g}" for k, v in worst.items())
              + f"; SVM separable in {sum(bool(r['SVM_separable']) for r in results)}/{len(results)} runs",
              all(v == 0 for v in worst.values()))


# ----------------------------------------------------------------------------- Fig. 3b
@experiment("brutzkus2021.fig3b", PAPER, "Fig. 3b: test error against training size with pattern noise ||v|| <= 1",
            quick_seconds=8, full_seconds=50)
def fig3b(ctx):
    cfg = config(ctx.quick)
    jobs = _jobs(cfg, "patterns", cfg["sizes"], "m", ctx, rho=1.0)
    results, rows = _run_sweep(ctx, jobs, "m", "Fig. 3b: D + noise ||v|| <= 1", "fig3b", "training-set size m",
                               "Test error against the training-set size, patterns with noise ‖v‖ ≤ 1")
    _claims_beats(ctx, rows, "m", "Fig. 3b")
    big = rows[-1]
    nonsep = [r for r in results if r["SVM_separable"] is False]
    measured = (f"not linearly separable (exact LP test) in {len(nonsep)}/{len(results)} runs; at m = {big['m']}: "
                f"separable fraction {big['SVM_separable_fraction']}, SVM max training error "
                f"{big['SVM_max_train_error']}")
    if ctx.quick:
        ctx.note("Fig. 3b (quick mode, sizes up to " f"{big['m']}): " + measured + ". The full mode goes to m = 1000, "
                 "where the noisy data stop being linearly separable.")
    else:
        ctx.claim("Fig. 3b: with noise the larger training sets are not linearly separable and the SVM has "
                  "nonzero training error there", measured,
                  len(nonsep) > 0 and all(r["SVM_train"] > 0 for r in nonsep))
    worst = max(r["ConvPool_train"] for r in results)
    ctx.claim("Fig. 3b: ConvPool still reaches zero training error", f"max ConvPool training error {worst:.3g}",
              worst == 0)


# ----------------------------------------------------------------------------- Fig. 4
@experiment("brutzkus2021.fig4", PAPER, "Fig. 4: test error against the number of patterns n (noise ||v|| <= 1)",
            quick_seconds=9, full_seconds=150)
def fig4(ctx):
    cfg = config(ctx.quick)
    jobs = _jobs(cfg, "patterns", cfg["fig4_n"], "n", ctx, rho=1.0, m=cfg["fig4_m"])
    results, rows = _run_sweep(ctx, jobs, "n", f"Fig. 4: m={cfg['fig4_m']}, noise ||v|| <= 1", "fig4",
                               "patterns per input n",
                               "Test error against n at a fixed training-set size, noise ‖v‖ ≤ 1")
    _claims_beats(ctx, rows, "n", "Fig. 4")
    growth = {mname: rows[-1][mname + "_mean"] - rows[0][mname + "_mean"] for mname in MODELS
              if rows[0][mname + "_mean"] is not None}
    ctx.claim("Fig. 4: increasing n hurts the MLP and the SVM more than ConvPool (Prop. 6.1: their bounds grow "
              "like n², ConvPool's stays O(d))",
              f"test error change from n = {rows[0]['n']} to {rows[-1]['n']}: "
              + ", ".join(f"{k} {v:+.3f}" for k, v in growth.items()),
              all(growth["ConvPool"] < growth[b] for b in growth if b != "ConvPool"))


# ----------------------------------------------------------------------------- Fig. 3c
@experiment("brutzkus2021.fig3c", PAPER, "Fig. 3c: digit detection (3 vs 5 among spurious digits, 4 per input)",
            quick_seconds=15, full_seconds=110)
def fig3c(ctx):
    cfg = config(ctx.quick)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        if not os.environ.get("REFNETS_MNIST"):
            ctx.note("Fig. 3c skipped: needs scikit-learn's digits (the baselines extra) or REFNETS_MNIST.")
            return
    jobs = _jobs(cfg, "digits", cfg["digit_sizes"], "m", ctx, n=4)
    src = "MNIST (" + os.environ["REFNETS_MNIST"] + ")" if os.environ.get("REFNETS_MNIST") else "8x8 digits"
    results, rows = _run_sweep(ctx, jobs, "m", f"Fig. 3c: digit detection, {src}, k=500", "fig3c",
                               "training-set size m", f"Digit detection ({src}): test error against training size")
    _claims_beats(ctx, rows, "m", "Fig. 3c")
    _digit_examples(ctx)


def _digit_examples(ctx):
    """Fig. 5: a few inputs of the digit-detection task, with their labels."""
    from ..data.digits import DigitDetection
    imgs = _mnist(os.environ["REFNETS_MNIST"]) if os.environ.get("REFNETS_MNIST") else (None, None)
    task = DigitDetection(*imgs, seed=0)
    x, y = task.sample(6, "train", np.random.default_rng(ctx.seed))
    fig, axes = new_figure(ncols=2, nrows=3, width=3.2, height=1.2)
    for ax, im, lab in zip(axes, task.as_images(x), y):
        ax.imshow(im, cmap="gray_r")
        ax.set_title(f"y = {int(lab):+d} ({'contains a 3' if lab > 0 else 'contains a 5'})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    ctx.figure(fig, "fig5_examples", "Digit-detection inputs (Fig. 5): four digits side by side")
