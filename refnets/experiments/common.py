"""What every experiment shares: a registry, output writers, plotting helpers, checked claims.

An experiment is a function ``fn(ctx) -> None`` registered with :func:`experiment`. It reads
``ctx.quick`` (fast mode for CI and a first look; otherwise the paper's sizes), ``ctx.seed`` and
``ctx.rng``; it writes through ``ctx`` so every run leaves the same kinds of files:

* ``ctx.figure(fig, stem)``  -> ``stem.png`` and ``stem.svg``;
* ``ctx.table(stem, rows)``  -> ``stem.csv`` and ``stem.json`` (rows: list of dicts);
* ``ctx.claim(statement, measured, holds)`` -> a row of the report's table of checked claims:
  what the theorem says, what was measured, whether it holds;
* ``ctx.note(text)`` -> a paragraph in the report.

Plotting helpers draw rates the same way everywhere: log scales, fitted slopes in the legend,
reference slopes dashed.
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REGISTRY: dict[str, "Experiment"] = {}
PAPERS = {
    "du2019": "Du, Lee, Li, Wang, Zhai (2019): Gradient descent finds global minima of deep neural networks",
    "allenzhu2019": "Allen-Zhu, Li, Song (2019): A convergence theory for deep learning via over-parameterization",
    "brutzkus2021": "Brutzkus, Globerson (2021): An optimization and generalization analysis for max-pooling networks",
    "kohler2024": "Kohler, Krzyżak, Walter (2024): Rate of convergence of an over-parametrized CNN image classifier",
}


@dataclass
class Experiment:
    """A registered experiment: its name, paper, one-line description, function and time estimates."""

    name: str
    paper: str
    description: str
    fn: callable
    quick_seconds: float
    full_seconds: float


def experiment(name, paper, description, quick_seconds, full_seconds):
    """Register ``fn(ctx)`` as experiment ``name`` of ``paper`` (a key of :data:`PAPERS`).

    ``quick_seconds`` / ``full_seconds`` are the measured times on 2 cores, shown by ``refnets list``.
    """
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; choose from {sorted(PAPERS)}")

    def deco(fn):
        if name in REGISTRY:
            raise ValueError(f"experiment {name!r} registered twice")
        REGISTRY[name] = Experiment(name, paper, description, fn, quick_seconds, full_seconds)
        return fn
    return deco


@dataclass
class Claim:
    """One row of a report's table of checked claims."""

    statement: str
    measured: str
    holds: bool


@dataclass
class Context:
    """Where an experiment writes, and in which mode it runs."""

    out: Path
    quick: bool = True
    seed: int = 0
    jobs: int = 1
    dask: str | None = None
    fresh: bool = False
    progress: object = None
    figures: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    claims: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __post_init__(self):
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.rng = np.random.default_rng(self.seed)

    @property
    def mode(self) -> str:
        """"quick" or "full"."""
        return "quick" if self.quick else "full"

    def figure(self, fig, stem: str, caption: str = "") -> Path:
        """Save ``fig`` as ``stem.png`` and ``stem.svg`` (closing it) and add it to the report."""
        png = self.out / f"{stem}.png"
        fig.savefig(png, dpi=110, bbox_inches="tight")
        fig.savefig(self.out / f"{stem}.svg", bbox_inches="tight")
        import matplotlib.pyplot as plt
        plt.close(fig)
        self.figures.append((png.name, caption))
        return png

    def table(self, stem: str, rows: list[dict]) -> Path:
        """Save ``rows`` (a list of dicts) as ``stem.csv`` and ``stem.json``; returns the CSV path."""
        rows = [{k: _plain(v) for k, v in r.items()} for r in rows]
        path = self.out / f"{stem}.csv"
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        write_json(self.out / f"{stem}.json", rows)
        self.tables.append(path.name)
        return path

    def claim(self, statement: str, measured: str, holds: bool) -> None:
        """Add a row to the report's table of checked claims: what the theorem says, what was measured, holds?"""
        self.claims.append(Claim(statement, measured, bool(holds)))

    def note(self, text: str) -> None:
        """Add a paragraph to the report."""
        self.notes.append(text)

    def map(self, fn, jobs: list[dict]) -> list:
        """``[fn(**job) for job in jobs]``: the independent jobs of a sweep (repeats × sizes × widths).

        ``fn`` must be a module-level function (picklable) whose result is JSON-serialisable, and
        each job a dict of plain values that includes its own seed, so that the result never depends
        on where or in which order the job runs. Results come back in the order of ``jobs``, after a
        JSON round trip (tuples become lists), identical whether the jobs ran one after another, in
        ``ctx.jobs`` local processes or on the Dask cluster at ``ctx.dask``
        (``refnets run … --jobs N --dask ADDRESS``); see :func:`refnets.sweep.run_sweep`.

        Each finished job is saved atomically under ``<out>/jobs/``; rerunning the experiment into the
        same folder skips the finished jobs (``ctx.fresh`` / ``--fresh`` recomputes them).
        """
        from ..sweep import run_sweep
        return run_sweep(fn, jobs, folder=self.out / "jobs", n_jobs=self.jobs, dask=self.dask,
                         fresh=self.fresh, progress=self.progress)


def _plain(v):
    """JSON-friendly version of numpy scalars and arrays."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def write_json(path, data) -> None:
    """Write atomically (temp file, then rename), so a killed run never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(_plain(data), f, indent=1, allow_nan=True)
    os.replace(tmp, path)


# ---------------------------------------------------------------- plotting
def new_figure(ncols=1, nrows=1, width=5.0, height=3.8):
    """A matplotlib figure (Agg backend) and its axes: one Axes, or a flat array of ``ncols × nrows``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, (axes[0, 0] if ncols * nrows == 1 else axes.ravel())


def loglog_slope(x, y) -> tuple[float, float]:
    """Least-squares fit log y = slope · log x + c; returns (slope, c). Non-positive y ignored."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, c = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(c)


def plot_rate(ax, x, y, label, yerr=None, marker="o", **kw) -> float:
    """Plot y against x on log-log axes with the fitted slope in the legend; returns the slope."""
    slope, _ = loglog_slope(x, y)
    lab = f"{label} (slope {slope:+.2f})" if np.isfinite(slope) else label
    if yerr is not None:
        ax.errorbar(x, y, yerr=yerr, marker=marker, label=lab, capsize=3, **kw)
    else:
        ax.plot(x, y, marker=marker, label=lab, **kw)
    ax.set_xscale("log")
    ax.set_yscale("log")
    return slope


def reference_slope(ax, x, slope, anchor_y, label=None, anchor_x=None) -> None:
    """Dashed line ∝ x^slope through (anchor_x or x[0], anchor_y)."""
    x = np.asarray(x, float)
    x0 = x[0] if anchor_x is None else anchor_x
    ax.plot(x, anchor_y * (x / x0) ** slope, "k--", lw=1, alpha=0.7,
            label=label or f"reference slope {slope:+.2f}")


def finish(ax, xlabel, ylabel, title=None, legend=True) -> None:
    """Label the axes, add the title, the legend and a light grid."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if legend:
        ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)


# ------------------------------------------------------------------ running
def run(name: str, out, quick=True, seed=0, jobs=1, dask=None, fresh=False, progress=None) -> dict:
    """Run one registered experiment into ``out/name`` and return its summary record.

    ``jobs``, ``dask``, ``fresh`` and ``progress`` go to the experiment's sweeps (:meth:`Context.map`).
    """
    if name not in REGISTRY:
        import difflib
        close = difflib.get_close_matches(name, REGISTRY, n=3)
        raise KeyError(f"unknown experiment {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    exp = REGISTRY[name]
    ctx = Context(Path(out) / name, quick=quick, seed=seed, jobs=jobs, dask=dask, fresh=fresh, progress=progress)
    t0 = time.perf_counter()
    exp.fn(ctx)
    seconds = time.perf_counter() - t0
    record = {
        "name": name, "paper": exp.paper, "description": exp.description, "mode": ctx.mode,
        "seed": seed, "seconds": round(seconds, 2), "figures": ctx.figures, "tables": ctx.tables,
        "claims": [c.__dict__ for c in ctx.claims], "notes": ctx.notes,
    }
    write_json(ctx.out / "summary.json", record)
    return record
