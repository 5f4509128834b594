"""gradcheck: central finite differences in float64 for every refnets layer, loss and penalty.

* :mod:`gradcheck.core` — the checker: full mode (every entry, or a sample), fast mode (random
  directions, vᵀ(J_num u) against (vᵀJ)u), forward mode (jvp against differences and
  ⟨Ju, v⟩ = ⟨u, Jᵀv⟩), protocol checks (reentrant, intact cache and inputs, linear in dout,
  gradients overwritten). Its docstring defines the relative error and the step size.
* :mod:`gradcheck.kinks` — ReLU kinks and max-pool ties: known kinks from the layers' discrete
  state, unknown ones from one-sided differences; reported as KINK, never hidden by a tolerance.
* :mod:`gradcheck.registry` — every public layer with small random configurations, the losses,
  L2Penalty and small networks; ``register(name, factory)`` adds a model in one line.
* ``python -m gradcheck`` (``refnets gradcheck``) — the command line; :func:`main` for callers.

Example::

    import numpy as np, refnets as rn, gradcheck
    res = gradcheck.check_layer(rn.Dense(4, 3, bias=True), np.random.default_rng(0).standard_normal((2, 4)))
    assert res.status == "PASS", res.failures()
"""
from .core import (DEFAULT_STEP, EXACT_TOL, FAIL, KINK, PASS, PASS_TOL, SKIP, FunctionTarget, LayerTarget,
                   PenaltyTarget, Result, Row, Target, as_target, check, check_function, check_layer,
                   check_target, rel_error)
from .registry import REGISTRY, register, run, select

__all__ = [
    "DEFAULT_STEP", "EXACT_TOL", "FAIL", "KINK", "PASS", "PASS_TOL", "SKIP", "FunctionTarget", "LayerTarget",
    "PenaltyTarget", "Result", "Row", "Target", "as_target", "check", "check_function", "check_layer",
    "check_target", "rel_error", "REGISTRY", "register", "run", "select", "main",
]


def main(argv=None) -> int:
    """The command line (see :mod:`gradcheck.__main__`); returns the exit status."""
    from .__main__ import main as _main

    return _main(argv)
