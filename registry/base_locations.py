"""Finding a base model's weights on this machine, verified by fingerprint.

PLACEHOLDER, superseded at merge: the ``bases`` helper writes the real module with this exact
signature; this minimal version exists so the MLflow pyfunc loader (``mlflow/pyfunc_flavor.py``)
can be built and tested against it.

The order: the folder the caller gave (refused when its weights differ), the folder the base was
registered from, folders the registry records for the same fingerprint, then the Hugging Face
Hub cache's snapshot of the base's name at its revision (never the network).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from adapterlab.errors import AdapterlabError, AdapterNotFound, BaseModelMismatch
from adapterlab.registry.db.database import Database
from adapterlab.registry.db.tables import base_models
from adapterlab.registry.records import BaseSpec

BASE_ENV = "ADAPTERLAB_BASE"  # a base model folder to use instead of searching


def locate_base(base: BaseSpec, *, given: str | Path | None = None, database: Database | None = None) -> Path:
    """The folder holding the weights of ``base`` (same fingerprint), else AdapterNotFound.

    ``given`` is used alone when set: its weights must be the base's (BaseModelMismatch).
    """
    if given is not None:
        folder = Path(given).expanduser().absolute()
        found = _fingerprint(folder)
        if found != base.fingerprint:
            raise BaseModelMismatch(
                f"the base folder {folder} does not hold the weights of {base.name} "
                f"({base.fingerprint[:12]}; it has {found[:12] if found else 'no readable weights'}); "
                "point it at the base the adapter was trained on"
            )
        return folder
    for candidate in _candidates(base, database):
        if candidate.is_dir() and _fingerprint(candidate) == base.fingerprint:
            return candidate.absolute()
    raise AdapterNotFound(
        f"the base model {base.name} ({base.fingerprint[:12]}) is not on this machine (not at "
        f"{base.source or 'a recorded folder'}, nor in the Hugging Face cache); set {BASE_ENV} to its folder"
    )


def _candidates(base: BaseSpec, database: Database | None) -> Iterator[Path]:
    if base.source:
        yield Path(base.source)
    if database is not None:
        with database.reading() as connection:
            sources = connection.scalars(
                select(base_models.c.source).where(base_models.c.fingerprint == base.fingerprint)
            ).all()
        yield from (Path(source) for source in sources if source)
    snapshot = _hub_snapshot(base.name, base.revision)
    if snapshot is not None:
        yield snapshot


def _hub_snapshot(name: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                name, revision=revision, local_files_only=True, cache_dir=os.environ.get("HF_HUB_CACHE")
            )
        )
    except Exception:  # not cached, not a Hub id, or no huggingface_hub: not a candidate
        return None


def _fingerprint(folder: Path) -> str | None:
    from adapterlab.registry.files.fingerprint import fingerprint_checkpoint

    if not folder.is_dir():
        return None
    try:
        return fingerprint_checkpoint(folder, progress=False).fingerprint
    except (AdapterlabError, OSError):  # no weights there, or unreadable ones
        return None
