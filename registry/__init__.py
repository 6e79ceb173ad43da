"""The adapter registry: versions adapters against fingerprints of their base models.

Public names are resolved lazily (PEP 562): ``import adapterlab.registry`` costs nothing, and
``adapters list`` never imports torch, transformers or mlflow.
"""

from __future__ import annotations

from adapterlab.lazy import lazy_exports

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
    "fingerprint_checkpoint": "adapterlab.registry.files.fingerprint",
    "parse_ref": "adapterlab.registry.names",
    "AdapterVersion": "adapterlab.registry.records",
    "BaseModelInfo": "adapterlab.registry.records",
    "Promotion": "adapterlab.registry.records",
    "VersionSummary": "adapterlab.registry.records",
    "settings": "adapterlab.registry.settings",  # a cheap module other parts use
}

__all__ = list(_LAZY_EXPORTS)

__getattr__, __dir__ = lazy_exports("adapterlab.registry", _LAZY_EXPORTS, globals())
