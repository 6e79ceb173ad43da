"""The adapter registry: versions adapters against fingerprints of their base models.

Public names are resolved lazily (PEP 562): ``import adapterlab.registry`` costs nothing, and
``adapters list`` never imports torch, transformers or mlflow.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_LAZY_EXPORTS: dict[str, str] = {
    "register_adapter": "adapterlab.registry.register",
    "load": "adapterlab.registry.loading",
    "pull": "adapterlab.registry.loading",
    "show": "adapterlab.registry.queries",
    "list_versions": "adapterlab.registry.queries",
    "list_bases": "adapterlab.registry.queries",
    "history": "adapterlab.registry.queries",
    "promote": "adapterlab.registry.promotion",
    "demote": "adapterlab.registry.promotion",
    "diff": "adapterlab.registry.diff",
    "fingerprint_checkpoint": "adapterlab.registry.fingerprint",
    "parse_ref": "adapterlab.registry.names",
    "AdapterVersion": "adapterlab.registry.records",
    "BaseModelInfo": "adapterlab.registry.records",
    "Promotion": "adapterlab.registry.records",
    "VersionSummary": "adapterlab.registry.records",
}

__all__ = list(_LAZY_EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "settings":  # a cheap module other parts use as ``adapterlab.registry.settings``
        return importlib.import_module("adapterlab.registry.settings")
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'adapterlab.registry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "settings"])
