"""Alembic, run from code: ``adapters db upgrade`` / ``downgrade`` / ``current``.

``script_location`` is the installed ``adapterlab.migrations`` package, so migrations work from
a wheel with no ``alembic.ini``. The connection is handed to ``env.py`` through the config's
attributes, which lets the same code migrate SQLite, PostgreSQL and the tests' schemas.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from adapterlab.errors import InvalidConfig, RegistryUnavailable
from adapterlab.registry import settings
from adapterlab.registry.database import (
    create_registry_engine,
    current_revision,
    display_url,
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


def known_revisions() -> list[str]:
    """The revisions this adapterlab's migrations define, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [item.revision for item in reversed(list(script.walk_revisions()))]


def unknown_revision_error(revision: str, url: str) -> RegistryUnavailable:
    """A database stamped by a newer adapterlab: no migration here can move it, so say what can."""
    return RegistryUnavailable(
        f"the registry database at {display_url(url)} is at schema revision {revision!r}, which this adapterlab "
        f"does not know (its revisions: {', '.join(known_revisions())}); it was migrated by a newer adapterlab: "
        "upgrade adapterlab (pip install -U adapterlab) to use it"
    )


def _migrate(step, target: str, registry_url: str | None) -> str | None:
    from alembic.util import CommandError

    url = settings.registry_url(registry_url)
    engine = create_registry_engine(url)
    try:
        at = current_revision(engine, url)
        if at is not None and at not in known_revisions():
            raise unknown_revision_error(at, url)
        try:
            step(engine, target)
        except CommandError as exc:  # a target no migration here defines
            raise InvalidConfig(
                f"cannot migrate to revision {target!r}: {' '.join(str(exc).split())}; "
                f"use head, base, a relative step such as -1, or one of: {', '.join(known_revisions())}"
            ) from exc
        return current_revision(engine, url)
    except DBAPIError as exc:
        raise unreachable(url, exc) from exc
    finally:
        engine.dispose()
        forget_registries()  # cached engines checked the old revision
