"""The models and the migrations agree; migrations go both ways; schemas are checked on open."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from adapterlab.cli.main import cli
from adapterlab.errors import RegistryUnavailable
from adapterlab.registry.db import tables
from adapterlab.registry.db.database import SCHEMA_REVISION, open_database
from adapterlab.registry.db.migrate import downgrade, revision, upgrade
from adapterlab.registry.db.revisions import alembic_config


def test_autogenerate_finds_no_difference(registry_url: str) -> None:
    engine = create_engine(registry_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, tables.metadata) == []
    engine.dispose()


def test_code_expects_the_head_revision() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_REVISION


def test_upgrade_downgrade_upgrade(registry_url: str) -> None:
    assert revision(registry_url) == SCHEMA_REVISION
    assert downgrade("base", registry_url=registry_url) is None
    engine = create_engine(registry_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    assert upgrade(registry_url=registry_url) == SCHEMA_REVISION
    database = open_database(registry_url)
    assert database.dialect in {"sqlite", "postgresql"}
    database.close()


def test_db_commands(registry_url: str) -> None:
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["--registry-url", registry_url, "db", "current"]).stdout.strip()
        == SCHEMA_REVISION
    )
    result = runner.invoke(
        cli, ["--registry-url", registry_url, "db", "downgrade", "--revision", "base", "--json"]
    )
    assert result.exit_code == 0 and '"revision": null' in result.stdout
    result = runner.invoke(cli, ["--registry-url", registry_url, "db", "upgrade"])
    assert result.exit_code == 0 and SCHEMA_REVISION in result.stdout


def test_new_embedded_sqlite_is_created_at_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'registry.db'}"
    database = open_database(url)
    assert database.dialect == "sqlite"
    assert revision(url) == SCHEMA_REVISION
    database.close()


def test_other_database_without_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE unrelated (id INTEGER)")
    engine.dispose()
    with pytest.raises(RegistryUnavailable, match="adapters db upgrade"):
        open_database(f"sqlite:///{path}")


def test_unknown_revision_is_refused(registry_url: str) -> None:
    engine = create_engine(registry_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    engine.dispose()
    # `adapters db upgrade` cannot move a database a newer adapterlab migrated: the error says what can
    with pytest.raises(RegistryUnavailable, match="9999_future.*does not know.*pip install -U adapterlab"):
        open_database(registry_url)
    with pytest.raises(RegistryUnavailable, match="9999_future.*does not know"):
        upgrade(registry_url=registry_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{SCHEMA_REVISION}'")
    engine.dispose()


def test_0002_moves_base_folders_to_locations_and_back(registry_url: str) -> None:
    """A registered folder becomes a location (not the identity); a Hub-style name becomes the Hub id."""
    from sqlalchemy import text

    downgrade("0001_initial", registry_url=registry_url)
    engine = create_engine(registry_url)
    row = "'sha', 1, 1, 1, CURRENT_TIMESTAMP"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO base_models (id, name, fingerprint, parameter_count, tensor_count, size_bytes, "
                f"created_at, source) VALUES (1, 'org/model', {row}, '/models/a'), "
                f"(2, 'local-name', {row}, NULL)"
            )
        )
        connection.execute(  # an adapter on each base: altering base_models must keep them
            text(
                "INSERT INTO adapters (name, base_model_id, latest_version, created_at) VALUES "
                "('a', 1, 0, CURRENT_TIMESTAMP), ('b', 2, 0, CURRENT_TIMESTAMP)"
            )
        )
    upgrade(registry_url=registry_url)
    with engine.begin() as connection:
        hub_ids = dict(connection.execute(text("SELECT name, hub_id FROM base_models")).all())
        locations = connection.execute(text("SELECT base_model_id, path, host FROM base_locations")).all()
    assert hub_ids == {"org/model": "org/model", "local-name": None}
    assert [tuple(location) for location in locations] == [(1, "/models/a", "unknown")]
    downgrade("0001_initial", registry_url=registry_url)
    with engine.begin() as connection:
        sources = dict(connection.execute(text("SELECT name, source FROM base_models")).all())
        adapters = connection.execute(text("SELECT name, base_model_id FROM adapters ORDER BY name")).all()
        connection.execute(text("DELETE FROM adapters"))
        connection.execute(text("DELETE FROM base_models"))
    assert [tuple(adapter) for adapter in adapters] == [("a", 1), ("b", 2)]
    assert sources == {"org/model": "/models/a", "local-name": None}
    engine.dispose()
    upgrade(registry_url=registry_url)
