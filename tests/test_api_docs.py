"""docs/API.md is generated from the docstrings, is up to date, and every public function and class has
a docstring (python docs/make_api.py regenerates it)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_api():
    spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_api_page_is_current_and_complete():
    make_api = _make_api()
    text, missing = make_api.generate()
    assert not missing, "public items without a docstring: " + ", ".join(missing)
    assert (ROOT / "docs" / "API.md").read_text() == text, "docs/API.md is stale: run python docs/make_api.py"
    for module in ("refnets.io", "refnets.sweep", "refnets.crosscheck", "refnets.layers.dense"):
        assert f"\n## {module}\n" in text
    assert "### `def run_sweep(fn, jobs, folder=None" in text
    assert "### `class Dense(in_features, out_features" in text


def test_the_check_catches_a_missing_docstring(tmp_path, monkeypatch):
    import refnets.sweep as sweep
    make_api = _make_api()

    def undocumented():
        return None
    undocumented.__module__ = "refnets.sweep"
    monkeypatch.setattr(sweep, "__all__", sweep.__all__ + ["undocumented"])
    monkeypatch.setattr(sweep, "undocumented", undocumented, raising=False)
    _, missing = make_api.generate()
    assert missing == ["refnets.sweep.undocumented"]
