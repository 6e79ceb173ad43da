"""a base is its fingerprint and Hub id; its local folders move to base_locations

Revision ID: 0002_base_locations
Revises: 0001_initial
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_base_locations"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


# SQLite: base_models is altered in place (ALTER TABLE ... DROP COLUMN, SQLite 3.35+), never rebuilt.
# A rebuild drops the table, and with foreign keys on (the registry's connections) that would delete
# the new locations (ON DELETE CASCADE) or fail on the adapters that refer to their base.


def upgrade() -> None:
    op.create_table(
        "base_locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("added_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["base_model_id"],
            ["base_models.id"],
            name=op.f("fk_base_locations_base_model_id_base_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_base_locations")),
        sa.UniqueConstraint(
            "base_model_id", "host", "path", name=op.f("uq_base_locations_base_model_id_host_path")
        ),
    )
    op.create_index(
        op.f("ix_base_locations_base_model_id"), "base_locations", ["base_model_id"], unique=False
    )
    # the folder each base was registered from becomes its first known location; which machine it
    # was on was never recorded
    op.execute(
        "INSERT INTO base_locations (base_model_id, path, host, added_by, created_at) "
        "SELECT id, source, 'unknown', 'migration 0002', created_at FROM base_models WHERE source IS NOT NULL"
    )
    with op.batch_alter_table("base_models", recreate="never") as batch:
        batch.add_column(sa.Column("hub_id", sa.String(length=256), nullable=True))
        batch.drop_column("source")
    # until now a base found under a Hub id was named by it; an org/name form is the best hint left.
    # A wrong guess only costs a look in the cache: every folder found is verified by fingerprint.
    op.execute("UPDATE base_models SET hub_id = name WHERE name LIKE '%/%'")


def downgrade() -> None:
    with op.batch_alter_table("base_models", recreate="never") as batch:
        batch.add_column(sa.Column("source", sa.Text(), nullable=True))
        batch.drop_column("hub_id")
    op.execute(
        "UPDATE base_models SET source = (SELECT path FROM base_locations "
        "WHERE base_locations.base_model_id = base_models.id ORDER BY created_at, id LIMIT 1)"
    )
    op.drop_index(op.f("ix_base_locations_base_model_id"), table_name="base_locations")
    op.drop_table("base_locations")
