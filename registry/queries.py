"""Reading the registry: resolving references, listing versions, building records."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapterlab.errors import AdapterNotFound
from adapterlab.registry.database import open_registry
from adapterlab.registry.names import Ref, not_found, parse_ref, validate_alias, validate_name
from adapterlab.registry.records import AdapterVersion, BaseModelInfo, Promotion, VersionSummary, iso_time
from adapterlab.registry.schema import (
    AdapterRow,
    AliasRow,
    BaseModelRow,
    MetricRow,
    PromotionRow,
    TagRow,
    VersionRow,
)

_IN_BATCH = 900  # stays below every SQLite build's limit on bound parameters


def find_adapter(session: Session, name: str) -> AdapterRow:
    adapter = session.scalar(select(AdapterRow).where(AdapterRow.name == name))
    if adapter is None:
        raise not_found("adapter", name, session.scalars(select(AdapterRow.name)))
    return adapter


def resolve_ref(session: Session, ref: Ref) -> tuple[AdapterRow, VersionRow]:
    """The adapter and version a reference names, or AdapterNotFound with what does exist."""
    adapter = find_adapter(session, ref.name)
    query = select(VersionRow).where(VersionRow.adapter_id == adapter.id)
    if ref.version is not None:
        version = session.scalar(query.where(VersionRow.version == ref.version))
        if version is None:
            raise AdapterNotFound(f"{ref.name} has no version {ref.version} (latest is {adapter.latest_version})")
    elif ref.alias is not None:
        version = session.scalar(
            query.join(AliasRow, AliasRow.version_id == VersionRow.id).where(
                AliasRow.adapter_id == adapter.id, AliasRow.alias == ref.alias
            )
        )
        if version is None:
            raise _alias_not_found(session, adapter, ref.alias)
    else:
        version = session.scalar(query.order_by(VersionRow.version.desc()).limit(1))
        if version is None:
            raise AdapterNotFound(f"{ref.name} has no versions yet; register one with `adapters register`")
    return adapter, version


def _alias_not_found(session: Session, adapter: AdapterRow, alias: str) -> AdapterNotFound:
    own = session.scalars(select(AliasRow.alias).where(AliasRow.adapter_id == adapter.id)).all()
    others = session.scalars(
        select(AdapterRow.name).join(AliasRow, AliasRow.adapter_id == AdapterRow.id).where(AliasRow.alias == alias).limit(3)
    ).all()
    hint = f"; its aliases: {', '.join(sorted(own))}" if own else "; it has no aliases"
    if others:
        hint += f" (@{alias} belongs to {', '.join(others)}, not to {adapter.name})"
    return AdapterNotFound(f"{adapter.name} has no alias @{alias}{hint}")


def base_info(row: BaseModelRow, adapter_count: int = 0) -> BaseModelInfo:
    return BaseModelInfo(
        name=row.name,
        fingerprint=row.fingerprint,
        revision=row.revision,
        model_type=row.model_type,
        parameter_count=row.parameter_count,
        tensor_count=row.tensor_count,
        size_bytes=row.size_bytes,
        source=row.source,
        created_at=iso_time(row.created_at),
        adapter_count=adapter_count,
    )


def version_record(session: Session, adapter: AdapterRow, version: VersionRow) -> AdapterVersion:
    base = session.get(BaseModelRow, adapter.base_model_id)
    metrics = _pairs(session, MetricRow, [version.id]).get(version.id, {})
    tags = _pairs(session, TagRow, [version.id]).get(version.id, {})
    return AdapterVersion(
        name=adapter.name,
        version=version.version,
        base=base_info(base),
        task_type=adapter.task_type,
        peft_type=version.peft_type,
        config=json.loads(version.config_json),
        artifact_uri=version.artifact_uri,
        sha256=version.sha256,
        size_bytes=version.size_bytes,
        trainable_params=version.trainable_params,
        metrics=metrics,
        tags=tags,
        aliases=_aliases(session, [version.id]).get(version.id, []),
        description=version.description,
        mlflow_run_id=version.mlflow_run_id,
        mlflow_version=version.mlflow_version,
        created_by=version.created_by,
        created_at=iso_time(version.created_at),
        history=promotion_history(session, adapter, version=version.version),
    )


def promotion_history(session: Session, adapter: AdapterRow, version: int | None = None) -> list[Promotion]:
    query = select(PromotionRow).where(PromotionRow.adapter_id == adapter.id)
    if version is not None:
        query = query.where((PromotionRow.from_version == version) | (PromotionRow.to_version == version))
    return [
        Promotion(
            name=adapter.name,
            alias=row.alias,
            from_version=row.from_version,
            to_version=row.to_version,
            actor=row.actor,
            reason=row.reason,
            created_at=iso_time(row.created_at),
        )
        for row in session.scalars(query.order_by(PromotionRow.id))
    ]


def _batches(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _IN_BATCH):
        yield ids[start : start + _IN_BATCH]


def _pairs(session: Session, table: type[MetricRow] | type[TagRow], ids: list[int]) -> dict[int, dict]:
    found: dict[int, dict] = {}
    for batch in _batches(ids):
        rows = session.execute(select(table.version_id, table.key, table.value).where(table.version_id.in_(batch)))
        for version_id, key, value in rows:
            found.setdefault(version_id, {})[key] = value
    return found


def _aliases(session: Session, ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for batch in _batches(ids):
        rows = session.execute(select(AliasRow.version_id, AliasRow.alias).where(AliasRow.version_id.in_(batch)))
        for version_id, alias in rows:
            found.setdefault(version_id, []).append(alias)
    return {version_id: sorted(names) for version_id, names in found.items()}


def show(ref: str, registry_url: str | None = None) -> AdapterVersion:
    """Everything about one version; ``ref`` is ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``."""
    parsed = parse_ref(ref)
    with open_registry(registry_url).reading() as session:
        return version_record(session, *resolve_ref(session, parsed))


def history(name: str, registry_url: str | None = None) -> list[Promotion]:
    validate_name(name)
    with open_registry(registry_url).reading() as session:
        return promotion_history(session, find_adapter(session, name))


def list_bases(registry_url: str | None = None) -> list[BaseModelInfo]:
    with open_registry(registry_url).reading() as session:
        counts = dict(session.execute(select(AdapterRow.base_model_id, func.count()).group_by(AdapterRow.base_model_id)).all())
        rows = session.scalars(select(BaseModelRow).order_by(BaseModelRow.name, BaseModelRow.created_at))
        return [base_info(row, counts.get(row.id, 0)) for row in rows]


def list_versions(
    *,
    base: str | None = None,
    task_type: str | None = None,
    peft_type: str | None = None,
    alias: str | None = None,
    sort: str | None = None,
    descending: bool = False,
    limit: int | None = None,
    registry_url: str | None = None,
) -> list[VersionSummary]:
    """Versions matching every given filter, newest first per adapter, or ordered by a metric."""
    query = (
        select(VersionRow.id, AdapterRow.name, VersionRow.version, BaseModelRow.name, AdapterRow.task_type,
               VersionRow.peft_type, VersionRow.created_at)
        .join(AdapterRow, AdapterRow.id == VersionRow.adapter_id)
        .join(BaseModelRow, BaseModelRow.id == AdapterRow.base_model_id)
    )  # fmt: skip
    if base is not None:
        query = query.where(BaseModelRow.name == base)
    if task_type is not None:
        query = query.where(AdapterRow.task_type == task_type)
    if peft_type is not None:
        query = query.where(VersionRow.peft_type == peft_type.upper())
    if alias is not None:
        query = query.join(AliasRow, AliasRow.version_id == VersionRow.id).where(AliasRow.alias == validate_alias(alias))
    if sort is not None:
        value = MetricRow.value if not descending else MetricRow.value.desc()
        query = query.outerjoin(MetricRow, (MetricRow.version_id == VersionRow.id) & (MetricRow.key == sort))
        query = query.order_by(MetricRow.value.is_(None), value, AdapterRow.name, VersionRow.version.desc())
    else:
        query = query.order_by(AdapterRow.name, VersionRow.version.desc())
    if limit is not None:
        query = query.limit(limit)
    with open_registry(registry_url).reading() as session:
        rows = session.execute(query).all()
        ids = [row[0] for row in rows]
        metrics, aliases = _pairs(session, MetricRow, ids), _aliases(session, ids)
    return [
        VersionSummary(name=name, version=number, base=base_name, task_type=task, peft_type=method,
                       aliases=aliases.get(version_id, []), metrics=metrics.get(version_id, {}),
                       created_at=iso_time(created))
        for version_id, name, number, base_name, task, method, created in rows
    ]  # fmt: skip
