"""Alembic, run from code: ``adapters db upgrade`` / ``downgrade`` / ``current``.

``script_location`` is the installed ``adapterlab.migrations`` package, so migrations work from
a wheel with no ``alembic.ini``. The connection is handed to ``env.py`` through the config's
attributes, which lets the same code migrate SQLite, PostgreSQL and the tests' schemas.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from adapterlab.registry import settings
from adapterlab.registry.db.database import (
    create_registry_engine,
    current_revision,
    forget_registries,
    unreachable,
)


def alembic_config(connection=None):
    from alembic.config import Config

    import adapterlab.migrations

    config = Config()
    config.set_main_option("script_location", str(Path(adapterlab.migrations.__file__).parent))
    config.attributes["connection"] = connection
    return config


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade_engine(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def upgrade(revision: str = "head", registry_url: str | None = None) -> str | None:
    """Migrate the registry to ``revision``; returns the revision it is at afterwards."""
    return _migrate(upgrade_engine, revision, registry_url)


def downgrade(revision: str = "-1", registry_url: str | None = None) -> str | None:
    return _migrate(downgrade_engine, revision, registry_url)


def revision(registry_url: str | None = None) -> str | None:
    """The revision the registry database is at (None: no registry schema)."""
    url = settings.registry_url(registry_url)
    engine = create_registry_engine(url)
    try:
        return current_revision(engine, url)
    finally:
        engine.dispose()


def _migrate(step, target: str, registry_url: str | None) -> str | None:
    url = settings.registry_url(registry_url)
    engine = create_registry_engine(url)
    try:
        step(engine, target)
        return current_revision(engine, url)
    except DBAPIError as exc:
        raise unreachable(url, exc) from exc
    finally:
        engine.dispose()
        forget_registries()  # cached engines checked the old revision
