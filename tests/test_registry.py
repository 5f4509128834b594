"""The gradcheck registry covers every public refnets Layer, the losses and L2Penalty, reproducibly."""
import importlib
import pkgutil

import numpy as np
import pytest

import refnets.layers
from refnets.layers.activations import Activation
from refnets.layers.base import Layer

from gradcheck import registry
from gradcheck.core import as_target


def exported_layer_classes():
    """Public Layer subclasses of refnets.layers and of its modules, minus the abstract bases."""
    modules = [refnets.layers] + [importlib.import_module(f"refnets.layers.{m.name}")
                                  for m in pkgutil.iter_modules(refnets.layers.__path__)]
    found = {}
    for mod in modules:
        for name in getattr(mod, "__all__", None) or dir(mod):
            obj = getattr(mod, name)
            if (isinstance(obj, type) and issubclass(obj, Layer) and obj not in (Layer, Activation)
                    and not name.startswith("_")):
                found[obj.__name__] = obj
    return found


def test_every_public_layer_class_is_registered():
    classes = exported_layer_classes()
    # the layers of the lead's list are all there (guards against the walk itself going wrong)
    assert {"Dense", "Identity", "ReLU", "LeakyReLU", "Logistic", "Softplus", "Tanh", "Sequential",
            "Residual", "Parallel", "Flatten", "Reshape"} <= set(classes)
    missing = sorted(set(classes) - set(registry.covered_classes()))
    assert not missing, f"public Layer classes with no gradcheck registry entry: {missing}"
    assert set(registry.public_layer_classes()) == set(classes)


def test_every_entry_is_available():
    unavailable = {e.name: e.missing() for e in registry.REGISTRY.values() if not e.available}
    assert not unavailable, unavailable


def test_losses_and_penalty_are_registered():
    names = set(registry.REGISTRY)
    for n in ("half_squared_sum", "mean_squared", "logistic_loss", "softmax_cross_entropy", "L2Penalty"):
        assert n in names
    assert {e.kind for e in registry.REGISTRY.values()} == set(registry.KINDS)


def _walk(layer):
    yield layer
    for child in layer.children().values():
        yield from _walk(child)


def _arrays(obj, inputs):
    target = as_target(obj, inputs)
    return {k: v.copy() for k, v in target.tensors().items()}


# Configurations allowed more than 400 entries per tensor, and why.
LARGE = {"Conv2d[winograd]": 16 * 16 * 9,     # the Winograd kernels need C_in·C_out >= 256 channel pairs
         "Conv1d[winograd1d]": 16 * 16 * 3}   # and C_in, C_out >= 16 (x: 16 rows for F(4, 3))


@pytest.mark.parametrize("name", sorted(registry.REGISTRY))
def test_factories_are_seeded_float64_and_build_their_class(name):
    entry = registry.REGISTRY[name]
    a = _arrays(*entry.factory(np.random.default_rng(7)))
    b = _arrays(*entry.factory(np.random.default_rng(7)))
    c = _arrays(*entry.factory(np.random.default_rng(8)))
    assert a.keys() == b.keys() and a
    for k in a:
        assert a[k].dtype == np.float64, (k, a[k].dtype)
        assert a[k].tobytes() == b[k].tobytes(), f"{name}: {k} differs between two runs with the same seed"
        assert a[k].size <= LARGE.get(name, 400), f"{name}: {k} has {a[k].size} entries; keep registry shapes small"
    assert any(a[k].tobytes() != c[k].tobytes() for k in a), f"{name}: the seed changes nothing"
    if entry.cls:
        obj, _ = entry.factory(np.random.default_rng(0))
        assert any(type(l).__name__ == entry.cls for l in _walk(obj)), f"{name} builds no {entry.cls}"


def test_register_select_and_models_in_one_line(monkeypatch):
    import refnets as rn

    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    registry.register("test.mlp", lambda r: (rn.Sequential(rn.Dense(3, 4, rng=r), rn.Softplus(),
                                                           rn.Dense(4, 1, rng=r)), r.standard_normal((2, 3))))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("test.mlp", lambda r: None)
    with pytest.raises(ValueError, match="kind"):
        registry.register("test.other", lambda r: None, kind="widget")

    @registry.register("test.missing", kind="layer", cls="Nope", requires=("refnets.layers:DoesNotExist",))
    def _missing(rng):
        raise AssertionError("never called: unavailable")

    assert [e.name for e in registry.select(["test.*"])] == ["test.mlp"]
    assert registry.REGISTRY["test.missing"].missing() == ["refnets.layers:DoesNotExist"]
    (res,) = registry.run(["test.mlp"])
    assert res.status == "PASS" and res.attempts == 1

    conv = {e.name for e in registry.select(["Conv2d"])}
    assert "Conv2d" in conv and "Conv2d[groups2]" in conv and "Conv1d" not in conv
    assert [e.name for e in registry.select(["conv2d[s2,p1]"])] == ["Conv2d[s2,p1]"]
    with pytest.raises(KeyError, match="NoSuch"):
        registry.select(["NoSuch"])


def test_a_raising_factory_is_a_fail_row_not_a_crash(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))

    def broken(rng):
        raise ValueError("bad config")

    registry.register("test.broken", broken)
    (res,) = registry.run(["test.broken"])
    assert res.status == "FAIL" and "bad config" in res.rows[0].note


def test_paper_models_are_discovered():
    import refnets.models

    for info in pkgutil.iter_modules(refnets.models.__path__):
        mod = importlib.import_module(f"refnets.models.{info.name}")
        provider = getattr(mod, "gradcheck_factories", None)
        if provider is not None:
            for name in provider():
                assert name in registry.REGISTRY and registry.REGISTRY[name].kind == "model"


def test_a_broken_model_module_becomes_a_failing_entry(tmp_path, monkeypatch):
    pkg = tmp_path / "fakemodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(
        "import numpy as np\nimport refnets as rn\n"
        "def gradcheck_factories():\n"
        "    return {'fake.good': lambda r: (rn.Tanh(), r.standard_normal((2, 3)))}\n")
    (pkg / "broken.py").write_text("def gradcheck_factories():\n    raise RuntimeError('no factories today')\n")
    (pkg / "optional.py").write_text("import a_package_that_is_not_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    added = registry.discover_models("fakemodels")
    assert set(added) == {"fake.good", "broken.<gradcheck_factories>"}
    assert not registry.REGISTRY["optional.<gradcheck_factories>"].available  # optional dependency
    res = {r.name: r for r in registry.run(["fake.good", "broken.*"])}
    good, broken = res["fake.good"], res["broken.<gradcheck_factories>"]
    assert good.status == "PASS"
    assert broken.status == "FAIL" and "no factories today" in broken.rows[0].note
