"""``import refnets`` shortens OpenBLAS's idle spin (refnets/__init__.py) and keeps a value the user set."""
import os
import subprocess
import sys

import pytest

CODE = "import refnets, os, numpy; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"


@pytest.mark.parametrize("given, want", [(None, "4"), ("9", "9")])
def test_import_sets_the_openblas_thread_timeout(given, want):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if given is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = given
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == want
