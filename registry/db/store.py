"""Writing versions: one transaction per operation, versions allocated without gaps or duplicates.

The adapter row carries the last version handed out. A writer locks that row (PostgreSQL:
``SELECT ... FOR UPDATE``; SQLite: the database write lock taken at ``BEGIN IMMEDIATE``), bumps
it and inserts the version in the same transaction, so concurrent writers queue instead of
colliding. The unique constraints stay as the last line of defence: a writer that loses a race
(two first versions of one new adapter, two copies of one new base) retries from the start
(``Registry.write_retrying``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from adapterlab.errors import BaseModelMismatch, InvalidConfig
from adapterlab.registry.db.database import Registry
from adapterlab.registry.db.tables import adapters, versions
from adapterlab.registry.files.adapter_folder import AdapterFolder
from adapterlab.registry.records import BaseSpec
from adapterlab.registry.schema import AdapterRow, BaseModelRow, MetricRow, TagRow, VersionRow


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


def add_version(registry: Registry, new: NewVersion) -> tuple[int, bool]:
    """Insert ``new`` as the adapter's next version; returns (version number, created?).

    Identical content (same sha256) under the same name returns the existing version.
    """
    return registry.write_retrying(lambda connection: _in_session(connection, new), f"register {new.name}")


def existing_version(registry: Registry, name: str, sha256: str) -> int | None:
    """The version of ``name`` with exactly this content, if any (a cheap read before uploading)."""
    with registry.reading() as connection:
        return connection.scalar(
            select(versions.c.version)
            .join(adapters, adapters.c.id == versions.c.adapter_id)
            .where(adapters.c.name == name, versions.c.sha256 == sha256)
        )


def _in_session(connection: Connection, new: NewVersion) -> tuple[int, bool]:
    # An ORM unit of work inside the registry's write transaction: the session joins the
    # connection's transaction and never commits it, so a lost race still rolls back everything.
    with Session(bind=connection, join_transaction_mode="rollback_only") as session:
        result = _add_version(session, new)
        session.flush()
        return result


def _add_version(session: Session, new: NewVersion) -> tuple[int, bool]:
    base = _base_row(session, new.base)
    adapter = session.scalar(select(AdapterRow).where(AdapterRow.name == new.name).with_for_update())
    if adapter is None:
        adapter = AdapterRow(name=new.name, base_model_id=base.id, task_type=new.task_type, latest_version=0)
        session.add(adapter)
        session.flush()  # a concurrent creator makes this raise IntegrityError: retry, then lock its row
    check_compatible(session, adapter, base, new.task_type)
    duplicate = session.scalar(
        select(VersionRow.version).where(VersionRow.adapter_id == adapter.id, VersionRow.sha256 == new.folder.sha256)
    )
    if duplicate is not None:
        return duplicate, False
    adapter.latest_version += 1
    version = VersionRow(
        adapter_id=adapter.id,
        version=adapter.latest_version,
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
    session.add(version)
    session.flush()
    session.add_all(MetricRow(version_id=version.id, key=key, value=value) for key, value in new.metrics.items())
    session.add_all(TagRow(version_id=version.id, key=key, value=value) for key, value in new.tags.items())
    return version.version, True


def _base_row(session: Session, spec: BaseSpec) -> BaseModelRow:
    row = session.scalar(
        select(BaseModelRow).where(BaseModelRow.name == spec.name, BaseModelRow.fingerprint == spec.fingerprint)
    )
    if row is None:
        row = BaseModelRow(**spec.__dict__)
        session.add(row)
        session.flush()
    return row


def check_compatible(session: Session, adapter: AdapterRow, base: BaseModelRow, task_type: str | None) -> None:
    """A line of versions keeps one base model and one task type."""
    if adapter.base_model_id != base.id:
        registered = session.get(BaseModelRow, adapter.base_model_id)
        raise BaseModelMismatch(
            f"adapter {adapter.name} belongs to base {registered.name} ({registered.fingerprint[:12]}), "
            f"not {base.name} ({base.fingerprint[:12]}); register it under another name"
        )
    if task_type is not None and adapter.task_type is not None and task_type != adapter.task_type:
        raise InvalidConfig(
            f"adapter {adapter.name} is for task {adapter.task_type}, not {task_type}; register it under another name"
        )


def record_mlflow_version(registry: Registry, name: str, version: int, mlflow_version: int) -> None:
    with registry.writing() as connection:
        adapter_id = select(adapters.c.id).where(adapters.c.name == name).scalar_subquery()
        connection.execute(
            update(versions)
            .where(versions.c.adapter_id == adapter_id, versions.c.version == version)
            .values(mlflow_version=mlflow_version)
        )
