"""Writing versions: one transaction per operation, versions allocated without gaps or duplicates.

The adapter row carries the last version handed out. A writer locks that row (PostgreSQL:
``SELECT ... FOR UPDATE``; SQLite: the database write lock taken at ``BEGIN IMMEDIATE``), bumps
it and inserts the version in the same transaction, so concurrent writers queue instead of
colliding. The unique constraints stay as the last line of defence: a writer that loses a race
(two first versions of one new adapter, two copies of one new base) retries from the start
(``Database.write_retrying``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Row, Table, insert, select, update

from adapterlab.errors import BaseModelMismatch, InvalidConfig
from adapterlab.registry.base_locations import insert_location
from adapterlab.registry.db.database import Database
from adapterlab.registry.db.tables import adapters, base_models, metrics, tags, versions
from adapterlab.registry.files.adapter_folder import AdapterFolder
from adapterlab.registry.records import BaseSpec


@dataclass(frozen=True)
class NewVersion:
    name: str
    base: BaseSpec
    task_type: str | None
    folder: AdapterFolder
    artifact_uri: str
    metrics: dict[str, float]
    tags: dict[str, str]
    description: str | None
    mlflow_run_id: str | None
    created_by: str
    base_folder: str | None = None  # where the base was found; recorded as one of its locations


def add_version(database: Database, new: NewVersion) -> tuple[int, bool]:
    """Insert ``new`` as the adapter's next version; returns (version number, created?).

    Identical content (same sha256) under the same name returns the existing version.
    """
    return database.write_retrying(lambda connection: _add_version(connection, new), f"register {new.name}")


def existing_version(database: Database, name: str, sha256: str) -> int | None:
    """The version of ``name`` with exactly this content, if any (a cheap read before uploading)."""
    with database.reading() as connection:
        return connection.scalar(
            select(versions.c.version)
            .join(adapters, adapters.c.id == versions.c.adapter_id)
            .where(adapters.c.name == name, versions.c.sha256 == sha256)
        )


def check_can_register(database: Database, new: NewVersion) -> None:
    """Every refusal ``add_version`` could make, checked read-only before any file is uploaded:
    values longer than their columns, and a line of versions with another base or task."""
    check_fits(base_models, new.base.__dict__, "base model")
    check_fits(adapters, {"name": new.name, "task_type": new.task_type}, "adapter")
    version_fields = {
        "peft_type": new.folder.peft_type,
        "mlflow_run_id": new.mlflow_run_id,
        "created_by": new.created_by,
    }
    check_fits(versions, version_fields, "version")
    for table, keys in ((metrics, new.metrics), (tags, new.tags)):
        for key in keys:
            check_fits(table, {"key": key}, table.name.removeprefix("version_").rstrip("s"))
    with database.reading() as connection:
        row = connection.execute(
            select(
                adapters.c.name,
                adapters.c.task_type,
                base_models.c.name.label("base"),
                base_models.c.fingerprint,
            )
            .join(base_models, base_models.c.id == adapters.c.base_model_id)
            .where(adapters.c.name == new.name)
        ).one_or_none()
    if row is not None:
        _check_line(
            row.name,
            (row.base, row.fingerprint),
            row.task_type,
            (new.base.name, new.base.fingerprint),
            new.task_type,
        )


def check_fits(table: Table, values: Mapping[str, object], what: str) -> None:
    """Refuse a text longer than its column (PostgreSQL rejects it mid-transaction; SQLite would store it)."""
    for key, value in values.items():
        length = getattr(table.c[key].type, "length", None)
        if isinstance(value, str) and length is not None and len(value) > length:
            raise InvalidConfig(
                f"the {what}'s {key.replace('_', ' ')} is {len(value)} characters long; "
                f"the registry stores at most {length}: shorten it"
            )


def _add_version(connection: Connection, new: NewVersion) -> tuple[int, bool]:
    base = _base_row(connection, new.base)
    if new.base_folder is not None:
        insert_location(connection, base.id, new.base_folder)
    adapter = connection.execute(
        select(adapters).where(adapters.c.name == new.name).with_for_update()
    ).first()
    if adapter is None:
        # a concurrent creator makes this raise IntegrityError: retry, then lock its row
        connection.execute(
            insert(adapters).values(
                name=new.name, base_model_id=base.id, task_type=new.task_type, latest_version=0
            )
        )
        adapter = connection.execute(
            select(adapters).where(adapters.c.name == new.name).with_for_update()
        ).one()
    check_compatible(connection, adapter, base, new.task_type)
    duplicate = connection.scalar(
        select(versions.c.version).where(
            versions.c.adapter_id == adapter.id, versions.c.sha256 == new.folder.sha256
        )
    )
    if duplicate is not None:
        return duplicate, False
    number = adapter.latest_version + 1
    connection.execute(update(adapters).where(adapters.c.id == adapter.id).values(latest_version=number))
    inserted = connection.execute(
        insert(versions).values(
            adapter_id=adapter.id,
            version=number,
            peft_type=new.folder.peft_type,
            config_json=json.dumps(new.folder.config, sort_keys=True),
            artifact_uri=new.artifact_uri,
            sha256=new.folder.sha256,
            size_bytes=new.folder.size_bytes,
            trainable_params=new.folder.trainable_params,
            description=new.description,
            mlflow_run_id=new.mlflow_run_id,
            created_by=new.created_by,
        )
    )
    version_id = inserted.inserted_primary_key[0]
    for table, pairs in ((metrics, new.metrics), (tags, new.tags)):
        if pairs:
            connection.execute(
                insert(table), [{"version_id": version_id, "key": k, "value": v} for k, v in pairs.items()]
            )
    return number, True


def _base_row(connection: Connection, spec: BaseSpec) -> Row:
    this_base = (base_models.c.name == spec.name) & (base_models.c.fingerprint == spec.fingerprint)
    row = connection.execute(select(base_models).where(this_base)).first()
    if row is None:
        connection.execute(insert(base_models).values(**spec.__dict__))
        row = connection.execute(select(base_models).where(this_base)).one()
    return row


def check_compatible(connection: Connection, adapter: Row, base: Row, task_type: str | None) -> None:
    """A line of versions keeps one base model and one task type."""
    registered = connection.execute(
        select(base_models).where(base_models.c.id == adapter.base_model_id)
    ).one()
    _check_line(
        adapter.name,
        (registered.name, registered.fingerprint),
        adapter.task_type,
        (base.name, base.fingerprint),
        task_type,
    )


def _check_line(
    name: str,
    registered: tuple[str, str],
    registered_task: str | None,
    base: tuple[str, str],
    task_type: str | None,
) -> None:
    """The one rule, for the early read-only check and the last one in the write transaction."""
    if registered != base:
        raise BaseModelMismatch(
            f"adapter {name} belongs to base {registered[0]} ({registered[1][:12]}), "
            f"not {base[0]} ({base[1][:12]}); register it under another name"
        )
    if task_type is not None and registered_task is not None and task_type != registered_task:
        raise InvalidConfig(
            f"adapter {name} is for task {registered_task}, not {task_type}; register it under another name"
        )


def record_mlflow_version(database: Database, name: str, version: int, mlflow_version: int) -> None:
    with database.writing() as connection:
        adapter_id = select(adapters.c.id).where(adapters.c.name == name).scalar_subquery()
        connection.execute(
            update(versions)
            .where(versions.c.adapter_id == adapter_id, versions.c.version == version)
            .values(mlflow_version=mlflow_version)
        )
