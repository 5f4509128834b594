"""refnets: reference implementations of deep-learning optimization theory, in NumPy.

Four papers, every network, training algorithm, data distribution and theorem quantity:
Du et al. 2019, Allen-Zhu, Li & Song 2019, Brutzkus & Globerson 2021, Kohler, Krzyżak & Walter 2024.
"""
__version__ = "0.1.0"

from . import init  # noqa: F401
from .layers import *  # noqa: F401,F403
