"""Reading the registry: resolving references, listing versions, building records.

Core queries only (see ``tables.py``): rows come back as ``Row`` objects, read by attribute.
Each function takes the opened :class:`Database` and parsed references; the public
:class:`adapterlab.registry.Registry` parses the user's text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from sqlalchemy import Connection, Row, Table, func, select

from adapterlab.errors import AdapterNotFound, InvalidConfig
from adapterlab.hf_format import PeftType, TaskType
from adapterlab.registry.db.database import Database
from adapterlab.registry.db.tables import adapters, aliases, base_models, metrics, promotions, tags, versions
from adapterlab.registry.names import Ref, not_found, validate_alias, validate_name
from adapterlab.registry.records import (
    AdapterVersion,
    BaseModelInfo,
    Promotion,
    VersionSummary,
    base_spec_fields,
    iso_time,
)
from adapterlab.validation import parse_choice

log = logging.getLogger("adapterlab.registry")

_IN_BATCH = 900  # stays below every SQLite build's limit on bound parameters
LIMIT_MAX = 2**31 - 1  # beyond it SQLite's and PostgreSQL's drivers overflow rather than list everything


def find_adapter(connection: Connection, name: str) -> Row:
    """The ``adapters`` row named ``name``, or AdapterNotFound listing close names."""
    adapter = connection.execute(select(adapters).where(adapters.c.name == name)).first()
    if adapter is None:
        raise not_found("adapter", name, connection.scalars(select(adapters.c.name)))
    return adapter


def resolve_ref(connection: Connection, ref: Ref) -> tuple[Row, Row]:
    """The adapter and version rows a reference names, or AdapterNotFound with what does exist."""
    adapter = find_adapter(connection, ref.name)
    query = select(versions).where(versions.c.adapter_id == adapter.id)
    if ref.version is not None:
        version = connection.execute(query.where(versions.c.version == ref.version)).first()
        if version is None:
            raise AdapterNotFound(
                f"{ref.name} has no version {ref.version} (latest is {adapter.latest_version})"
            )
    elif ref.alias is not None:
        version = connection.execute(
            query.join(aliases, aliases.c.version_id == versions.c.id).where(
                aliases.c.adapter_id == adapter.id, aliases.c.alias == ref.alias
            )
        ).first()
        if version is None:
            raise _alias_not_found(connection, adapter, ref.alias)
    else:
        version = connection.execute(query.order_by(versions.c.version.desc()).limit(1)).first()
        if version is None:
            raise AdapterNotFound(f"{ref.name} has no versions yet; register one with `adapters register`")
    return adapter, version


def _alias_not_found(connection: Connection, adapter: Row, alias: str) -> AdapterNotFound:
    own = connection.scalars(select(aliases.c.alias).where(aliases.c.adapter_id == adapter.id)).all()
    others = connection.scalars(
        select(adapters.c.name)
        .join(aliases, aliases.c.adapter_id == adapters.c.id)
        .where(aliases.c.alias == alias)
        .limit(3)
    ).all()
    hint = f"; its aliases: {', '.join(sorted(own))}" if own else "; it has no aliases"
    if others:
        hint += f" (@{alias} belongs to {', '.join(others)}, not to {adapter.name})"
    return AdapterNotFound(f"{adapter.name} has no alias @{alias}{hint}")


def base_info(row: Row, adapter_count: int = 0) -> BaseModelInfo:
    return BaseModelInfo(
        **base_spec_fields(row), created_at=iso_time(row.created_at), adapter_count=adapter_count
    )


def version_record(connection: Connection, adapter: Row, version: Row) -> AdapterVersion:
    base = connection.execute(select(base_models).where(base_models.c.id == adapter.base_model_id)).one()
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
        metrics=_pairs(connection, metrics, [version.id]).get(version.id, {}),
        tags=_pairs(connection, tags, [version.id]).get(version.id, {}),
        aliases=_aliases(connection, [version.id]).get(version.id, []),
        description=version.description,
        mlflow_run_id=version.mlflow_run_id,
        mlflow_version=version.mlflow_version,
        created_by=version.created_by,
        created_at=iso_time(version.created_at),
        history=promotion_history(connection, adapter, version=version.version),
    )


def promotion_history(connection: Connection, adapter: Row, version: int | None = None) -> list[Promotion]:
    query = select(promotions).where(promotions.c.adapter_id == adapter.id)
    if version is not None:
        query = query.where((promotions.c.from_version == version) | (promotions.c.to_version == version))
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
        for row in connection.execute(query.order_by(promotions.c.id))
    ]


def _batches(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _IN_BATCH):
        yield ids[start : start + _IN_BATCH]


def _pairs(connection: Connection, table: Table, ids: list[int]) -> dict[int, dict]:
    """``{version_id: {key: value}}`` from the metrics or the tags table."""
    found: dict[int, dict] = {}
    for batch in _batches(ids):
        rows = connection.execute(
            select(table.c.version_id, table.c.key, table.c.value).where(table.c.version_id.in_(batch))
        )
        for version_id, key, value in rows:
            found.setdefault(version_id, {})[key] = value
    return found


def _aliases(connection: Connection, ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for batch in _batches(ids):
        rows = connection.execute(
            select(aliases.c.version_id, aliases.c.alias).where(aliases.c.version_id.in_(batch))
        )
        for version_id, alias in rows:
            found.setdefault(version_id, []).append(alias)
    return {version_id: sorted(names) for version_id, names in found.items()}


def show(database: Database, ref: Ref) -> AdapterVersion:
    """Everything about the version ``ref`` names."""
    with database.reading() as connection:
        return version_record(connection, *resolve_ref(connection, ref))


def history(database: Database, name: str) -> list[Promotion]:
    validate_name(name)
    with database.reading() as connection:
        return promotion_history(connection, find_adapter(connection, name))


def list_bases(database: Database) -> list[BaseModelInfo]:
    with database.reading() as connection:
        counts = dict(
            connection.execute(
                select(adapters.c.base_model_id, func.count()).group_by(adapters.c.base_model_id)
            ).all()
        )
        rows = connection.execute(select(base_models).order_by(base_models.c.name, base_models.c.created_at))
        return [base_info(row, counts.get(row.id, 0)) for row in rows]


def list_versions(
    database: Database,
    *,
    base: str | None = None,
    task_type: str | None = None,
    peft_type: str | None = None,
    alias: str | None = None,
    sort: str | None = None,
    descending: bool = False,
    limit: int | None = None,
) -> list[VersionSummary]:
    """Versions matching every given filter, newest first per adapter, or ordered by a metric."""
    query = (
        select(
            versions.c.id,
            adapters.c.name,
            versions.c.version,
            base_models.c.name,
            adapters.c.task_type,
            versions.c.peft_type,
            versions.c.created_at,
        )
        .join(adapters, adapters.c.id == versions.c.adapter_id)
        .join(base_models, base_models.c.id == adapters.c.base_model_id)
    )
    task_type = None if task_type is None else parse_choice(TaskType, task_type, "task type").value
    peft_type = None if peft_type is None else parse_choice(PeftType, peft_type, "method").value
    if base is not None:
        query = query.where(base_models.c.name == base)
    if task_type is not None:
        query = query.where(adapters.c.task_type == task_type)
    if peft_type is not None:
        query = query.where(versions.c.peft_type == peft_type)
    if alias is not None:
        query = query.join(aliases, aliases.c.version_id == versions.c.id).where(
            aliases.c.alias == validate_alias(alias)
        )
    if sort is not None:
        value = metrics.c.value if not descending else metrics.c.value.desc()
        query = query.outerjoin(metrics, (metrics.c.version_id == versions.c.id) & (metrics.c.key == sort))
        query = query.order_by(metrics.c.value.is_(None), value, adapters.c.name, versions.c.version.desc())
    else:
        query = query.order_by(adapters.c.name, versions.c.version.desc())
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIMIT_MAX:
            raise InvalidConfig(f"limit must be a whole number from 1 to {LIMIT_MAX}, got {limit!r}")
        query = query.limit(limit)
    with database.reading() as connection:
        rows = connection.execute(query).all()
        if not rows and (base, task_type, peft_type, alias) != (None,) * 4:
            _explain_no_match(connection, base)
        ids = [row[0] for row in rows]
        found_metrics, found_aliases = _pairs(connection, metrics, ids), _aliases(connection, ids)
    return [
        VersionSummary(
            name=name,
            version=number,
            base=base_name,
            task_type=task,
            peft_type=method,
            aliases=found_aliases.get(version_id, []),
            metrics=found_metrics.get(version_id, {}),
            created_at=iso_time(created),
        )
        for version_id, name, number, base_name, task, method, created in rows
    ]


def _explain_no_match(connection: Connection, base: str | None) -> None:
    """Why a filtered listing is empty: an unknown base name is an error that suggests close ones;
    otherwise a note says which tasks and methods the registry does hold."""
    if base is not None:
        known = connection.scalars(select(base_models.c.name).distinct()).all()
        if base not in known:
            raise not_found("base model", base, known, listing="`adapters bases`")
    tasks = connection.scalars(
        select(adapters.c.task_type).distinct().where(adapters.c.task_type.is_not(None))
    )
    methods = connection.scalars(select(versions.c.peft_type).distinct())
    held = f"tasks: {', '.join(sorted(tasks)) or 'none'}; methods: {', '.join(sorted(methods)) or 'none'}"
    log.warning("Note: no version matches every filter; this registry holds %s", held)
