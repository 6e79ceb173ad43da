"""Alembic run from code on one engine: upgrade or downgrade its schema.

``script_location`` is the installed ``adapterlab.migrations`` package, so migrations work from
a wheel with no ``alembic.ini``. The connection is handed to ``env.py`` through the config's
attributes, which lets the same code migrate SQLite, PostgreSQL and the tests' schemas.

A leaf below ``database.py`` (which creates a new embedded registry at head) and ``migrate.py``
(``adapters db upgrade``), so that neither needs the other.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine


def alembic_config(connection=None):
    from alembic.config import Config

    import adapterlab.migrations

    config = Config()
    config.set_main_option("script_location", str(Path(adapterlab.migrations.__file__).parent))
    config.attributes["connection"] = connection
    return config


def known_revisions() -> list[str]:
    """The revisions this adapterlab's migrations define, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [item.revision for item in reversed(list(script.walk_revisions()))]


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade_engine(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)
