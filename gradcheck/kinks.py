"""Kink and max-tie detection for finite-difference gradient checks.

ReLU, leaky ReLU and max pooling are piecewise smooth. Where the ± step of a central difference
straddles a kink (a ReLU input crossing 0, a max-pool winner changing), the difference quotient is
a mixture of the two one-sided slopes and disagrees with the analytic gradient by O(1) although
the backward is right. CS231n's notes warn about this; torch.autograd.gradcheck and JAX's
check_grads do not detect it. Here every finite-difference evaluation is tested in two ways.

1. **Known kinks (structural, exact).** After each forward the checker records the *discrete
   state* of every layer in the tree (:func:`signature`):

   * an :class:`~refnets.layers.Activation` with ``kinks`` contributes the pattern ``z > k`` for
     each kink k of its cached input z (the side of the kink every entry is on);
   * any integer or boolean array in a layer's cache is discrete bookkeeping (max-pool winner
     indices ``argmax``, global max-pool ``idx``) and contributes itself, unless the layer
     declares ``smooth = True`` (average pooling's masks are constant bookkeeping, not kinks);
   * a layer may define ``kink_signature()`` returning arrays of its own.

   A smooth layer that caches a value-dependent integer array without declaring ``smooth`` would
   be seen as crossing a kink: the entry is reported KINK (never PASS or FAIL) and redrawn.

   If the state at x + h·u or x − h·u differs from the state at x, the step crossed a known kink
   (:func:`crossings` counts them). This catches kinks of inner layers of any container, and a
   crossing however close to the end of the step it happens.

2. **Unknown kinks (generic, one-sided differences).** With f₊ = F(x + h·u), f₀ = F(x),
   f₋ = F(x − h·u), the one-sided slopes are d₊ = (f₊ − f₀)/h and d₋ = (f₀ − f₋)/h. For a smooth F
   they agree to O(h): d₊ − d₋ = h·F″ + rounding. Across a kink they differ by O(1) (the jump of
   F′ times the fraction of the step beyond the kink). :func:`gap_evidence` flags
   |d₊ − d₋| > 1e-4 · scale as evidence that explains a failing entry, and > 1e-2 · scale as a
   kink outright, even where the central difference happens to agree (|x| at 0); the numbers
   are for the default step 1e-6 and grow in proportion to it (``KINK_GAP``, ``KINK_JUMP``),
   like the smooth gap itself. This costs nothing: f₀ is computed once per tensor.

A flagged entry is reported KINK only if the analytic value is **consistent** with a kink
(:func:`in_hull`): it lies between the two one-sided slopes, widened by 1e-4 · scale at the
default step (``HULL_SLACK``; one-sided differences are only O(h) accurate). That is the Clarke subdifferential of a
one-dimensional piecewise-smooth function, so every valid choice at a tie (first winner, last
winner, split) passes, while a wrong backward does not become a KINK: a planted 2·ReLU′ at a
kink is still a FAIL. The slack is not a loosened tolerance: entries without kink evidence are
held to the full tolerance, and KINK leads to a redraw of the input, never to a PASS.

The hull test is exact when the step crosses one kink (and for any number of kinks of a convex
or concave function, such as one max-pool output). When the step crosses two or more known kinks
at once (a random direction through several exact ties, one pixel tied in two overlapping
windows), a sum of valid one-sided choices can lie outside the hull of the total's one-sided
slopes, so the entry cannot be judged at this point: it is reported KINK without the hull test,
and the input is redrawn. For unknown kinks (no signature) the count is not available and the
hull test is applied as is.

:func:`nearest_kink` reports how far the last forward was from a known kink (activations' kink
distance, pooling layers' ``max_margin()``), for the notes of KINK rows.
"""
from __future__ import annotations

import numpy as np

# Thresholds in units of step · scale (step: h relative to the tensor, 1e-6 by default; scale:
# the gradient scale of the entry). For a smooth F the one-sided gap is h·|F″|, i.e. about
# step · (|F″|/|F′|) · scale, so the thresholds move with the step and a huge step cannot turn
# smooth curvature into a "kink".
# A gap above KINK_GAP explains a large central-difference error as a kink (1e-4 at step 1e-6).
KINK_GAP = 1e2
# A gap above KINK_JUMP is a kink even where the central difference happens to agree (|x| at 0:
# both slopes average to 0); 1e-2 at step 1e-6.
KINK_JUMP = 1e4
# Widening of the one-sided hull (one-sided slopes are only O(h) accurate); 1e-4 at step 1e-6.
HULL_SLACK = 1e2


def _sublayers(layer) -> dict:
    """A layer's sub-layers: ``children()``, plus Layers held in attributes (directly, in lists,
    tuples or dicts), so models that wrap an internal network without declaring it are walked too."""
    from refnets.layers.base import Layer

    subs = {}
    children = getattr(layer, "children", None)
    if callable(children):
        subs.update({str(k): v for k, v in children().items()})
    for attr, v in sorted(getattr(layer, "__dict__", {}).items(), key=lambda kv: (kv[0].startswith("_"), kv[0])):
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, (list, tuple)) else None
        if isinstance(v, Layer):
            subs.setdefault(attr, v)
        elif items is not None:
            for k, item in items:
                if isinstance(item, Layer):
                    subs.setdefault(f"{attr}[{k}]", item)
    return subs


def _walk(layer, path="", seen=None):
    """Yield (dotted path, layer) over a layer tree, root first, each layer once."""
    seen = set() if seen is None else seen
    if id(layer) in seen:
        return
    seen.add(id(layer))
    yield path or "<root>", layer
    for name, child in _sublayers(layer).items():
        yield from _walk(child, f"{path}.{name}" if path else name, seen)


def _discrete_arrays(obj, out, depth=0):
    """Collect integer/boolean ndarrays found in a cache (tuples, lists, dicts), copied."""
    if depth > 3:
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "iub":
            out.append(obj.copy())
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _discrete_arrays(o, out, depth + 1)
    elif isinstance(obj, dict):
        for o in obj.values():
            _discrete_arrays(o, out, depth + 1)


def signature(root) -> list:
    """The discrete state of the last forward of every layer in the tree of ``root``.

    Returns a list of (path, array) pairs; two signatures differ iff some ReLU-type input changed
    side of a kink or some discrete choice stored in a cache (e.g. a max-pool winner) changed.
    Objects that are not refnets layers (losses, penalties) have an empty signature.
    """
    from refnets.layers.activations import Activation

    sig = []
    if root is None or not hasattr(root, "cache"):
        return sig
    for path, layer in _walk(root):
        hook = getattr(layer, "kink_signature", None)
        if callable(hook):
            sig.extend((path, np.asarray(a).copy()) for a in hook())
            continue
        cache = getattr(layer, "cache", None)
        if cache is None or getattr(layer, "smooth", None) is True:
            continue
        if isinstance(layer, Activation):
            z = cache[0]
            sig.extend((path, z > k) for k in layer.kinks)
            continue
        arrays = []
        _discrete_arrays(cache, arrays)
        sig.extend((path, a) for a in arrays)
    return sig


def crossings(sig_a, sig_b) -> tuple[int, str | None]:
    """How many discrete choices differ between two signatures (kinks crossed: a ReLU input that
    changed side, a max-pool window whose winner changed), and the path of the first such layer."""
    if len(sig_a) != len(sig_b):
        return 2, "<structure>"
    count, first = 0, None
    for (pa, a), (pb, b) in zip(sig_a, sig_b):
        if pa != pb or a.shape != b.shape:
            n = 2
        else:
            n = int(np.count_nonzero(a != b))
        if n and first is None:
            first = pa
        count += n
    return count, first


def nearest_kink(root) -> float | None:
    """Distance of the last forward from the nearest known kink, over the tree of ``root``.

    Activations with ``kinks``: min |z − k| over their cached inputs. Layers with ``max_margin()``
    (max pooling): the smallest winner/runner-up gap. None when the tree has no known kinks.
    """
    from refnets.layers.activations import Activation

    best = None
    if root is None or not hasattr(root, "cache"):
        return None
    for _, layer in _walk(root):
        if getattr(layer, "cache", None) is None:
            continue
        d = None
        if isinstance(layer, Activation) and layer.kinks:
            z = layer.cache[0]
            if z.size:
                d = float(min(np.min(np.abs(z - k)) for k in layer.kinks))
        elif callable(getattr(layer, "max_margin", None)):
            d = float(layer.max_margin())
        if d is not None:
            best = d if best is None else min(best, d)
    return best


def one_sided(f_plus, f_0, f_minus, h):
    """The forward and backward one-sided slopes (d₊, d₋) = ((f₊ − f₀)/h, (f₀ − f₋)/h)."""
    return (f_plus - f_0) / h, (f_0 - f_minus) / h


def gap_evidence(d_plus, d_minus, scale, step, level=KINK_GAP):
    """True where the one-sided slopes differ by more than ``level`` · step · scale (a kink, not
    curvature). ``KINK_GAP`` (default) is enough to explain a large central-difference error as
    a kink; ``KINK_JUMP`` marks a kink even where the central difference agrees."""
    return np.abs(d_plus - d_minus) > level * step * scale


def in_hull(analytic, d_plus, d_minus, scale, step):
    """True where the analytic value lies between the one-sided slopes, widened by
    ``HULL_SLACK`` · step · scale."""
    slack = HULL_SLACK * step * scale
    lo = np.minimum(d_plus, d_minus) - slack
    hi = np.maximum(d_plus, d_minus) + slack
    return (analytic >= lo) & (analytic <= hi)
