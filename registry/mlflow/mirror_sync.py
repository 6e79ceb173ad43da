"""``adapters sync``: bring the MLflow mirror up to date with the registry, idempotently (or, with
``--from-mlflow``, adopt the aliases someone moved in MLflow instead).

The registry is the source of truth; what MLflow lacks is derived, not recorded: a version
whose ``mlflow_version`` is unset was never mirrored, and an alias whose MLflow target differs
from the registry's has fallen behind. A version that MLflow already holds (a registration
that died between creating it and recording its number) is found by its ``adapterlab.version``
tag and recorded, never created twice. MLflow aliases are removed only when the registry's
promotion history shows the alias as ours. A version mirrored before versions were MLflow
Models is mirrored again as one (``model_upgrade.py``). Running sync twice changes nothing the
second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from adapterlab.errors import InvalidConfig, RegistryUnavailable
from adapterlab.registry import settings
from adapterlab.registry.db.database import Database
from adapterlab.registry.db.store import record_mlflow_version
from adapterlab.registry.db.tables import adapters, aliases, promotions, versions
from adapterlab.registry.mlflow.alias_drift import alias_drift
from adapterlab.registry.mlflow.mlflow_http import TrackingServerDown, mlflow_call_settings, tracking_user
from adapterlab.registry.mlflow.mlflow_mirror import (
    create_mirrored_version,
    mlflow_client,
    reachable_tracking_uri,
    set_mirrored_alias,
)
from adapterlab.registry.mlflow.model_upgrade import upgrade_to_models
from adapterlab.registry.mlflow.pyfunc_model import model_uri
from adapterlab.registry.names import Ref
from adapterlab.registry.promotion import adopt_alias
from adapterlab.registry.queries import show
from adapterlab.registry.records import AdapterVersion
from adapterlab.registry.redaction import error_summary, redact


@dataclass(frozen=True)
class SyncReport:
    """What one ``sync`` changed in MLflow, and what it could not."""

    versions: list[str] = field(default_factory=list)  # NAME:N now mirrored
    aliases: list[str] = field(default_factory=list)  # NAME@ALIAS -> N moved, or NAME@ALIAS removed
    failed: list[str] = field(default_factory=list)  # one line each

    def to_dict(self) -> dict[str, Any]:
        return {"versions": list(self.versions), "aliases": list(self.aliases), "failed": list(self.failed)}

    def text(self) -> str:
        if not (self.versions or self.aliases or self.failed):
            return "MLflow is up to date with the registry"
        lines = [f"mirrored {ref}" for ref in self.versions] + [f"alias {move}" for move in self.aliases]
        return "\n".join(lines + [f"not mirrored: {line}" for line in self.failed])


def sync_mirror(database: Database) -> SyncReport:
    """Mirror every unmirrored version, then move every MLflow alias that differs from the registry's."""
    _require_mlflow()
    report = SyncReport()
    with mlflow_call_settings():
        _sync_versions(database, report)
        upgrade_to_models(database, report.versions, report.failed)  # before aliases: they follow
        _sync_aliases(database, report)
    return _finished(report, "mirrored", "`adapters sync`")


def adopt_from_mlflow(database: Database) -> SyncReport:
    """The other direction (``adapters sync --from-mlflow``): every alias moved, set or removed in MLflow
    becomes the registry's, each with a history row naming MLflow's account as the actor."""
    _require_mlflow()
    with database.reading() as connection:
        names = connection.scalars(select(adapters.c.name).order_by(adapters.c.name)).all()
    # MLflow records no author for an alias move: the actor is the MLflow account this sync reads it
    # with (the one who moved it, when they adopt their own move), and the reason names who adopted it
    user = tracking_user(settings.mlflow_tracking_uri())
    actor = f"mlflow:{user}" if user else "mlflow"
    reason = f"moved in MLflow; adopted by {settings.current_user()} with `adapters sync --from-mlflow`"
    report = SyncReport()
    for name in names:
        found = alias_drift(database, name)
        if found is not None and not found.checked:
            report.failed.append(f"{name}: {found.lines()[0]}")
            continue
        for item in found.drift if found is not None else []:
            if item.mlflow_version is not None and item.mirrors is None:
                report.failed.append(
                    f"{name}@{item.alias}: MLflow's version {item.mlflow_version} mirrors no registry version"
                )
                continue
            adopt_alias(database, name, item.alias, item.mirrors, actor=actor, reason=reason)
            move = f"-> {item.mirrors}" if item.mirrors is not None else "removed"
            report.aliases.append(f"{name}@{item.alias} {move} (from MLflow)")
    return _finished(report, "adopted", "`adapters sync --from-mlflow`")


def _require_mlflow() -> None:
    if not settings.mlflow_mirror_enabled():
        raise InvalidConfig("the MLflow mirror is off (ADAPTERLAB_MLFLOW_MIRROR); unset it to sync")
    try:
        reachable_tracking_uri()
    except TrackingServerDown as exc:
        raise RegistryUnavailable(
            f"{exc}; nothing was changed: start it or check MLFLOW_TRACKING_URI"
        ) from exc


def _finished(report: SyncReport, what: str, command: str) -> SyncReport:
    if report.failed:  # what was done stays done; running sync again retries only the rest
        done = len(report.versions) + len(report.aliases)
        raise RegistryUnavailable(
            f"{len(report.failed)} change(s) could not be {what} ({done} done), first: {report.failed[0]}; "
            f"fix that and run {command} again"
        )
    return report


def _sync_versions(database: Database, report: SyncReport) -> None:
    with database.reading() as connection:
        missing = connection.execute(
            select(adapters.c.name, versions.c.version)
            .join(adapters, adapters.c.id == versions.c.adapter_id)
            .where(versions.c.mlflow_version.is_(None))
            .order_by(adapters.c.name, versions.c.version)
        ).all()
    for name, number in missing:
        record = show(database, Ref(name, version=number))
        try:
            mirrored = _already_mirrored(record) or create_mirrored_version(record)
        except Exception as exc:  # MLflow raises many types; report and go on with the others
            report.failed.append(f"{record.ref}: {error_summary(exc)}")
            continue
        record_mlflow_version(database, name, number, mirrored)
        report.versions.append(record.ref)


def _already_mirrored(record: AdapterVersion) -> int | None:
    """The MLflow version already made for ``record``, if a registration died before recording it."""
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow_client().search_model_versions(f"name = '{record.name}'")  # names never hold quotes
    except MlflowException:
        return None
    for candidate in found:
        tags = candidate.tags or {}
        if (
            tags.get("adapterlab.version") == str(record.version)
            and tags.get("sha256") == record.sha256
            and candidate.source == model_uri(record)  # not one made before versions were MLflow Models
        ):
            return int(candidate.version)
    return None


def _sync_aliases(database: Database, report: SyncReport) -> None:
    from mlflow.exceptions import MlflowException

    with database.reading() as connection:
        wanted = connection.execute(
            select(adapters.c.name, aliases.c.alias, versions.c.version, versions.c.mlflow_version)
            .join(aliases, aliases.c.adapter_id == adapters.c.id)
            .join(versions, versions.c.id == aliases.c.version_id)
        ).all()
        ours = connection.execute(
            select(adapters.c.name, promotions.c.alias)
            .join(promotions, promotions.c.adapter_id == adapters.c.id)
            .distinct()
        ).all()
    targets: dict[str, dict[str, tuple[int, int | None]]] = {}
    for name, alias, number, mlflow_version in wanted:
        targets.setdefault(name, {})[alias] = (number, mlflow_version)
    managed: dict[str, set[str]] = {}
    for name, alias in ours:
        managed.setdefault(name, set()).add(alias)
    client = mlflow_client()
    for name in sorted(set(targets) | set(managed)):
        try:
            current = dict(client.get_registered_model(name).aliases or {})
        except MlflowException as exc:
            if targets.get(name):
                report.failed.append(f"{name}: {error_summary(exc)}")
            continue
        _sync_model_aliases(name, targets.get(name, {}), managed.get(name, set()), current, report)


def _sync_model_aliases(
    name: str,
    targets: dict[str, tuple[int, int | None]],
    managed: set[str],
    current: dict[str, Any],
    report: SyncReport,
) -> None:
    for alias, (number, mlflow_version) in sorted(targets.items()):
        if mlflow_version is None:
            report.failed.append(f"{name}@{alias}: {name}:{number} is not mirrored")
        elif str(current.get(alias)) != str(mlflow_version):
            _move(name, alias, mlflow_version, f"{name}@{alias} -> {number}", report)
    for alias in sorted(managed - set(targets)):
        if alias in current:
            _move(name, alias, None, f"{name}@{alias} removed", report)


def _move(name: str, alias: str, mlflow_version: int | None, label: str, report: SyncReport) -> None:
    try:
        set_mirrored_alias(name, alias, mlflow_version)
    except Exception as exc:  # report and go on with the other aliases
        report.failed.append(f"{label}: {redact(error_summary(exc))}")
        return
    report.aliases.append(label)
