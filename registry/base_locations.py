"""Finding a registered base model's files on this machine, verified by their fingerprint.

A base is recorded by content (its weights' fingerprint) plus its Hub id and revision when
known; folders that held it are only hints (``base_locations`` rows), since the registry is
shared between machines and a folder on one is meaningless on another. ``locate_base`` tries,
in order: the folder or Hub id the user gave (``--base``), the registered folders, the Hugging
Face cache for the Hub id at its revision, then the Hub itself when it answers at once. Every
folder found is fingerprinted (cached: ``files/fingerprint_cache.py``) before it is used.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, case, insert, select

from adapterlab.errors import BaseModelMismatch, BaseModelNotFound, CheckpointError, InvalidConfig
from adapterlab.registry import settings
from adapterlab.registry.db.database import Database
from adapterlab.registry.db.tables import base_locations, base_models
from adapterlab.registry.files.fingerprint import fingerprint_checkpoint
from adapterlab.registry.hub_access import HUB_ID, cached_snapshot, download_snapshot, hub_reachable
from adapterlab.registry.names import not_found
from adapterlab.registry.records import BaseLocation, BaseSpec, iso_time
from adapterlab.registry.redaction import error_summary

WHAT_TO_PASS = "pass --base PATH|HUB_ID (library: base=...) or run `adapters base add-location NAME PATH`"


def locate_base(
    base: BaseSpec, *, given: str | Path | None = None, database: Database | None = None, use_hub: bool = True
) -> Path:
    """A local folder holding exactly the weights of ``base`` (by fingerprint).

    ``given`` (a folder or a Hub id) must hold them (else BaseModelMismatch); without it the
    registered folders (when ``database`` is given), the Hugging Face cache and (``use_hub``) the
    Hub are tried in that order. Raises BaseModelNotFound, listing what was tried, when none holds them.
    """
    if given is not None:
        folder = resolve_given(given, base.revision if str(given) == base.hub_id else None)
        found = _fingerprint(folder)
        if found is None:
            raise BaseModelNotFound(f"--base {given} holds no readable model weights; pass the base's folder")
        if found != base.fingerprint:
            raise BaseModelMismatch(
                f"--base {given} holds other weights ({found[:12]}) than the base "
                f"{base.name} ({base.fingerprint[:12]}); pass a copy of the base the adapter was trained on"
            )
        return folder
    tried: list[str] = []
    for folder, what in _candidates(base, database, tried, use_hub):
        found = _fingerprint(folder)
        if found == base.fingerprint:
            return folder
        tried.append(f"{what} (other weights)" if found else f"{what} (no readable weights)")
    raise BaseModelNotFound(
        f"base {base.name} ({base.fingerprint[:12]}) is not on this machine; tried: {'; '.join(tried)}; "
        + WHAT_TO_PASS
    )


def resolve_given(given: str | Path, revision: str | None = None) -> Path:
    """The folder ``--base`` names, unverified: a folder as given, or a Hub id's snapshot (cache, then
    Hub)."""
    folder = Path(given).expanduser()
    if folder.is_dir():
        return folder.absolute()
    text = str(given)
    if not HUB_ID.fullmatch(text):
        raise BaseModelNotFound(f"--base {text} is no folder and no Hub id; pass a model folder or a Hub id")
    snapshot = cached_snapshot(text, revision)
    if snapshot is not None:
        return snapshot
    if hub_reachable():
        try:
            return download_snapshot(text, revision)
        except Exception as exc:  # huggingface_hub's many errors: unknown repository, gated, network
            raise BaseModelNotFound(f"--base {text}: cannot download it ({error_summary(exc)})") from exc
    raise BaseModelNotFound(
        f"--base {text} is no folder, is not in the Hugging Face cache, and the Hub is not reachable "
        "(offline); pass a model folder"
    )


def _candidates(
    base: BaseSpec, database: Database | None, tried: list[str], use_hub: bool
) -> Iterator[tuple[Path, str]]:
    """Folders that may hold ``base``, most likely first; what yields nothing is noted in ``tried``."""
    for path in registered_locations(database, base) if database is not None else ():
        if Path(path).is_dir():
            yield Path(path), f"registered folder {path}"
        else:
            tried.append(f"registered folder {path} (missing)")
    if base.hub_id is None:
        tried.append("no Hub id is recorded for it")
        return
    at = f"{base.hub_id}@{base.revision or 'main'}"
    snapshot = cached_snapshot(base.hub_id, base.revision)
    if snapshot is not None:
        yield snapshot, f"the Hugging Face cache ({at})"
    else:
        tried.append(f"the Hugging Face cache (no {at})")
    if not use_hub:
        return
    if not hub_reachable():
        tried.append("the Hub (offline)")
        return
    try:
        yield download_snapshot(base.hub_id, base.revision), f"the Hub ({at})"
    except Exception as exc:  # huggingface_hub's many errors: unknown repository, gated, network
        tried.append(f"the Hub ({at}: {error_summary(exc)})")


def _fingerprint(folder: Path) -> str | None:
    try:
        return fingerprint_checkpoint(folder).fingerprint
    except (CheckpointError, OSError):  # no weights there, or unreadable ones
        return None


def registered_locations(database: Database, base: BaseSpec) -> list[str]:
    """The recorded folders of the weights of ``base``: those recorded for it (not for another name of
    the same weights) first, then this machine's, then the newest."""
    elsewhere = case((base_locations.c.host == this_host(), 0), else_=1)
    other_name = case((base_models.c.name == base.name, 0), else_=1)
    query = (
        select(base_locations.c.path)
        .join(base_models, base_models.c.id == base_locations.c.base_model_id)
        .where(base_models.c.fingerprint == base.fingerprint)
        .order_by(other_name, elsewhere, base_locations.c.created_at.desc())
    )
    with database.reading() as connection:
        paths = connection.scalars(query)
        return list(dict.fromkeys(paths))  # one path may be recorded for several names or hosts


def add_location(database: Database, name: str, path: str | Path) -> BaseLocation:
    """Record ``path`` as a copy of the registered base ``name``, after checking its fingerprint."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InvalidConfig(f"{path} is not a folder; pass the folder that holds the base's weights")
    folder = folder.absolute()
    fingerprint = fingerprint_checkpoint(folder).fingerprint
    with database.reading() as connection:
        rows = connection.execute(select(base_models).where(base_models.c.name == name)).all()
        if not rows:
            known = connection.scalars(select(base_models.c.name).distinct())
            raise not_found("base model", name, known, listing="`adapters bases`")
    matching = [row for row in rows if row.fingerprint == fingerprint]
    if not matching:
        registered = ", ".join(row.fingerprint[:12] for row in rows)
        raise BaseModelMismatch(
            f"{folder} holds other weights ({fingerprint[:12]}) than the base {name} ({registered}); "
            "pass a copy of that base"
        )
    base_id = matching[0].id
    database.write_retrying(
        lambda connection: insert_location(connection, base_id, str(folder)), f"add a location to {name}"
    )
    with database.reading() as connection:
        row = connection.execute(
            select(base_locations).where(
                base_locations.c.base_model_id == base_id,
                base_locations.c.host == this_host(),
                base_locations.c.path == str(folder),
            )
        ).one()
    return BaseLocation(
        name=name,
        fingerprint=fingerprint,
        path=row.path,
        host=row.host,
        added_by=row.added_by,
        created_at=iso_time(row.created_at),
    )


def insert_location(connection: Connection, base_model_id: int, path: str) -> None:
    """Record ``path`` on this machine for the base row ``base_model_id``, unless it is already."""
    known = connection.scalar(
        select(base_locations.c.id).where(
            base_locations.c.base_model_id == base_model_id,
            base_locations.c.host == this_host(),
            base_locations.c.path == path,
        )
    )
    if known is None:  # a concurrent writer makes the insert raise IntegrityError: the caller retries
        connection.execute(
            insert(base_locations).values(
                base_model_id=base_model_id,
                path=path,
                host=this_host(),
                added_by=settings.current_user()[:128],
            )
        )


def this_host() -> str:
    return socket.gethostname()[:255]
