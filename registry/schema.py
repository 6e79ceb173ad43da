"""The registry's tables as typed SQLAlchemy 2 models, for the writers that want a unit of work.

The models map onto the Core tables of ``tables.py`` (the one definition of the schema, which
Alembic compares against); the annotations give type checkers the columns' Python types. The
ORM rows never leave ``adapterlab.registry``: callers get the frozen records of ``records.py``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import DeclarativeBase, Mapped

from adapterlab.registry.db import tables
from adapterlab.registry.db.tables import BASE_NAME_LENGTH, NAME_LENGTH, utc_now

__all__ = ["BASE_NAME_LENGTH", "NAME_LENGTH", "utc_now", "Base", "BaseModelRow", "AdapterRow", "VersionRow",
           "MetricRow", "TagRow", "AliasRow", "PromotionRow"]  # fmt: skip


class Base(DeclarativeBase):
    metadata = tables.metadata


class BaseModelRow(Base):
    __table__ = tables.base_models

    id: Mapped[int]
    name: Mapped[str]
    fingerprint: Mapped[str]
    revision: Mapped[str | None]
    model_type: Mapped[str | None]
    parameter_count: Mapped[int]
    tensor_count: Mapped[int]
    size_bytes: Mapped[int]
    source: Mapped[str | None]
    created_at: Mapped[datetime]


class AdapterRow(Base):
    __table__ = tables.adapters

    id: Mapped[int]
    name: Mapped[str]
    base_model_id: Mapped[int]
    task_type: Mapped[str | None]
    latest_version: Mapped[int]
    created_at: Mapped[datetime]


class VersionRow(Base):
    __table__ = tables.versions

    id: Mapped[int]
    adapter_id: Mapped[int]
    version: Mapped[int]
    peft_type: Mapped[str]
    config_json: Mapped[str]
    artifact_uri: Mapped[str]
    sha256: Mapped[str]
    size_bytes: Mapped[int]
    trainable_params: Mapped[int]
    description: Mapped[str | None]
    mlflow_run_id: Mapped[str | None]
    mlflow_version: Mapped[int | None]
    created_by: Mapped[str]
    created_at: Mapped[datetime]


class MetricRow(Base):
    __table__ = tables.metrics

    version_id: Mapped[int]
    key: Mapped[str]
    value: Mapped[float]


class TagRow(Base):
    __table__ = tables.tags

    version_id: Mapped[int]
    key: Mapped[str]
    value: Mapped[str]


class AliasRow(Base):
    __table__ = tables.aliases

    adapter_id: Mapped[int]
    alias: Mapped[str]
    version_id: Mapped[int]
    updated_at: Mapped[datetime]


class PromotionRow(Base):
    __table__ = tables.promotions

    id: Mapped[int]
    adapter_id: Mapped[int]
    alias: Mapped[str]
    from_version: Mapped[int | None]
    to_version: Mapped[int | None]
    actor: Mapped[str]
    reason: Mapped[str | None]
    created_at: Mapped[datetime]
