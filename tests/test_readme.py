"""The README's Python examples run as written (they are what a newcomer pastes first)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path):
    pytest.importorskip("torch")                 # the cross-check example needs the oracle
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3, "the README lost its examples"
    r = subprocess.run([sys.executable, "-W", "error", "-c", "\n".join(blocks)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_readme_names_the_ci_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    text = README.read_text()
    assert "python3 -m pytest -q" in text and "python3 -m pytest -q" in ci
    extras = re.search(r"pip install -e '\.\[([a-z,]+)\]' && python3 -m pytest", text).group(1)
    assert f"'.[{extras}]'" in ci, "README's test command and .ci/run install different extras"
