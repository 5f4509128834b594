"""Start-up time: ``import refnets`` plus the first convolution call (Numba compilation), cold
(an empty Numba cache) and warm (the cache filled by the cold run).

    python benchmarks/startup.py [--json FILE]

Target (performance issue): cold ≤ 15 s, warm ≤ 1 s.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

SNIPPET = """
import numpy as np, refnets
from refnets.layers.conv import Conv2d
from refnets.layers.pooling import MaxPool2d
x = np.random.default_rng(0).standard_normal((2, 3, 9, 9))
c = Conv2d(3, 4, 3, padding=1)
p = MaxPool2d(2)
y = p.forward(c.forward(x))
c.backward(p.backward(np.ones_like(y)))
"""


def _time(env) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", SNIPPET], env=env, check=True)
    return time.perf_counter() - t0


def run(quick=False) -> list[dict]:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = _time(env)
        warm = sorted(_time(env) for _ in range(3 if quick else 5))[1 if quick else 2]
    return [{"name": "startup cold (import + first conv/pool call, empty Numba cache)", "dtype": "float64",
             "refnets_s": cold, "torch_s": None, "ratio": None, "target_s": 15.0},
            {"name": "startup warm (Numba cache filled)", "dtype": "float64",
             "refnets_s": warm, "torch_s": None, "ratio": None, "target_s": 1.0}]


def show(recs) -> str:
    return "\n".join(f"{r['name']:<70} {r['refnets_s']:7.2f} s (target {r['target_s']} s)" for r in recs)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _timing import cli
    sys.exit(cli(run, __doc__.splitlines()[0], show=show))
