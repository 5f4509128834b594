"""Persistence: parameters as ``.npz`` (exact, checked on load) and a model's configuration as JSON.

    from refnets.io import save_parameters, load_parameters, save_config, load_config, build_model
    save_parameters(model, "model.npz")        # every array of model.parameters(), bit for bit
    load_parameters(model, "model.npz")        # into a model of the same architecture, in place
    save_config(model, "model.json")           # what the model is
    model2 = build_model(load_config("model.json"))  # when the model describes itself (see below)

Parameter files
---------------
An ``.npz`` archive holding one array per dotted parameter name of :meth:`Layer.parameters`
("0.W", "branch.1.b", "W1", …) plus ``__refnets__``, a JSON header (as bytes) with the format
version, the names, shapes, dtypes and a SHA-256 of every array, and the model's configuration.
Arrays are stored raw (no pickle), so loading gives back exactly the saved bits. The file is written
atomically (temporary file, then rename). Loading rejects, with a :class:`ParameterFileError` that
names the file and the tensor: a truncated or corrupt file, a checksum mismatch, a missing or extra
tensor, a tensor of another shape ("expected (8, 8), got (8, 4)") or of another dtype. An ``.npz``
written by plain :func:`numpy.savez` (no header) loads too, without the checksums.

Model configuration
-------------------
A model describes itself by a method ``config() -> dict`` of JSON values: the keyword arguments
that rebuild it, ``type(model)(**model.config())`` (parameters aside: load those from the
``.npz``). :func:`model_config` returns ``{"class": "module.QualName", "args": model.config()}``
and :func:`build_model` rebuilds from it. A model without ``config()`` is still described — class,
``repr``, plain public attributes, parameter shapes and children, recursively — which documents a
run but cannot rebuild the model (:func:`build_model` says so).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

HEADER = "__refnets__"
FORMAT = 1


class ParameterFileError(ValueError):
    """A parameter file that is truncated, corrupt, or does not fit the model."""


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _class_path(obj) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _params_of(model_or_params) -> dict:
    if isinstance(model_or_params, dict):
        return dict(model_or_params)
    if hasattr(model_or_params, "parameters"):
        return model_or_params.parameters()
    raise TypeError(f"expected a refnets model or a dict of arrays, got {type(model_or_params).__name__}")


def save_parameters(model, path) -> Path:
    """Save every parameter of ``model`` (a :class:`refnets.layers.Layer`, or a dict name -> array) to the
    ``.npz`` file ``path`` (used as given), exactly, with a checksummed header; returns the path."""
    path = Path(path)
    params = _params_of(model)
    if HEADER in params:
        raise ValueError(f"save_parameters: {HEADER!r} is reserved and cannot be a parameter name")
    arrays = {}
    for k, v in params.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"save_parameters: parameter {k!r} is an object array; only numeric arrays are saved")
        arrays[k] = a
    header = {"format": FORMAT, "names": list(arrays),
              "shapes": {k: list(a.shape) for k, a in arrays.items()},
              "dtypes": {k: a.dtype.str for k, a in arrays.items()},
              "sha256": {k: _sha256(a) for k, a in arrays.items()}}
    if not isinstance(model, dict):
        header["model"] = _class_path(model)
        try:
            header["config"] = json.loads(json.dumps(model_config(model)))
        except (TypeError, ValueError):
            pass
    import refnets
    header["refnets"] = refnets.__version__
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{HEADER: blob})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_parameters(path) -> dict[str, np.ndarray]:
    """Read and verify a parameter file without a model: name -> array, in the saved order.

    Raises :class:`ParameterFileError` for a file that is not an ``.npz`` archive, is truncated or
    corrupt, or whose arrays disagree with their header (shape, dtype, checksum).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no parameter file at {path}")
    try:
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ParameterFileError(f"{path}: not an .npz archive (a single .npy array?)")
            with z:
                names = list(z.files)
                header = json.loads(bytes(z[HEADER]).decode()) if HEADER in names else None
                arrays = {}
                for k in names:
                    if k == HEADER:
                        continue
                    try:
                        arrays[k] = z[k]
                    except Exception as e:  # any failure to decode the member is a damaged file
                        raise ParameterFileError(f"{path}: tensor {k!r} cannot be read (truncated or corrupt "
                                                 f"file): {e}") from None
    except ParameterFileError:
        raise
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error, UnicodeDecodeError, KeyError,
            NotImplementedError, RuntimeError, MemoryError, IndexError, TypeError) as e:
        raise ParameterFileError(f"{path}: not a readable .npz parameter file (truncated or corrupt?): "
                                 f"{type(e).__name__}: {e}") from None
    if header is not None:
        _verify_header(path, header, arrays)
    return arrays


def _verify_header(path, header, arrays):
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ParameterFileError(f"{path}: unknown header format {header.get('format') if isinstance(header, dict) else header!r}"
                                 f"; this refnets reads format {FORMAT}")
    listed = list(header.get("names", []))
    missing = [k for k in listed if k not in arrays]
    if missing or set(arrays) - set(listed):
        raise ParameterFileError(f"{path}: the header lists tensors {listed} but the archive holds {list(arrays)} "
                                 f"(truncated or corrupt file)")
    for k, a in arrays.items():
        shape, dtype = tuple(header["shapes"][k]), np.dtype(header["dtypes"][k])
        if a.shape != shape or a.dtype != dtype:
            raise ParameterFileError(f"{path}: tensor {k!r} is {a.dtype} {a.shape} but the header says "
                                     f"{dtype} {shape} (corrupt file)")
        if _sha256(a) != header["sha256"][k]:
            raise ParameterFileError(f"{path}: tensor {k!r} fails its SHA-256 checksum (corrupt file)")


def load_parameters(model, path, strict: bool = True) -> dict[str, np.ndarray]:
    """Load the parameter file ``path`` into ``model`` in place (through ``model.set_parameters``).

    Every tensor is checked before any is copied, so a failed load leaves the model untouched.
    ``strict=True`` (default) requires the file and the model to hold the same names; ``strict=False``
    loads the common names and ignores the rest. Shapes and dtypes must match exactly (an exact load
    never casts). Returns the loaded arrays. Raises :class:`ParameterFileError` naming the tensor.
    """
    arrays = read_parameters(path)
    own = model.parameters()
    missing = [k for k in own if k not in arrays]
    extra = [k for k in arrays if k not in own]
    if strict and (missing or extra):
        parts = []
        if missing:
            parts.append(f"missing from the file: {missing}")
        if extra:
            parts.append(f"not in the model: {extra}")
        raise ParameterFileError(f"{path}: the tensors do not match {type(model).__name__} ({'; '.join(parts)})")
    use = {k: a for k, a in arrays.items() if k in own}
    for k, a in use.items():
        if a.shape != own[k].shape:
            raise ParameterFileError(f"{path}: tensor {k!r}: expected shape {own[k].shape} (the model's), "
                                     f"got {a.shape} in the file")
        if a.dtype != own[k].dtype:
            raise ParameterFileError(f"{path}: tensor {k!r}: expected dtype {own[k].dtype} (the model's), "
                                     f"got {a.dtype} in the file")
    model.set_parameters(use)
    return use


# ------------------------------------------------------------------ configuration
def _plain(v):
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.dtype):
        return v.name
    if isinstance(v, (list, tuple)) and all(_plain(x) is not _SKIP for x in v):
        return [_plain(x) for x in v]
    return _SKIP


_SKIP = object()


def model_config(model) -> dict:
    """A JSON-serialisable description of ``model``.

    With a ``config()`` method: ``{"class": "module.QualName", "args": model.config()}`` (rebuildable
    by :func:`build_model`). Without: class, repr, the plain public attributes (numbers, strings,
    tuples, dtypes), parameter shapes and dtypes, and the children's descriptions.
    """
    cfg = getattr(model, "config", None)
    if callable(cfg):
        args = cfg()
        if not isinstance(args, dict):
            raise TypeError(f"{_class_path(model)}.config() must return a dict, got {type(args).__name__}")
        try:
            args = json.loads(json.dumps(args))
        except (TypeError, ValueError) as e:
            raise TypeError(f"{_class_path(model)}.config() must return JSON values: {e}") from None
        return {"class": _class_path(model), "args": args}
    attrs = {}
    for k, v in sorted(vars(model).items()):
        if k.startswith("_") or k in ("params", "grads", "cache", "output"):
            continue
        p = _plain(v)
        if p is not _SKIP:
            attrs[k] = p
    out = {"class": _class_path(model), "repr": repr(model), "attributes": attrs,
           "parameters": {k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in model.params.items()}}
    children = model.children() if hasattr(model, "children") else {}
    if children:
        out["children"] = {k: model_config(c) for k, c in children.items()}
    return out


def save_config(model, path, extra: dict | None = None) -> Path:
    """Write :func:`model_config` of ``model`` (plus ``extra``, e.g. training settings) as JSON, atomically."""
    from .sweep import write_atomic
    data = model_config(model)
    if extra:
        data = dict(data, extra=extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=1, allow_nan=True) + "\n")
    return path


def load_config(path) -> dict:
    """Read a configuration written by :func:`save_config`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not a JSON model configuration: {e}") from None
    if not isinstance(data, dict) or "class" not in data:
        raise ValueError(f"{path}: not a refnets model configuration (no 'class')")
    return data


def build_model(config: dict, modules=("refnets",)):
    """Rebuild a model from a :func:`model_config` that came from a ``config()`` method:
    ``Class(**args)``, with fresh parameters (load the saved ones with :func:`load_parameters`).

    Only classes from the packages in ``modules`` are imported (a configuration file should not
    make refnets import arbitrary code); pass your own package's name to rebuild your classes."""
    if "args" not in config:
        raise ValueError(f"cannot rebuild {config.get('class')}: it has no config() method, so its configuration "
                         f"only describes it; give the class a config() returning its constructor arguments")
    module, _, qualname = config["class"].rpartition(".")
    if module.split(".")[0] not in tuple(modules):
        raise ValueError(f"build_model rebuilds classes of {list(modules)} only, got {config['class']!r}; "
                         f"pass modules=(...) to allow it")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj(**config["args"])


__all__ = ["ParameterFileError", "save_parameters", "load_parameters", "read_parameters", "model_config",
           "save_config", "load_config", "build_model"]
