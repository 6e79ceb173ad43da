"""The registry's public API: a :class:`Registry` object over one database, and module-level shortcuts.

``Registry.open(url)`` opens (and schema-checks) one registry database and holds its engine,
as MLflow's store and sqlite-utils' ``Database`` do; its methods are the verbs of the
``adapters`` CLI. References arrive here as text (``NAME``, ``NAME:3``, ``NAME@production``)
and are parsed once; below this module, functions take the opened database, parsed references
and records.

The module functions (``adapterlab.registry.show(ref)``, ...) are shortcuts for scripts and
notebooks: each runs the same method on a default registry per URL (``registry_url=None``: the
configured one), opened on first use and kept for the process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapterlab.registry import base_locations, diff, loading, promotion, queries, register
from adapterlab.registry.db.database import Database, display_url, open_database
from adapterlab.registry.names import parse_ref
from adapterlab.registry.records import AdapterVersion, BaseLocation, BaseModelInfo, Promotion, VersionSummary

if TYPE_CHECKING:
    from adapterlab.registry.deploy.export import ExportResult
    from adapterlab.registry.deploy.predict import Prediction
    from adapterlab.registry.diff import VersionDiff
    from adapterlab.registry.mlflow.alias_drift import DriftReport
    from adapterlab.registry.mlflow.mirror_sync import SyncReport
    from adapterlab.registry.promotion import Requirement


class Registry:
    """One adapter registry: its database (SQLite or PostgreSQL) and, through MLflow, its files.

    Example::

        with Registry.open() as registry:
            registry.register("./out/adapter", name="complaints", base="./models/minilm")
            registry.promote("complaints:1", alias="production", require=["eval_accuracy>=0.9"])
            model = registry.load("complaints@production")
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True) -> Registry:
        """The registry at ``url`` (default: ``$ADAPTERLAB_REGISTRY_URL``, else SQLite in the home folder).

        Raises RegistryUnavailable when the database cannot be reached or its schema is not this
        adapterlab's. A missing embedded SQLite file is created at the current schema, or with
        ``create=False`` is an error saying where it was looked for.
        """
        return cls(open_database(url, create=create))

    @property
    def url(self) -> str:
        return self.database.url

    def close(self) -> None:
        """Release the database connections; the object is not used afterwards."""
        self.database.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({display_url(self.url)!r})"

    def register(
        self,
        path: Path | str,
        *,
        name: str,
        base: Path | str,
        base_name: str | None = None,
        task_type: str | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        mlflow_run_id: str | None = None,
        include: Iterable[str] = (),
    ) -> AdapterVersion:
        """Register the adapter folder ``path`` (HF PEFT format) as the next version of ``name``.

        ``base`` is the base model's local folder (fingerprinted, and recorded as one of its
        locations), the name of a registered base, or a Hub id in the local cache. Only the
        adapter's own files are stored; ``include`` adds files matching its glob patterns.
        Registering content identical to an existing version of ``name`` returns that version.
        """
        return register.register_adapter(
            self.database,
            path,
            name=name,
            base=base,
            base_name=base_name,
            task_type=task_type,
            metrics=metrics,
            tags=tags,
            description=description,
            mlflow_run_id=mlflow_run_id,
            include=include,
        )

    def list_versions(
        self,
        *,
        base: str | None = None,
        task_type: str | None = None,
        peft_type: str | None = None,
        alias: str | None = None,
        sort: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[VersionSummary]:
        """Versions matching every given filter, newest first per adapter, or ordered by the metric
        ``sort``."""
        return queries.list_versions(
            self.database,
            base=base,
            task_type=task_type,
            peft_type=peft_type,
            alias=alias,
            sort=sort,
            descending=descending,
            limit=limit,
        )

    def list_bases(self) -> list[BaseModelInfo]:
        """Every registered base model, with how many adapters each has."""
        return queries.list_bases(self.database)

    def show(self, ref: str) -> AdapterVersion:
        """Everything about one version; ``ref`` is ``NAME`` (latest), ``NAME:VERSION`` or ``NAME@ALIAS``."""
        return queries.show(self.database, parse_ref(ref))

    def history(self, name: str) -> list[Promotion]:
        """Every move of every alias of adapter ``name``, oldest first."""
        return queries.history(self.database, name)

    def promote(
        self, ref: str, *, alias: str, reason: str | None = None, require: Iterable[str | Requirement] = ()
    ) -> Promotion:
        """Point ``alias`` at the version ``ref`` names, if every requirement (``"eval_accuracy>=0.9"``)
        holds."""
        return promotion.promote(self.database, parse_ref(ref), alias=alias, reason=reason, require=require)

    def demote(self, name: str, *, alias: str, reason: str | None = None) -> Promotion:
        """Remove ``alias`` from adapter ``name``."""
        return promotion.demote(self.database, name, alias=alias, reason=reason)

    def pull(self, ref: str, to_dir: Path | str) -> AdapterVersion:
        """Download the files of ``ref`` into ``to_dir`` (absent or empty), verified against their sha256."""
        return loading.pull(self.show(ref), to_dir)

    def load(
        self,
        ref: str,
        base_model: Any = None,
        *,
        base: str | Path | None = None,
        allow_base_mismatch: bool = False,
    ) -> Any:
        """The adapter ``ref`` on its base model, as an ``adapterlab.PeftModel`` in eval mode.

        ``base_model`` is the base already in memory; else ``base`` (a folder or Hub id) or the
        copy found by fingerprint among the base's registered folders, the Hugging Face cache and
        the Hub. What is given must have the registered weights unless ``allow_base_mismatch``.
        """
        return loading.load(
            self.show(ref),
            base_model,
            base=base,
            database=self.database,
            allow_base_mismatch=allow_base_mismatch,
        )

    def add_base_location(self, name: str, path: Path | str) -> BaseLocation:
        """Record ``path`` (verified by fingerprint) as a copy of the registered base ``name``."""
        return base_locations.add_location(self.database, name, path)

    def diff(self, ref_a: str, ref_b: str, *, plot: Path | str | None = None) -> VersionDiff:
        """What changed between two versions: config, metrics, sizes, per-module LoRA deltas."""
        return diff.diff(self.show(ref_a), self.show(ref_b), plot=plot)

    def export(
        self, ref: str, to_dir: Path | str, *, merged: bool = False, base: str | Path | None = None
    ) -> ExportResult:
        """Write the adapter ``ref`` (or, ``merged``, base + adapter as one model, the base being ``base``
        or found as for :meth:`load`) with a model card to ``to_dir``."""
        from adapterlab.registry.deploy.export import export_adapter

        return export_adapter(self.show(ref), to_dir, merged=merged, base=base, database=self.database)

    def sync(self, *, from_mlflow: bool = False) -> SyncReport:
        """Bring MLflow's model registry up to date with this registry (versions and aliases),
        idempotently; ``from_mlflow``: adopt the aliases moved in MLflow instead, with history rows."""
        from adapterlab.registry.mlflow.mirror_sync import adopt_from_mlflow, sync_mirror

        return adopt_from_mlflow(self.database) if from_mlflow else sync_mirror(self.database)

    def mlflow_drift(self, name: str) -> DriftReport | None:
        """How MLflow's aliases of adapter ``name`` differ from the registry's (moved in MLflow's UI);
        asks MLflow with a short probe and never fails on it (None: the mirror is off)."""
        from adapterlab.registry.mlflow.alias_drift import alias_drift

        return alias_drift(self.database, name)

    def predict(
        self, ref: str, text: str, *, base: str | Path | None = None, max_new_tokens: int = 32
    ) -> Prediction:
        """Run the adapter ``ref`` on ``text``: classify it, or continue it (language-model tasks); the
        base is ``base`` (a folder or Hub id) or found as for :meth:`load`."""
        from adapterlab.registry.deploy.predict import predict

        return predict(self.show(ref), text, base=base, database=self.database, max_new_tokens=max_new_tokens)


_lock = threading.Lock()
_defaults: dict[str, Registry] = {}


def default_registry(url: str | None = None) -> Registry:
    """The process's registry for ``url`` (None: the configured one), opened on first use."""
    from adapterlab.registry import settings

    resolved = settings.registry_url(url)
    with _lock:
        registry = _defaults.get(resolved)
        if registry is None:
            registry = _defaults[resolved] = Registry.open(resolved)
        return registry


def forget_registries() -> None:
    """Close the default registries (tests; after ``db upgrade`` in a process that keeps running)."""
    with _lock:
        for registry in _defaults.values():
            registry.close()
        _defaults.clear()


def register_adapter(path: Path | str, *, registry_url: str | None = None, **options: Any) -> AdapterVersion:
    """:meth:`Registry.register` on the default registry."""
    return default_registry(registry_url).register(path, **options)


def list_versions(*, registry_url: str | None = None, **filters: Any) -> list[VersionSummary]:
    """:meth:`Registry.list_versions` on the default registry."""
    return default_registry(registry_url).list_versions(**filters)


def list_bases(registry_url: str | None = None) -> list[BaseModelInfo]:
    return default_registry(registry_url).list_bases()


def show(ref: str, registry_url: str | None = None) -> AdapterVersion:
    return default_registry(registry_url).show(ref)


def history(name: str, registry_url: str | None = None) -> list[Promotion]:
    return default_registry(registry_url).history(name)


def promote(
    ref: str,
    *,
    alias: str,
    reason: str | None = None,
    require: Iterable[str | Requirement] = (),
    registry_url: str | None = None,
) -> Promotion:
    return default_registry(registry_url).promote(ref, alias=alias, reason=reason, require=require)


def demote(name: str, *, alias: str, reason: str | None = None, registry_url: str | None = None) -> Promotion:
    return default_registry(registry_url).demote(name, alias=alias, reason=reason)


def pull(ref: str, to_dir: Path | str, registry_url: str | None = None) -> AdapterVersion:
    return default_registry(registry_url).pull(ref, to_dir)


def load(
    ref: str,
    base_model: Any = None,
    *,
    base: str | Path | None = None,
    allow_base_mismatch: bool = False,
    registry_url: str | None = None,
) -> Any:
    return default_registry(registry_url).load(
        ref, base_model, base=base, allow_base_mismatch=allow_base_mismatch
    )
