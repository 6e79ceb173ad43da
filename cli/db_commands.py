"""``adapters db upgrade / downgrade / current``: the registry schema's migrations."""

from __future__ import annotations

import click

from adapterlab.cli.context import cli_state
from adapterlab.cli.output import json_output


def _revision(revision: str | None) -> dict[str, str | None]:
    return {"revision": revision}


@click.group("db")
def db_group() -> None:
    """The registry database's schema.

    \b
    Example:
        adapters --registry-url postgresql://user@db/registry db upgrade
    """


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
@json_output(text=lambda result: f"Registry schema at {result['revision']}")
def upgrade_command(revision: str):
    """Migrate the registry database to the schema this adapterlab needs.

    \b
    Example:
        adapters db upgrade
    """
    from adapterlab.registry.db.migrate import upgrade

    return _revision(upgrade(revision, cli_state().registry_url))


@db_group.command("downgrade")
@click.option(
    "--revision", default="-1", show_default=True, help="Target Alembic revision (base: drop everything)."
)
@json_output(text=lambda result: f"Registry schema at {result['revision'] or 'base (empty)'}")
def downgrade_command(revision: str):
    """Migrate the registry database back (to run an older adapterlab).

    \b
    Example:
        adapters db downgrade --revision base
    """
    from adapterlab.registry.db.migrate import downgrade

    return _revision(downgrade(revision, cli_state().registry_url))


@db_group.command("current")
@json_output(text=lambda result: result["revision"] or "none (run `adapters db upgrade`)")
def current_command():
    """Print the schema revision the registry database is at.

    \b
    Example:
        adapters db current
    """
    from adapterlab.registry.db.migrate import revision

    return _revision(revision(cli_state().registry_url))
