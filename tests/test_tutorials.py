"""Every tutorial runs as a script in quick mode (and asserts the claims it demonstrates), and
converts to a notebook when the ``notebooks`` extra is installed."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.py"))


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_in_quick_mode(path, tmp_path):
    env = dict(os.environ, REFNETS_MODE="quick", REFNETS_OUT=str(tmp_path), MPLBACKEND="Agg")
    p = subprocess.run([sys.executable, "-W", "error", str(path)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{path.name} failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_is_a_jupytext_notebook(path):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(path, fmt="py:percent")
    kinds = {c.cell_type for c in nb.cells}
    assert kinds == {"markdown", "code"}, f"{path.name} should mix Markdown derivations and code"


def test_there_are_tutorials():
    assert TUTORIALS, "tutorials/ holds no tutorial"
