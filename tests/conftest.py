"""Shared test helpers: seeded generators and a small central-difference checker for unit tests
(the full checker with kink detection and a command line is the top-level ``gradcheck`` package)."""
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():
    # On a failing hypothesis test the hypothesis pytest plugin imports this module, whose libcst
    # import warns (DeprecationWarning); under -W error that would replace the failure report by
    # an INTERNALERROR. Importing it here, once, with that warning silenced, keeps reports readable.
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # hypothesis absent (the test extra not installed), or another version
        pass


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def numeric_grad(f, x, h=1e-6):
    """Central differences of the scalar f() with respect to the array x (modified in place, restored)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


def rel_error(a, b):
    """max |a−b| / max(|a|+|b|), the CS231n relative error taken over the whole tensor's scale."""
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.max(np.abs(a) + np.abs(b)), 1e-12)
    return float(np.max(np.abs(a - b)) / scale)
