"""The registry's tables, in SQLAlchemy Core: the one definition of the schema.

Alembic compares its migrations against this metadata. The registry reads and writes through
Core alone, never the ORM: importing ``sqlalchemy.orm`` and building mappers would cost about a
fifth of a fresh ``adapters`` process, and the registry hands out its own frozen records
(``records.py``) anyway. Every constraint is named through the naming convention so that
Alembic migrations (and SQLite batch mode, which rebuilds tables) can refer to them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 128  # adapter names; base names get more room for long Hub ids
BASE_NAME_LENGTH = 256

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _created_at() -> Column:
    return Column("created_at", DateTime(timezone=True), nullable=False, default=utc_now)


# A base model's weights, identified by their fingerprint; one name may have several. Where its
# files lie is no part of its identity: that is ``base_locations``.
base_models = Table(
    "base_models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(BASE_NAME_LENGTH), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("hub_id", String(BASE_NAME_LENGTH)),  # the Hugging Face Hub id, when known
    Column("revision", String(128)),
    Column("model_type", String(64)),
    Column("parameter_count", BigInteger, nullable=False),
    Column("tensor_count", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    _created_at(),
    UniqueConstraint("name", "fingerprint"),
)

# Folders known to hold a base's weights, on some machine: where ``locate_base`` looks first. A
# location is a hint, verified by fingerprint whenever it is used.
base_locations = Table(
    "base_locations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("base_model_id", ForeignKey("base_models.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("path", Text, nullable=False),
    Column("host", String(255), nullable=False),  # the machine the path is on
    Column("added_by", String(128), nullable=False),
    _created_at(),
    UniqueConstraint("base_model_id", "host", "path"),
)

# A named line of versions, for one base model and one task type.
adapters = Table(
    "adapters",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False, unique=True),
    Column("base_model_id", ForeignKey("base_models.id"), nullable=False, index=True),
    Column("task_type", String(64)),
    # the last version handed out; bumped under a row lock so versions have no gaps or duplicates
    Column("latest_version", Integer, nullable=False, default=0),
    _created_at(),
)

versions = Table(
    "adapter_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("adapter_id", ForeignKey("adapters.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("peft_type", String(32), nullable=False, index=True),
    Column("config_json", Text, nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("trainable_params", BigInteger, nullable=False),
    Column("description", Text),
    Column("mlflow_run_id", String(64)),
    Column("mlflow_version", Integer),  # MLflow numbers its copies itself
    Column("created_by", String(128), nullable=False),
    _created_at(),
    UniqueConstraint("adapter_id", "version"),
    UniqueConstraint("adapter_id", "sha256"),
    # target of the aliases' composite key: an alias can only name its own adapter's versions
    UniqueConstraint("adapter_id", "id"),
)


def _version_pairs(name: str, value_type: type[Float] | type[Text]) -> Table:
    """A version's KEY=VALUE pairs: its metrics (numbers) or its tags (text)."""
    return Table(
        name,
        metadata,
        Column("version_id", ForeignKey("adapter_versions.id", ondelete="CASCADE"), primary_key=True),
        Column("key", String(128), primary_key=True),
        Column("value", value_type, nullable=False),
    )


metrics = _version_pairs("version_metrics", Float)
tags = _version_pairs("version_tags", Text)

aliases = Table(
    "aliases",
    metadata,
    Column("adapter_id", ForeignKey("adapters.id", ondelete="CASCADE"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version_id", Integer, nullable=False, index=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=utc_now),
    ForeignKeyConstraint(
        ["adapter_id", "version_id"],
        ["adapter_versions.adapter_id", "adapter_versions.id"],
        ondelete="CASCADE",
    ),
)

# Every move of an alias: who, when, from which version, to which (None: removed), why.
promotions = Table(
    "promotions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("adapter_id", ForeignKey("adapters.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("alias", String(64), nullable=False),
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("actor", String(128), nullable=False),
    Column("reason", Text),
    _created_at(),
)
