"""Lazy public names for a package (PEP 562), shared by ``adapterlab`` and its sub-packages.

A package's ``__init__`` lists its public names and the modules that define them; the first access
imports that module. This keeps ``import adapterlab.registry`` and the CLI free of torch,
transformers and mlflow until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, table: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose public ``name`` lives in ``table[name]``.

    A table entry naming the sub-module ``<package>.<name>`` resolves to that module itself.
    Resolved values are cached in ``namespace`` (the package's globals), so later lookups are plain.
    """

    def __getattr__(name: str) -> Any:
        module_name = table.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(module_name)
        value = module if module_name == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace.get("__all__", ()), *table})

    return __getattr__, __dir__
