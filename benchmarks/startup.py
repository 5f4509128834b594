"""Start-up time: ``import refnets`` plus the first convolution call (Numba compilation), cold
(an empty Numba cache) and warm (the cache filled by the cold run).

    python benchmarks/startup.py [--json FILE]

Target (performance issue): cold ≤ 15 s, warm ≤ 1 s. Timed from the start of a new Python process
(the interpreter's own start-up included) to the moment the first forward and backward have
returned, which the child reports on its stdout; the interpreter's exit that follows is not part
of "import plus the first call" (with numba's type registries loaded, tearing the interpreter down
takes 0.1–0.3 s here). The whole process's time is in the records too (``process_s``).
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
print("first call done", flush=True)
"""


def _time(env, snippet=SNIPPET) -> tuple[float, float]:
    """(seconds to the line "first call done" on the child's stdout, seconds of the whole process)."""
    t0 = time.perf_counter()
    with subprocess.Popen([sys.executable, "-c", snippet], env=env, stdout=subprocess.PIPE, text=True) as proc:
        line = proc.stdout.readline()
        t_first = time.perf_counter() - t0
        proc.stdout.read()
    t_all = time.perf_counter() - t0
    if proc.returncode != 0 or line.strip() != "first call done":
        raise RuntimeError(f"startup benchmark: the snippet failed (exit {proc.returncode})")
    return t_first, t_all


def run(quick=False) -> list[dict]:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = _time(env)
        warm = sorted(_time(env) for _ in range(3 if quick else 5))[1 if quick else 2]   # median by first-call time
    return [{"name": "startup cold (import + first conv/pool call, empty Numba cache)", "dtype": "float64",
             "refnets_s": cold[0], "process_s": cold[1], "torch_s": None, "ratio": None, "target_s": 15.0},
            {"name": "startup warm (Numba cache filled)", "dtype": "float64",
             "refnets_s": warm[0], "process_s": warm[1], "torch_s": None, "ratio": None, "target_s": 1.0}]


def show(recs) -> str:
    return "\n".join(f"{r['name']:<70} {r['refnets_s']:7.2f} s (target {r['target_s']} s; whole process "
                     f"{r['process_s']:.2f} s)" for r in recs)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _timing import cli
    sys.exit(cli(run, __doc__.splitlines()[0], show=show))
