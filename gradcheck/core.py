"""The finite-difference gradient checker.

What is checked
---------------
For a refnets layer f with input x and parameters θ (``layer.parameters()``, dotted names), a
random projection ``dout`` turns the output into the scalar F = ⟨dout, f(x; θ)⟩, whose gradient
with respect to x and to every parameter is exactly what ``layer.backward(dout)`` returns (dx)
and leaves in ``layer.gradients()``. Losses ``loss(pred, y) -> (value, dpred)`` and
:class:`refnets.losses.L2Penalty` are checked the same way (F = dout · value, dout a random scalar).

* **Full mode** — every entry i of every tensor t (or ``entries`` random entries per tensor):
  central differences in float64, g_num[i] = (F(t + h₊eᵢ) − F(t − h₋eᵢ)) / (h₊ + h₋), where
  h₊ = (tᵢ + h) − tᵢ and h₋ = tᵢ − (tᵢ − h) are the steps actually taken after rounding.
* **Fast mode** (torch's fast mode, JAX's check_grads) — a few random directions u per tensor
  (entries N(0, 1)): (F(t + hu) − F(t − hu)) / 2h, i.e. vᵀ(J_num u) with v = dout, against the
  analytic (vᵀJ)u = ⟨g_t, u⟩. Cost: two forwards per direction, independent of the tensor size.
* **Forward mode** — where ``layer.jvp(dx, dparams)`` exists: J u (for u on one tensor at a time)
  against central differences of the whole output, entry by entry, and the dot-product identity
  ⟨J u, v⟩ = ⟨u, Jᵀ v⟩ between jvp and backward (both analytic: agreement to rounding, ``EXACT_TOL``).
  A ``NotImplementedError`` from jvp gives one SKIP row.
* **Protocol checks** (torch's reentrancy and linearity checks, plus two of refnets'):
  ``reentrant`` — backward twice with the same dout gives bitwise identical results;
  ``intact`` — backward leaves the input, the parameters, dout and every cache in the layer tree
  bitwise unmodified (snapshot and compare);
  ``linear`` — backward(a·d₁ + b·d₂) = a·backward(d₁) + b·backward(d₂) to rounding (``EXACT_TOL``
  relative to |a|·max|g₁| + |b|·max|g₂|);
  ``overwrite`` — after backward(d₁), backward(d₂) gives bitwise the gradients of backward(d₂)
  alone (gradients are overwritten, never accumulated).

Step size
---------
h = ``step`` · max(1, rms(t)) with ``step`` = 1e-6 by default: the truncation error of central
differences is O(h²·F‴) ≈ 1e-12, the rounding error O(ε·S/h) ≈ 1e-10·S (ε = 2.2e-16, S below);
the optimum ε^{1/3} ≈ 6e-6 is nearby. Always float64: a float32 layer is refused (TypeError).

Relative error
--------------
CS231n's |a − b| / max(1e-8, |a| + |b|) is noisy for tiny entries: an entry whose true gradient
is 1e-9 has a finite-difference error (rounding) comparable to itself. Here, per tensor t,

    rel_i = |num_i − ana_i| / max(|num_i| + |ana_i|, τ_t),
    τ_t   = max(rms(ana_t), rms(num_t), 10⁸ · ν),   ν = ε · S / h,   S = Σ_j |dout_j · f_j(x)|,

so entries at least as large as the tensor's typical gradient are judged exactly as in CS231n,
smaller ones on the tensor's scale, and rounding noise of the size ν (each F carries an error of
about ε·S, so ν is a generous estimate of the noise of the difference quotient) gives rel ≤ 1e-8
on its own: a tensor whose gradient is zero, or lost in rounding, is not failed by noise.
In fast mode τ_t uses ‖g_t‖₂, the typical size of ⟨g_t, u⟩; for jvp rows, rms of the jvp and
ν_j = ε · max|f| / h. PASS needs rel ≤ ``tol`` = 1e-7 at every entry without kink evidence.

Kinks
-----
See :mod:`gradcheck.kinks`. Per entry (or direction), with kink evidence = the step crossed a
known kink (structural test) or the one-sided slopes differ by more than curvature allows
(generic test):

* PASS — rel ≤ tol, and no crossing and no one-sided jump ≥ ``KINK_JUMP``;
* KINK — kink evidence *and* the analytic value lies between the one-sided slopes (or the step
  crossed two or more known kinks at once, where that test is not valid);
* FAIL — everything else: a large error without kink evidence, or an analytic value outside
  the one-sided slopes across a kink (a wrong backward at a kink is still a FAIL).

For jvp rows (one step shared by all output entries) a crossing only explains entries whose
error is large. A (layer, tensor) row is FAIL if any entry fails, else KINK if any entry is a
kink, else PASS. :func:`check` redraws the input (a new random point from the factory) while an
attempt shows KINK and no FAIL, up to ``max_redraws`` times. KINK is not a failure, and no
tolerance is loosened to hide one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import zlib

import numpy as np

from . import kinks as _kinks

DEFAULT_STEP = 1e-6
PASS_TOL = 1e-7
EXACT_TOL = 1e-10  # for identities between analytic quantities (dot identity, linearity)
NOISE_FACTOR = 1e8
EPS = float(np.finfo(np.float64).eps)
TINY = float(np.finfo(np.float64).tiny)

PASS, FAIL, KINK, SKIP = "PASS", "FAIL", "KINK", "SKIP"
_ORDER = {PASS: 0, SKIP: 0, KINK: 1, FAIL: 2}


def rel_error(num, ana, scale=0.0):
    """|num − ana| / max(|num| + |ana|, scale), elementwise (see the module docstring for the scale)."""
    num = np.asarray(num, dtype=np.float64)
    ana = np.asarray(ana, dtype=np.float64)
    den = np.maximum(np.abs(num) + np.abs(ana), max(float(scale), TINY))
    return np.abs(num - ana) / den


def _rms(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


# ============================================================================ results
@dataclasses.dataclass
class Row:
    """One line of the report: one (layer/config, tensor, check)."""

    name: str
    tensor: str
    check: str  # "grad", "jvp", "dot", "reentrant", "intact", "linear", "overwrite"
    status: str
    max_rel: float = math.nan
    index: str = ""
    numerical: float = math.nan
    analytic: float = math.nan
    note: str = ""

    @property
    def label(self) -> str:
        """The tensor column: "W" for gradient rows, "W (jvp)", "(reentrant)", ... otherwise."""
        if self.check == "grad":
            return self.tensor
        return f"{self.tensor} ({self.check})" if self.tensor else f"({self.check})"


@dataclasses.dataclass
class Result:
    """All rows of one checked layer/config, and how many random points it took."""

    name: str
    rows: list
    attempts: int = 1

    @property
    def status(self) -> str:
        worst = PASS
        for r in self.rows:
            if _ORDER[r.status] > _ORDER[worst]:
                worst = r.status
        return worst

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def failures(self) -> list:
        return [r for r in self.rows if r.status == FAIL]

    def row(self, tensor, check="grad") -> Row:
        for r in self.rows:
            if r.tensor == tensor and r.check == check:
                return r
        raise KeyError(f"{self.name}: no row for tensor {tensor!r}, check {check!r}; "
                       f"have {[(r.tensor, r.check) for r in self.rows]}")


# ============================================================================ targets
def _check_f64(where, what, a):
    if not isinstance(a, np.ndarray) or a.dtype != np.float64:
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"gradcheck: {where}: {what} must be a float64 ndarray (finite differences "
                        f"need double precision), got {got}")


class Target:
    """What the checker needs from a checked object.

    ``tensors()`` — name -> array, perturbed in place; ``output()`` — forward at the current
    tensors; ``vjp(dout)`` — name -> gradient of ⟨dout, output⟩ at the point of the last output();
    ``jvp(directions)`` — forward mode (``has_jvp``); ``state()`` — everything backward must leave
    alone; ``root`` — the layer tree whose discrete state :mod:`gradcheck.kinks` watches;
    ``extras`` — the protocol checks that apply.
    """

    label = "target"
    root = None
    has_jvp = False
    extras: tuple = ("reentrant", "intact")

    def tensors(self) -> dict:
        raise NotImplementedError

    def output(self) -> np.ndarray:
        raise NotImplementedError

    def vjp(self, dout) -> dict:
        raise NotImplementedError

    def jvp(self, directions: dict):
        raise NotImplementedError(f"{self.label} has no jvp")

    def state(self) -> dict:
        return {}


class LayerTarget(Target):
    """A refnets Layer at input x: tensors are the input ("x") and ``layer.parameters()``."""

    has_jvp = True
    extras = ("reentrant", "intact", "linear", "overwrite")

    def __init__(self, layer, x, input_name="x"):
        self.layer = layer
        self.root = layer
        self.label = getattr(layer, "name", type(layer).__name__)
        _check_f64(self.label, "input", x)
        params = layer.parameters()
        for k, p in params.items():
            _check_f64(self.label, f"parameter {k!r}", p)
        self.input_name = input_name if input_name not in params else "<input>"
        self.x = x

    def tensors(self):
        return {self.input_name: self.x, **self.layer.parameters()}

    def output(self):
        return self.layer.forward(self.x)

    def vjp(self, dout):
        dx = self.layer.backward(dout)
        out = {self.input_name: dx}
        out.update(self.layer.gradients())
        return out

    def jvp(self, directions):
        dx = directions.get(self.input_name)
        dparams = {k: v for k, v in directions.items() if k != self.input_name}
        return self.layer.jvp(dx, dparams)

    def state(self):
        st = {"input": self.x}
        st.update({f"parameter {k}": p for k, p in self.layer.parameters().items()})
        for path, layer in _kinks._walk(self.layer):
            st[f"cache of {path} ({type(layer).__name__})"] = layer.cache
        return st


class FunctionTarget(Target):
    """A pure function ``fn(arg0, *rest) -> (value, d value / d arg0)``, e.g. a refnets loss.

    Only the first argument is differentiated (the others are targets/labels, kept fixed).
    """

    def __init__(self, fn, args):
        args = tuple(args)
        self.fn = fn
        self.args = args
        base = getattr(fn, "func", fn)  # functools.partial
        self.label = getattr(base, "__name__", type(fn).__name__)
        try:
            first = next(iter(inspect.signature(fn).parameters))
        except (TypeError, ValueError, StopIteration):
            first = "arg0"
        self.arg_name = first
        _check_f64(self.label, f"argument {first!r}", args[0])

    def tensors(self):
        return {self.arg_name: self.args[0]}

    def output(self):
        value, _ = self.fn(*self.args)
        return np.asarray(value, dtype=np.float64)

    def vjp(self, dout):
        _, grad = self.fn(*self.args)
        return {self.arg_name: np.asarray(dout) * grad}

    def state(self):
        return {f"argument {i}": a for i, a in enumerate(self.args)}


class PenaltyTarget(Target):
    """A penalty with ``value(params)`` and ``grads(params)`` (:class:`refnets.losses.L2Penalty`).

    ``params`` is a dict name -> array or a Layer (its ``parameters()``). Names the penalty's
    ``grads`` leaves out have gradient zero, which the finite differences then confirm.
    """

    def __init__(self, penalty, params):
        self.penalty = penalty
        self.label = type(penalty).__name__
        self.params = params.parameters() if hasattr(params, "parameters") else dict(params)
        for k, p in self.params.items():
            _check_f64(self.label, f"parameter {k!r}", p)

    def tensors(self):
        return self.params

    def output(self):
        return np.asarray(self.penalty.value(self.params), dtype=np.float64)

    def vjp(self, dout):
        g = self.penalty.grads(self.params)
        return {k: np.asarray(dout) * g[k] if k in g else np.zeros_like(p) for k, p in self.params.items()}

    def state(self):
        return {f"parameter {k}": p for k, p in self.params.items()}


def as_target(obj, inputs=None) -> Target:
    """Wrap what a registry factory returns: a Layer with its input array; a penalty (anything
    with ``value`` and ``grads``) with its parameters; a callable ``fn(*inputs) -> (value, grad)``
    with its argument tuple; or a ready :class:`Target` (``inputs`` ignored)."""
    from refnets.layers.base import Layer

    if isinstance(obj, Target):
        return obj
    if isinstance(obj, Layer):
        return LayerTarget(obj, inputs)
    if hasattr(obj, "value") and hasattr(obj, "grads"):
        return PenaltyTarget(obj, inputs)
    if callable(obj):
        return FunctionTarget(obj, inputs if isinstance(inputs, (tuple, list)) else (inputs,))
    raise TypeError(f"gradcheck: cannot check a {type(obj).__name__}: expected a refnets Layer, a "
                    f"penalty with value/grads, a callable returning (value, grad), or a Target")


# ============================================================================ helpers
def _snapshot(obj, depth=0):
    """Deep copy of the arrays inside tuples/lists/dicts; other objects kept by reference."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if depth > 6:
        return obj
    if isinstance(obj, tuple):
        return tuple(_snapshot(o, depth + 1) for o in obj)
    if isinstance(obj, list):
        return [_snapshot(o, depth + 1) for o in obj]
    if isinstance(obj, dict):
        return {k: _snapshot(v, depth + 1) for k, v in obj.items()}
    return obj


def _same_bits(a, b) -> bool:
    return (a.shape == b.shape and a.dtype == b.dtype
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def _differences(before, after, path, out, depth=0):
    """Append to ``out`` the paths where ``after`` differs (bitwise for arrays) from ``before``."""
    if isinstance(before, np.ndarray) or isinstance(after, np.ndarray):
        if not (isinstance(before, np.ndarray) and isinstance(after, np.ndarray) and _same_bits(before, after)):
            out.append(path)
        return
    if depth > 6:
        return
    if isinstance(before, (tuple, list)):
        if type(before) is not type(after) or len(before) != len(after):
            out.append(path)
            return
        for i, (b, a) in enumerate(zip(before, after)):
            _differences(b, a, f"{path}[{i}]", out, depth + 1)
        return
    if isinstance(before, dict):
        if not isinstance(after, dict) or before.keys() != after.keys():
            out.append(path)
            return
        for k in before:
            _differences(before[k], after[k], f"{path}[{k!r}]", out, depth + 1)
        return
    if before is after:
        return
    try:
        same = bool(before == after)
    except Exception:  # noqa: BLE001 - objects without a usable ==: identity decided above
        same = False
    if not same:
        out.append(path)


def _copy_grads(g: dict) -> dict:
    return {k: (None if v is None else np.array(v, dtype=np.float64, copy=True)) for k, v in g.items()}


def _index_label(shape, flat_index) -> str:
    if not shape:
        return "()"
    idx = np.unravel_index(int(flat_index), shape)
    return "(" + ", ".join(str(int(i)) for i in idx) + ")"


def _classify(rel, tol, crossed, gap, hull, crossing_is_kink=True, multi=False, jump=False):
    """Per-entry status (see the module docstring): PASS / KINK / FAIL as an object array, and
    the mask of entries with kink evidence (crossed a known kink, or a one-sided gap).

    With ``crossing_is_kink`` (one entry or one direction per step) a step across a known kink
    makes the entry KINK even if its error is small; without it (jvp: the crossing flag is shared
    by all output entries of the step) it only explains entries whose error is large. ``multi``
    marks steps that crossed two or more known kinks: KINK without the hull test (see kinks);
    ``jump`` marks one-sided gaps too large for curvature, treated like a crossing.
    """
    rel = np.asarray(rel)
    crossed = np.broadcast_to(np.asarray(crossed, dtype=bool), rel.shape)
    if crossing_is_kink:
        crossed = crossed | np.asarray(jump, dtype=bool)
    passed = (rel <= tol) & ~crossed if crossing_is_kink else rel <= tol
    multi = np.broadcast_to(np.asarray(multi, dtype=bool), rel.shape)
    kink = ~passed & ((crossed | gap) & hull | multi)
    status = np.full(rel.shape, FAIL, dtype=object)
    status[passed] = PASS
    status[kink] = KINK
    return status, crossed | gap


def _summarize(name, tensor, check, labels, num, ana, rel, status, d_plus, d_minus, paths, note="",
               evidence=None):
    """One Row from per-entry arrays: worst FAIL, else worst smooth entry; kinks in the note."""
    num, ana, rel = (np.asarray(a, dtype=np.float64).ravel() for a in (num, ana, rel))
    status = np.asarray(status, dtype=object).ravel()
    d_plus, d_minus = np.asarray(d_plus).ravel(), np.asarray(d_minus).ravel()
    fails, kink_mask = status == FAIL, status == KINK
    row_status = FAIL if fails.any() else KINK if kink_mask.any() else PASS
    notes = [note] if note else []
    pool = np.flatnonzero(fails) if fails.any() else np.flatnonzero(~kink_mask)
    if pool.size:
        w = pool[np.argmax(rel[pool])]
        max_rel = float(np.max(rel[np.flatnonzero(~kink_mask)])) if (~kink_mask).any() else math.nan
    else:  # every entry is a kink
        w, max_rel = int(np.flatnonzero(kink_mask)[0]), math.nan
    if evidence is not None and (fails & np.asarray(evidence).ravel()).any():
        notes.append(f"{int((fails & np.asarray(evidence).ravel()).sum())} entries cross a kink but the "
                     f"analytic value lies outside the one-sided slopes")
    if kink_mask.any():
        k = int(np.flatnonzero(kink_mask)[0])
        where = f" in layer {paths[k]!r}" if paths is not None and paths[k] else ""
        notes.append(f"{int(kink_mask.sum())} KINK, first at {labels[k]}{where}: one-sided "
                     f"{d_plus[k]:.4g} / {d_minus[k]:.4g}, analytic {ana[k]:.4g}")
    return Row(name, tensor, check, row_status, max_rel, labels[w], float(num[w]), float(ana[w]),
               "; ".join(notes))


# ============================================================================ the checks
class _Checker:
    """One attempt at one point: runs all checks on a Target and collects Rows."""

    def __init__(self, target, name, rng, step, tol, fast, entries, directions):
        self.t, self.name, self.rng = target, name, rng
        self.step, self.tol, self.fast = float(step), float(tol), bool(fast)
        self.entries, self.directions = entries, int(directions)
        self.base = {k: v.copy() for k, v in target.tensors().items()}
        self.rows: list[Row] = []

    # ---------------------------------------------------------------- basics
    def restore(self):
        for k, v in self.t.tensors().items():
            v[...] = self.base[k]

    def out(self):
        return np.array(self.t.output(), dtype=np.float64, copy=True)

    def F(self):
        """(⟨dout, f⟩, discrete kink state) at the current tensors."""
        out = self.t.output()
        return float(np.dot(self.dout.ravel(), np.asarray(out, dtype=np.float64).ravel())), \
            _kinks.signature(self.t.root)

    def classify(self, rel, crossed, dp, dm, ana, den, multi, crossing_is_kink=True):
        """Per-entry statuses from the errors, the crossings and the one-sided slopes (:func:`_classify`)."""
        st = self.step
        return _classify(rel, self.tol, crossed, _kinks.gap_evidence(dp, dm, den, st),
                         _kinks.in_hull(ana, dp, dm, den, st), crossing_is_kink=crossing_is_kink,
                         multi=multi, jump=_kinks.gap_evidence(dp, dm, den, st, _kinks.KINK_JUMP))

    def h_for(self, arr):
        return self.step * max(1.0, _rms(arr))

    # ---------------------------------------------------------------- run
    def run(self, jvp=True, extras=True):
        self.restore()
        out0 = self.out()
        self.dout = np.asarray(self.rng.standard_normal(out0.shape), dtype=np.float64)
        self.S = float(np.sum(np.abs(self.dout * out0)))
        self.f0, self.sig0 = self.F()
        self.nearest = _kinks.nearest_kink(self.t.root)
        self.grads = _copy_grads(self.t.vjp(self.dout))
        for tname, arr in self.t.tensors().items():
            g = self.grads.get(tname)
            if g is None:
                self.rows.append(Row(self.name, tname, "grad", FAIL, note="backward returned no gradient"))
                continue
            if g.shape != arr.shape:
                self.rows.append(Row(self.name, tname, "grad", FAIL,
                                     note=f"gradient has shape {g.shape}, tensor has {arr.shape}"))
                continue
            self.restore()
            if arr.size == 0:
                self.rows.append(Row(self.name, tname, "grad", PASS, note="empty tensor"))
                continue
            self.rows.append(self.directional(tname, arr, g) if self.fast else self.entrywise(tname, arr, g))
        if jvp and self.t.has_jvp:
            self.forward_mode()
        if extras:
            for check in self.t.extras:
                self.restore()
                self.rows.append(getattr(self, "check_" + check)())
        self.restore()
        return self.rows

    # ---------------------------------------------------------------- reverse mode
    def entrywise(self, tname, arr, g):
        n = arr.size
        if self.entries is not None and n > self.entries:
            idx = np.sort(self.rng.choice(n, size=int(self.entries), replace=False))
        else:
            idx = np.arange(n)
        h = self.h_for(arr)
        num, dp, dm = (np.empty(idx.size) for _ in range(3))
        crossed, multi = np.zeros(idx.size, dtype=bool), np.zeros(idx.size, dtype=bool)
        paths = [""] * idx.size
        for j, fi in enumerate(idx):
            ii = np.unravel_index(int(fi), arr.shape)
            old = float(arr[ii])
            arr[ii] = old + h
            hp = float(arr[ii]) - old
            fp, sp = self.F()
            arr[ii] = old - h
            hm = old - float(arr[ii])
            fm, sm = self.F()
            arr[ii] = old
            num[j] = (fp - fm) / (hp + hm)
            dp[j], dm[j] = (fp - self.f0) / hp, (self.f0 - fm) / hm
            crossed[j], multi[j], paths[j] = self.crossed(sp, sm)
        ana = g.ravel()[idx]
        nu = EPS * self.S / h
        tau = max(_rms(g), _rms(num), NOISE_FACTOR * nu)
        rel = rel_error(num, ana, tau)
        den = np.maximum(np.abs(num) + np.abs(ana), tau)
        status, ev = self.classify(rel, crossed, dp, dm, ana, den, multi)
        labels = [_index_label(arr.shape, fi) for fi in idx]
        note = f"{idx.size} of {n} entries" if idx.size < n else ""
        row = _summarize(self.name, tname, "grad", labels, num, ana, rel, status, dp, dm, paths, note, ev)
        if row.status == KINK and self.nearest is not None:
            row.note += f"; nearest known kink of the point: {self.nearest:.3g} away (h = {h:.3g})"
        return row

    def crossed(self, sig_plus, sig_minus):
        """(crossed a known kink, crossed two or more, path of the first layer) for a ± step."""
        np_, pp = _kinks.crossings(self.sig0, sig_plus)
        nm, pm = _kinks.crossings(self.sig0, sig_minus)
        return np_ + nm > 0, np_ + nm > 1, pp or pm or ""

    def _along(self, arr, u, h):
        """Outputs at arr ± h·u and the kink crossings (see :meth:`crossed`); arr restored after."""
        t0 = arr.copy()
        arr[...] = t0 + h * u
        op, sp = self.out(), _kinks.signature(self.t.root)
        arr[...] = t0 - h * u
        om, sm = self.out(), _kinks.signature(self.t.root)
        arr[...] = t0
        return op, om, self.crossed(sp, sm)

    def directional(self, tname, arr, g):
        h = self.h_for(arr)
        k = max(1, self.directions)
        num, ana, dp, dm = (np.empty(k) for _ in range(4))
        crossed, multi = np.zeros(k, dtype=bool), np.zeros(k, dtype=bool)
        paths = [""] * k
        gnorm = float(np.linalg.norm(g))
        for j in range(k):
            u = self.rng.standard_normal(arr.shape)
            op, om, (crossed[j], multi[j], paths[j]) = self._along(arr, u, h)
            fp = float(np.dot(self.dout.ravel(), op.ravel()))
            fm = float(np.dot(self.dout.ravel(), om.ravel()))
            num[j] = (fp - fm) / (2 * h)
            dp[j], dm[j] = _kinks.one_sided(fp, self.f0, fm, h)
            ana[j] = float(np.dot(g.ravel(), u.ravel()))
        tau = max(gnorm, NOISE_FACTOR * EPS * self.S / h)
        rel = rel_error(num, ana, tau)
        den = np.maximum(np.abs(num) + np.abs(ana), tau)
        status, ev = self.classify(rel, crossed, dp, dm, ana, den, multi)
        return _summarize(self.name, tname, "grad", [f"u{j}" for j in range(k)], num, ana, rel, status,
                          dp, dm, paths, f"{k} random directions", ev)

    # ---------------------------------------------------------------- forward mode
    def forward_mode(self):
        for tname, arr in self.t.tensors().items():
            if arr.size == 0:
                continue
            self.restore()
            u = self.rng.standard_normal(arr.shape)
            out0 = self.out()
            try:
                J = self.t.jvp({tname: u})
            except NotImplementedError as e:
                self.rows.append(Row(self.name, "", "jvp", SKIP, note=f"no jvp: {e}"))
                return
            J = np.zeros_like(out0) if J is None else np.array(J, dtype=np.float64, copy=True)
            if J.shape != out0.shape:
                self.rows.append(Row(self.name, tname, "jvp", FAIL,
                                     note=f"jvp has shape {J.shape}, output has {out0.shape}"))
                continue
            h = self.h_for(arr)
            op, om, (crossed, multi, path) = self._along(arr, u, h)
            fd = (op - om) / (2 * h)
            dp, dm = _kinks.one_sided(op, out0, om, h)
            nu = EPS * float(np.max(np.abs(out0), initial=0.0)) / h
            tau = max(_rms(J), _rms(fd), NOISE_FACTOR * nu)
            rel = rel_error(fd, J, tau)
            den = np.maximum(np.abs(fd) + np.abs(J), tau)
            status, ev = self.classify(rel, crossed, dp, dm, J, den, multi, crossing_is_kink=False)
            labels = [_index_label(out0.shape, i) for i in range(out0.size)]
            self.rows.append(_summarize(self.name, tname, "jvp", labels, fd, J, rel, status, dp, dm,
                                        [path] * out0.size, "output entries vs central differences along u", ev))
            # ⟨J u, v⟩ = ⟨u, Jᵀ v⟩ with v = dout: both analytic, equal to rounding.
            g = self.grads[tname]
            a = float(np.dot(J.ravel(), self.dout.ravel()))
            b = float(np.dot(g.ravel(), u.ravel()))
            floor = max(float(np.sum(np.abs(J * self.dout))), float(np.sum(np.abs(g * u))), TINY)
            r = abs(a - b) / max(abs(a) + abs(b), floor)
            self.rows.append(Row(self.name, tname, "dot", PASS if r <= EXACT_TOL else FAIL, r, "u", a, b,
                                 "<J u, dout> (numerical col.) vs <u, backward(dout)> (analytic col.)"))

    # ---------------------------------------------------------------- protocol checks
    def _vjp(self, dout):
        return _copy_grads(self.t.vjp(dout))

    def check_reentrant(self):
        self.t.output()
        g1 = self._vjp(self.dout)
        g2 = self._vjp(self.dout)
        bad = [k for k in g1 if g2.get(k) is None or g1[k] is None or not _same_bits(g1[k], g2[k])]
        err = 0.0
        for k in bad:
            if g1[k] is not None and g2.get(k) is not None and g1[k].shape == g2[k].shape:
                err = max(err, float(np.max(np.abs(g1[k] - g2[k]), initial=0.0))
                          / max(float(np.max(np.abs(g1[k]), initial=0.0)), TINY))
            else:
                err = math.inf
        return Row(self.name, "", "reentrant", FAIL if bad else PASS, err, ",".join(bad),
                   note=("second backward differs in " + ", ".join(bad)) if bad
                   else "backward twice: bitwise identical")

    def check_intact(self):
        self.t.output()
        before = _snapshot(self.t.state())
        dout = self.dout.copy()
        self.t.vjp(self.dout)
        after = _snapshot(self.t.state())
        diffs = []
        for k in before:
            _differences(before[k], after.get(k), k, diffs)
        if not _same_bits(dout, self.dout):
            diffs.append("dout")
        return Row(self.name, "", "intact", FAIL if diffs else PASS,
                   note=("backward modified " + ", ".join(diffs)) if diffs
                   else "input, parameters, dout and caches bitwise unchanged by backward")

    def _two_douts(self):
        shape = self.dout.shape
        return self.rng.standard_normal(shape), self.rng.standard_normal(shape)

    def check_linear(self):
        d1, d2 = self._two_douts()
        a, b = float(self.rng.uniform(0.5, 2.0)), -float(self.rng.uniform(0.5, 2.0))
        self.t.output()
        g1, g2, g12 = self._vjp(d1), self._vjp(d2), self._vjp(a * d1 + b * d2)
        worst, where = 0.0, ""
        for k in g12:
            if g1.get(k) is None or g2.get(k) is None or g12[k] is None:
                continue
            scale = (abs(a) * float(np.max(np.abs(g1[k]), initial=0.0))
                     + abs(b) * float(np.max(np.abs(g2[k]), initial=0.0)))
            err = float(np.max(np.abs(g12[k] - (a * g1[k] + b * g2[k])), initial=0.0)) / max(scale, TINY)
            if err > worst or not where:
                worst, where = err, k
        return Row(self.name, "", "linear", PASS if worst <= EXACT_TOL else FAIL, worst, where,
                   note=f"backward(a d1 + b d2) vs a backward(d1) + b backward(d2), a={a:.3g}, b={b:.3g}")

    def check_overwrite(self):
        d1, d2 = self._two_douts()
        self.t.output()
        first = self._vjp(d2)
        self._vjp(d1)
        again = self._vjp(d2)
        bad = [k for k in first if first[k] is None or again.get(k) is None or not _same_bits(first[k], again[k])]
        return Row(self.name, "", "overwrite", FAIL if bad else PASS, index=",".join(bad),
                   note=("gradients depend on an earlier backward (accumulated?): " + ", ".join(bad)) if bad
                   else "backward(d2) after backward(d1) equals backward(d2): overwritten, not accumulated")


def check_target(target: Target, *, name=None, rng=None, step=DEFAULT_STEP, tol=PASS_TOL, fast=False,
                 entries=None, directions=3, jvp=True, extras=True) -> list:
    """Run every check once, at the target's current point (no redraw); returns the Rows.

    Parameters
    ----------
    target : a :class:`Target` (see :func:`as_target`).
    rng : None, int or Generator for dout, the sampled entries and the directions (None: seed 0).
    step : h relative to max(1, rms of the tensor).
    tol : PASS threshold on the relative error of smooth entries.
    fast : random directions instead of every entry.
    entries : in full mode, check only this many random entries per tensor (None: all).
    directions : in fast mode, directions per tensor.
    jvp, extras : run the forward-mode and protocol checks.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    if entries is not None and int(entries) < 1:
        raise ValueError(f"gradcheck: entries must be a positive integer or None, got {entries!r}")
    if not step > 0:
        raise ValueError(f"gradcheck: step must be positive, got {step!r}")
    c = _Checker(target, name or target.label, rng, step, tol, fast, entries, directions)
    with _one_numba_thread():
        return c.run(jvp=jvp, extras=extras)


@contextlib.contextmanager
def _one_numba_thread():
    """Run Numba's parallel kernels on one thread while checking (a thread-local setting, restored
    after). The checker makes thousands of calls on tiny arrays, where starting a parallel region
    costs more than the work: on 2 loaded cores a small Conv2d forward takes ~50 µs on one thread
    and milliseconds on two. Results do not depend on it: refnets' kernels reduce in a fixed order."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a refnets dependency
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def check_layer(layer, x, *, name=None, **opts) -> Result:
    """Check a Layer at input x, once (a KINK stays a KINK: no redraw)."""
    target = LayerTarget(layer, x)
    return Result(name or target.label, check_target(target, name=name, **opts))


def check_function(fn, *args, name=None, **opts) -> Result:
    """Check ``fn(arg0, *rest) -> (value, grad wrt arg0)`` (a loss) at the given arguments, once."""
    target = FunctionTarget(fn, args)
    return Result(name or target.label, check_target(target, name=name, **opts))


def _attempt_rngs(seed, name, attempt):
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), int(attempt)])
    return [np.random.default_rng(s) for s in ss.spawn(2)]


def check(factory, *, name="check", seed=0, max_redraws=3, **opts) -> Result:
    """Check ``factory(rng) -> (layer_or_callable, inputs)`` at a random point; redraw on KINK.

    Attempt a (0, 1, ...) builds the object and its inputs from a generator seeded by
    (seed, name, a), so a run is reproducible and independent of which other entries run.
    While an attempt has KINK rows and no FAIL, a new point is drawn, at most ``max_redraws``
    times; the Result holds the rows of the last attempt and the number of attempts.
    """
    rows, attempts = [], 0
    for attempt in range(int(max_redraws) + 1):
        f_rng, c_rng = _attempt_rngs(seed, name, attempt)
        obj, inputs = factory(f_rng)
        rows = check_target(as_target(obj, inputs), name=name, rng=c_rng, **opts)
        attempts = attempt + 1
        statuses = {r.status for r in rows}
        if FAIL in statuses or KINK not in statuses:
            break
    if attempts > 1:
        for r in rows:
            if r.check == "grad":
                r.note = "; ".join(filter(None, [r.note, f"redrawn {attempts - 1}x after KINK"]))
    return Result(name, rows, attempts)
