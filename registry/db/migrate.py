"""``adapters db upgrade`` / ``downgrade`` / ``current``: migrate the registry database at a URL.

The Alembic steps themselves are in ``revisions.py``.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from adapterlab.errors import InvalidConfig, summarize
from adapterlab.registry import settings
from adapterlab.registry.db.database import (
    create_registry_engine,
    current_revision,
    unknown_revision_error,
    unreachable,
)
from adapterlab.registry.db.revisions import downgrade_engine, known_revisions, upgrade_engine


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
                f"cannot migrate to revision {target!r}: {summarize(exc, limit=None)}; "
                f"use head, base, a relative step such as -1, or one of: {', '.join(known_revisions())}"
            ) from exc
        return current_revision(engine, url)
    except DBAPIError as exc:
        raise unreachable(url, exc) from exc
    finally:
        engine.dispose()
