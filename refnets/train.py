"""The training loop: full-batch GD or minibatch SGD, with a trace and divergence handling.

A run that produces a NaN or inf in the loss or the parameters stops with
:class:`TrainingDiverged`, which names the iteration, the last finite loss and a hint, and
carries the trace recorded so far (nothing is lost). The parameters are put back to those of
the last iteration whose loss was finite.
"""
from __future__ import annotations

import numpy as np

from ._validate import NonFiniteError, all_finite
from .layers.base import as_rng


class TrainingDiverged(RuntimeError):
    """Raised when the loss or a parameter becomes non-finite.

    Attributes: ``iteration``, ``last_finite_loss``, ``hint``, ``trace``.
    """

    def __init__(self, iteration, last_finite_loss, hint, trace):
        self.iteration, self.last_finite_loss, self.hint, self.trace = iteration, last_finite_loss, hint, trace
        last = (f"last finite loss {last_finite_loss:.6g}" if np.isfinite(last_finite_loss)
                else "no finite loss before it")
        super().__init__(f"training diverged at iteration {iteration} ({last}); {hint}")


class Trace(dict):
    """Lists of recorded values by key ("step", "loss", plus whatever the callback adds)."""

    def record(self, **values):
        for k, v in values.items():
            self.setdefault(k, []).append(v)

    def arrays(self) -> dict:
        return {k: np.asarray(v) for k, v in self.items()}


def loss_and_grads(model, loss, x, y, penalty=None, scale=1.0):
    """One forward/backward: returns (loss value, gradients by name); penalty and scale applied."""
    pred = model.forward(x)
    value = loss.forward(pred, y)
    model.backward(loss.backward())
    grads = model.gradients()
    if scale != 1.0:
        grads = {k: scale * g for k, g in grads.items()}
    if penalty is not None:
        params = model.parameters()
        value += penalty.value(params)
        for k, g in penalty.grads(params).items():
            grads[k] = grads[k] + g
    return value, grads


def _step_hint(lr, step_bound):
    """The step size against the theorem's bound (when the caller knows one)."""
    if lr is None:
        return "the step size may be too large; try a smaller one"
    if step_bound is None:
        return f"the step size {lr:.3g} is probably too large; try a smaller one"
    step_bound = float(step_bound)
    if lr > step_bound:
        return (f"the step size {lr:.3g} is probably too large (the theorem's bound is {step_bound:.3g}); "
                f"it is {lr / step_bound:.3g}x the bound: try a step below {step_bound:.3g}")
    return (f"the step size {lr:.3g} is within the theorem's bound {step_bound:.3g} ({lr / step_bound:.3g}x "
            f"the bound), so another assumption of the theorem (width, initialisation, data) may not hold "
            f"here; try a smaller step or check the setup")


def _diverged(k, last, optimizer, step_bound, trace):
    lr = getattr(optimizer, "lr", None)
    hint = _step_hint(None if lr is None else float(lr), step_bound)
    if k == 0:
        hint += ". The loss at the initial parameters is not finite; the trace is empty"
    else:
        hint += (f". The trace up to iteration {k - 1} is in .trace; "
                 f"the parameters are those of iteration {k - 1}")
    raise TrainingDiverged(k, last, hint, trace)


def _restore(params, before):
    """Put back the parameters of the last iteration whose loss was finite."""
    if before is not None:
        for name, p in params.items():
            p[...] = before[name]


def train(model, loss, x, y, optimizer, steps, batch_size=None, penalty=None, rng=None,
          record_every=1, callback=None, stop_loss=None, step_bound=None):
    """Train ``model`` for ``steps`` updates and return a :class:`Trace`.

    Parameters
    ----------
    model : Layer; loss : a :class:`refnets.losses.Loss`; x, y : the training set.
    optimizer : a :class:`refnets.optim.Optimizer` bound to ``model``.
    batch_size : None for full-batch GD; b for SGD with b samples drawn without replacement
        each step. With a summed loss the gradient is scaled by n/b, so it is an unbiased
        estimate of the full gradient (Allen-Zhu et al. 2019's SGD rule).
    penalty : optional :class:`refnets.losses.L2Penalty`, added to loss and gradients.
    record_every : the loss is recorded at every step; ``callback(step, model, trace)`` is
        called at step 0 and every ``record_every`` steps (and at the last) to record more.
    stop_loss : stop early once the loss is ≤ this value.
    step_bound : optional theoretical step-size bound, quoted in the divergence hint.

    The trace holds "step" and "loss" (the loss *before* each update, so trace["loss"][k] is
    L(θ(k))), and "final_loss".
    """
    rng = as_rng(rng)
    # Non-finite data is a bad input, not a divergence: refuse it before the first step.
    for what, arr in (("x", x), ("y", y)):
        if isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ValueError(f"train: the training data {what} contains non-finite values "
                             f"(first at index {bad}: {arr[bad]}); clean the data before training")
    n = x.shape[0]
    trace = Trace()
    last = np.nan
    params = model.parameters()
    before = None
    for k in range(steps + 1):
        if batch_size is None or batch_size >= n:
            xb, yb, scale = x, y, 1.0
        else:
            idx = rng.choice(n, size=batch_size, replace=False)
            xb, yb = x[idx], np.asarray(y)[idx]
            scale = n / batch_size if getattr(loss, "reduction", "sum") == "sum" else 1.0
        # Overflow is detected below and reported as divergence, not as a stray warning.
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                value, grads = loss_and_grads(model, loss, xb, yb, penalty, scale)
        except NonFiniteError:
            value, grads = np.inf, {}
        if not np.isfinite(value) or not all(all_finite(g) for g in grads.values()):
            _restore(params, before)
            _diverged(k, last, optimizer, step_bound, trace)
        last = value
        trace.record(step=k, loss=value)
        if callback is not None and (k % record_every == 0 or k == steps):
            callback(k, model, trace)
        if k == steps or (stop_loss is not None and value <= stop_loss):
            break
        before = {name: p.copy() for name, p in params.items()}
        with np.errstate(over="ignore", invalid="ignore"):
            optimizer.step(grads)
        if not all(all_finite(p) for p in params.values()):
            _restore(params, before)
            _diverged(k + 1, last, optimizer, step_bound, trace)
    trace["final_loss"] = last
    return trace
