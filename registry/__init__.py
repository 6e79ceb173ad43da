"""The adapter registry: versions adapters against fingerprints of their base models.

``Registry.open(url)`` is the API (``api.py``); the verbs it calls sit at this level
(``register``, ``promotion``, ``queries``, ``loading``, ``diff``, ``base_models``,
``base_locations``), on top of
``db/`` (the database), ``files/`` (reading adapter and checkpoint files), ``mlflow/`` (artifact
store and mirror) and ``deploy/`` (export, predict, model card).

Public names are resolved lazily (PEP 562): ``import adapterlab.registry`` costs nothing, and
``adapters list`` never imports torch, transformers or mlflow.
"""

from __future__ import annotations

from adapterlab.lazy import lazy_exports

# public name -> module that defines it
_LAZY_EXPORTS: dict[str, str] = {
    "Registry": "adapterlab.registry.api",
    "default_registry": "adapterlab.registry.api",
    "register_adapter": "adapterlab.registry.api",
    "load": "adapterlab.registry.api",
    "pull": "adapterlab.registry.api",
    "show": "adapterlab.registry.api",
    "list_versions": "adapterlab.registry.api",
    "list_bases": "adapterlab.registry.api",
    "history": "adapterlab.registry.api",
    "promote": "adapterlab.registry.api",
    "demote": "adapterlab.registry.api",
    "diff": "adapterlab.registry.diff",
    "fingerprint_checkpoint": "adapterlab.registry.files.fingerprint",
    "locate_base": "adapterlab.registry.base_locations",
    "parse_ref": "adapterlab.registry.names",
    "AdapterVersion": "adapterlab.registry.records",
    "BaseLocation": "adapterlab.registry.records",
    "BaseModelInfo": "adapterlab.registry.records",
    "Promotion": "adapterlab.registry.records",
    "VersionSummary": "adapterlab.registry.records",
    "settings": "adapterlab.registry.settings",  # a cheap module other parts use
}

__all__ = list(_LAZY_EXPORTS)

__getattr__, __dir__ = lazy_exports("adapterlab.registry", _LAZY_EXPORTS, globals())
