"""Numba's thread count, set for a block and restored: the serial path for small work.

Numba's parallel kernels spend more on thread hand-off than on arithmetic when the work is tiny
(measured: 12 ms against 0.2 ms per call for the Allen-Zhu CNN's convolutions on a busy 2-core
machine), and a sweep that already runs one job per core gains nothing from threads inside a job.
The kernels' results depend on their fixed slots only, never on the thread count, so the serial
path gives the same bits.
"""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def serial_numba():
    """Run Numba kernels on one thread inside the block (the previous count restored afterwards)."""
    try:
        import numba
        old = numba.get_num_threads()
    except (ImportError, RuntimeError):  # pragma: no cover
        yield
        return
    if old == 1:
        yield
        return
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(old)
