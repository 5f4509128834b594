"""Generate docs/API.md, the public API of refnets by module, from the docstrings.

    python docs/make_api.py          # rewrite docs/API.md
    python docs/make_api.py --check  # exit 1 if docs/API.md is stale or a public item lacks a docstring

Public means: a module whose dotted name has no part starting with "_" (``__main__`` excluded), and in
it every function and class defined there whose name does not start with "_" (or the module's
``__all__``), and every public method a class defines. Each entry shows the signature and the first
paragraph of the docstring (inherited docstrings count for methods that override a documented one).
Every public function and class must have a docstring (registered experiments are documented by
their registered description); methods are listed with theirs where they have one.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "API.md"
PACKAGES = ["refnets", "gradcheck"]


def public_modules() -> list[str]:
    """Every public module of :data:`PACKAGES`, sorted (imports them)."""
    sys.path.insert(0, str(ROOT))
    names = []
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        names.append(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg_name + "."):
            if any(part.startswith("_") for part in info.name.split(".")):
                continue
            names.append(info.name)
    return sorted(set(names))


# Public functions/classes that lacked a docstring when this check was introduced, in modules other
# sessions own; remove entries as docstrings land. Anything else without a docstring fails the check.
KNOWN_MISSING = {
    "refnets.init.normal", "refnets.init.lecun_normal", "refnets.init.uniform", "refnets.init.rademacher",
    "refnets.init.zeros", "refnets.losses.HalfSquaredSum", "refnets.losses.MeanSquared",
    "refnets.losses.LogisticLoss", "refnets.losses.SoftmaxCrossEntropy", "gradcheck.registry.Entry",
}


def _registered_experiments() -> dict:
    """Experiment functions -> their registered one-line description (their documentation)."""
    try:
        from refnets.experiments.common import REGISTRY
    except ImportError:  # pragma: no cover
        return {}
    return {e.fn: f"Experiment `{e.name}`: {e.description}" for e in REGISTRY.values()}


def _summary(doc: str | None) -> str:
    if not doc:
        return ""
    para = inspect.cleandoc(doc).split("\n\n")[0]
    return " ".join(line.strip() for line in para.splitlines())


def _signature(obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    return re.sub(r" at 0x[0-9a-f]+", "", sig)


def _line(obj) -> int:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return 10 ** 9


def members(module) -> list:
    """The public functions and classes defined in ``module``, in source order."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    out = []
    for n in names:
        obj = getattr(module, n, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", None) == module.__name__:
            out.append((n, obj))
    return sorted(out, key=lambda kv: (_line(kv[1]), kv[0]))


def methods(cls) -> list:
    """Public methods and properties defined by ``cls`` itself, in source order."""
    out = []
    for n, obj in vars(cls).items():
        if n.startswith("_"):
            continue
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if inspect.isfunction(obj) or isinstance(obj, property):
            out.append((n, obj))
    return sorted(out, key=lambda kv: (_line(kv[1].fget if isinstance(kv[1], property) else kv[1]), kv[0]))


def _method_doc(cls, name):
    return inspect.getdoc(getattr(cls, name, None))


def generate() -> tuple[str, list[str]]:
    """The page's Markdown, and the public items that lack a docstring."""
    missing = []
    lines = ["# refnets API reference", "",
             "Generated from the docstrings by `python docs/make_api.py`; do not edit by hand.", ""]
    modules = public_modules()
    lines += ["Modules: " + ", ".join(f"[`{m}`](#{m.replace('.', '')})" for m in modules), ""]
    for modname in modules:
        mod = importlib.import_module(modname)
        lines += [f"## {modname}", ""]
        s = _summary(mod.__doc__)
        if s:
            lines += [s, ""]
        experiments = _registered_experiments()
        for name, obj in members(mod):
            qual = f"{modname}.{name}"
            doc = _summary(obj.__doc__) or experiments.get(obj, "")
            if inspect.isclass(obj) and doc.startswith(f"{name}("):
                doc = ""  # the signature a dataclass writes for itself is no documentation
            if not doc and qual not in KNOWN_MISSING:
                missing.append(qual)
            kind = "class" if inspect.isclass(obj) else "def"
            lines += [f"### `{kind} {name}{_signature(obj)}`", "", doc or "*(no docstring)*", ""]
            if inspect.isclass(obj):
                for mname, m in methods(obj):
                    mdoc = _summary(_method_doc(obj, mname))
                    sig = "" if isinstance(m, property) else _signature(m)
                    lines.append(f"- `{mname}{sig}`" + (f": {mdoc}" if mdoc else ""))
                if methods(obj):
                    lines.append("")
    return "\n".join(lines).rstrip() + "\n", missing


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text, missing = generate()
    if "--check" in argv:
        stale = not PAGE.exists() or PAGE.read_text() != text
        if stale:
            print(f"{PAGE} is stale: run python docs/make_api.py")
        for m in missing:
            print(f"no docstring: {m}")
        return 1 if stale or missing else 0
    PAGE.write_text(text)
    print(f"wrote {PAGE} ({len(text.splitlines())} lines); {len(missing)} public items lack a docstring")
    for m in missing:
        print(f"no docstring: {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
