"""Experiments that reproduce the papers' figures and make the theorems visible.

Each paper has a module; each experiment registers itself in :data:`common.REGISTRY` with a
quick and a full mode. ``load_all()`` imports every paper's module (matplotlib is imported only
here, never by ``import refnets``).
"""
import importlib

from .common import PAPERS, REGISTRY, Context, experiment, run  # noqa: F401

MODULES = ["du2019", "allenzhu2019", "brutzkus2021", "kohler2024"]


def load_all():
    """Import every paper's experiment module that exists; returns the registry."""
    for m in MODULES:
        try:
            importlib.import_module(f"{__name__}.{m}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{m}":
                raise
    return REGISTRY
