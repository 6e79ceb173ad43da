"""Which base model an adapter belongs to: a local folder (fingerprinted) or a registered name.

A base is its weights' fingerprint, with its Hub id and revision when known; the folder it was
found in is only one of its locations (``base_locations.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from adapterlab.errors import AdapterNotFound, InvalidConfig
from adapterlab.registry.db.database import Database
from adapterlab.registry.db.tables import BASE_NAME_LENGTH, base_models
from adapterlab.registry.files.checkpoint_files import model_config
from adapterlab.registry.files.fingerprint import fingerprint_checkpoint
from adapterlab.registry.hub_access import HUB_ID, cached_snapshot
from adapterlab.registry.names import not_found
from adapterlab.registry.records import BaseSpec, base_spec_fields

# .../models--<org>--<name>/snapshots/<revision>/ in a Hugging Face Hub cache
_HUB_SNAPSHOT = re.compile(r"models--(?P<repo>[^/]+)/snapshots/(?P<revision>[^/]+)/?$")


def resolve_base(database: Database, base: str | Path, base_name: str | None = None) -> BaseSpec:
    """A local model folder (fingerprinted now), a registered base's name, or a Hub id in the local cache."""
    folder = Path(base)
    if folder.is_dir():
        return describe_folder(folder, base_name)
    try:
        return registered_base(database, str(base))
    except AdapterNotFound:
        snapshot = cached_snapshot(str(base))
        if snapshot is None:
            raise
        return describe_folder(snapshot, base_name)


def describe_folder(folder: Path, base_name: str | None = None) -> BaseSpec:
    folder = folder.absolute()
    config = model_config(folder)
    hub_name, revision = _hub_identity(folder, config)
    name = base_name or hub_name or folder.name
    if not name or len(name) > BASE_NAME_LENGTH or any(ord(char) < 32 for char in name):
        raise InvalidConfig(f"invalid base model name {name!r}; pass --base-name NAME")
    weights = fingerprint_checkpoint(folder)
    return BaseSpec(
        name=name,
        fingerprint=weights.fingerprint,
        # a cache snapshot's path names its repository; a config's _name_or_path may be stale (the
        # model it was fine-tuned from), so it counts only where no other name was given
        hub_id=hub_name if revision is not None or base_name in (None, hub_name) else None,
        revision=revision,
        model_type=config.get("model_type"),
        parameter_count=weights.parameter_count,
        tensor_count=weights.tensor_count,
        size_bytes=weights.size_bytes,
    )


def _hub_identity(folder: Path, config: dict) -> tuple[str | None, str | None]:
    snapshot = _HUB_SNAPSHOT.search(folder.as_posix())
    if snapshot:
        return snapshot["repo"].replace("--", "/", 1), snapshot["revision"]
    named = config.get("_name_or_path")
    if isinstance(named, str) and HUB_ID.fullmatch(named) and not Path(named).exists():
        return named, None
    return None, None


def registered_base(database: Database, name: str) -> BaseSpec:
    with database.reading() as connection:
        rows = connection.execute(
            select(base_models).where(base_models.c.name == name).order_by(base_models.c.created_at.desc())
        ).all()
        if not rows:
            known = connection.scalars(select(base_models.c.name).distinct())
            raise not_found("base model", name, known, listing="`adapters bases`, or pass the model's folder")
        if len(rows) > 1:
            raise InvalidConfig(
                f"{len(rows)} different base models are named {name!r}; pass the model's folder to say which"
            )
        return BaseSpec(**base_spec_fields(rows[0]))
