"""Alembic environment: migrates the connection handed over by ``adapterlab.registry.db.migrate``."""

from __future__ import annotations

from alembic import context

from adapterlab.registry.db.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the registry's migrations through `adapters db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by rebuilding them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
