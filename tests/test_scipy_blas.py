"""Without SciPy, a kernel that calls BLAS stops with a clear ImportError instead of aborting Python.

Numba's ``np.dot`` inside a kernel is a call into SciPy's BLAS; a kernel loaded from a cache built
where SciPy was installed used to kill the interpreter ("Fatal Python error: BLAS wrapper returned
with an error"). The check runs in a subprocess in which ``import scipy`` fails.
"""
import subprocess
import sys

CODE = """
import sys
sys.modules["scipy"] = None                 # every import of scipy (and scipy.*) now raises ImportError
import numpy as np
from refnets.layers.conv import Conv2d
rng = np.random.default_rng(0)
tiny = Conv2d(1, 2, 3, rng=0)               # direct loops: no BLAS, works without SciPy
y = tiny.forward(rng.standard_normal((2, 1, 6, 6)))
tiny.backward(np.ones_like(y))
print("direct ok")
wide = Conv2d(32, 32, 3, padding=1, rng=0)  # Winograd: BLAS inside the kernel
try:
    wide.forward(rng.standard_normal((2, 32, 8, 8)))
except ImportError as e:
    print("ImportError:", e)
"""


def test_blas_kernels_without_scipy_raise_a_clear_import_error():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "direct ok"
    assert lines[1].startswith("ImportError: refnets:") and "pip install scipy" in lines[1], out.stdout


def test_scipy_is_a_declared_dependency():
    import configparser
    from pathlib import Path
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    reqs = [r.split(">")[0].split("=")[0].strip() for r in cfg["options"]["install_requires"].split("\n") if r.strip()]
    assert "scipy" in reqs
