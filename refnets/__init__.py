"""refnets: reference implementations of deep-learning optimization theory, in NumPy.

Four papers, every network, training algorithm, data distribution and theorem quantity:
Du et al. 2019, Allen-Zhu, Li & Song 2019, Brutzkus & Globerson 2021, Kohler, Krzyżak & Walter 2024.
"""
__version__ = "0.1.0"

import os as _os

# numpy's OpenBLAS keeps its threads spinning for 2^28 cycles (~0.1 s) after every product before they
# sleep. On a 2-core machine they take the cores from whatever runs next: the Numba kernels (measured:
# the convolutional ResNet's NTK, 0.26 s → 0.16 s with 2^4) or another library. OpenBLAS reads this
# when it loads, so it takes effect when refnets is imported before numpy (the command line, the
# benchmarks) and in processes started later (sweep workers); otherwise set OPENBLAS_THREAD_TIMEOUT=4
# yourself. A value already set is kept.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import init  # noqa: F401
from .layers import *  # noqa: F401,F403
