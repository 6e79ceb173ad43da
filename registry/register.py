"""``register_adapter``: validate a folder, store its files, allocate the next version, mirror it.

Every check that can refuse a registration (names, options, the folder, lengths the database
would reject, a line of versions with another base or task) runs before the first file is
uploaded, so a refused registration leaves nothing in the artifact store.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from adapterlab.errors import BaseModelNotFound, InvalidConfig
from adapterlab.hf_format import TaskType
from adapterlab.registry import settings
from adapterlab.registry.base_locations import locate_base
from adapterlab.registry.base_models import resolve_base
from adapterlab.registry.db.database import Database
from adapterlab.registry.db.store import (
    NewVersion,
    add_version,
    check_can_register,
    existing_version,
    record_mlflow_version,
)
from adapterlab.registry.files.adapter_folder import read_adapter_folder
from adapterlab.registry.files.compatibility import check_adapter_fits
from adapterlab.registry.files.portable_config import portable_folder
from adapterlab.registry.mlflow.artifacts import upload_adapter
from adapterlab.registry.mlflow.mlflow_mirror import check_mirror_access, mirror_version
from adapterlab.registry.names import Ref, validate_key, validate_name
from adapterlab.registry.queries import show
from adapterlab.registry.records import AdapterVersion, BaseSpec
from adapterlab.validation import parse_choice

log = logging.getLogger("adapterlab.registry")


def register_adapter(
    database: Database,
    path: Path | str,
    *,
    name: str,
    base: Path | str,
    base_name: str | None = None,
    task_type: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    mlflow_run_id: str | None = None,
    include: Iterable[str] = (),
) -> AdapterVersion:
    """Register the adapter folder ``path`` as the next version of ``name``.

    ``base`` is the base model's local folder (fingerprinted, and recorded as one of the base's
    locations), the name of a registered base, or a Hub id in the local cache. The stored
    ``adapter_config.json`` names the base by its Hub id (else its name), never by a local path.
    Only the adapter's own files are stored (``files/adapter_files.py``); ``include`` adds files
    matching its glob patterns. The adapter must fit the base (``files/compatibility.py``).
    Registering content identical to an existing version of ``name`` on the same base returns
    that version.
    """
    validate_name(name)
    task_type = _task(task_type)
    clean_metrics = _metrics(metrics or {})
    clean_tags = {validate_key(key, "tag"): str(value) for key, value in (tags or {}).items()}
    folder = read_adapter_folder(path, include=include)
    task_type = task_type or _task(folder.config.get("task_type"), f"{folder.path}/adapter_config.json: ")
    if folder.left_out:
        log.warning(
            "Note: not stored with the adapter: %s (add them with --include PATTERN)",
            ", ".join(folder.left_out),
        )
    resolved = resolve_base(database, base, base_name)
    check_adapter_fits(folder, task_type, resolved, _local_copy(database, base, resolved))
    # what is stored names the base by Hub id or name, never by the folder it was trained from
    with portable_folder(folder, resolved) as folder:
        new = NewVersion(
            name=name,
            base=resolved,
            task_type=task_type,
            folder=folder,
            artifact_uri="",  # known once the files are stored, after every check has passed
            metrics=clean_metrics,
            tags=clean_tags,
            description=description,
            mlflow_run_id=mlflow_run_id,
            created_by=settings.current_user(),
            base_folder=str(Path(base).absolute()) if Path(base).is_dir() else None,
        )
        check_can_register(database, new)  # also: the same files with another base are refused
        known = existing_version(database, name, folder.sha256)
        if known is not None:
            return show(database, Ref(name, version=known))
        check_mirror_access()  # refused credentials stop here, before any file is stored
        artifact_uri, mlflow_run_id = upload_adapter(folder, name, mlflow_run_id)
        number, created = add_version(
            database, dataclasses.replace(new, artifact_uri=artifact_uri, mlflow_run_id=mlflow_run_id)
        )
    record = show(database, Ref(name, version=number))
    if created:
        mlflow_version = mirror_version(record)
        if mlflow_version is not None:
            record_mlflow_version(database, name, number, mlflow_version)
            record = dataclasses.replace(record, mlflow_version=mlflow_version)
    return record


def _local_copy(database: Database, base: Path | str, resolved: BaseSpec) -> Path | None:
    """The base's folder on this machine, for the compatibility check: the one given, else a recorded
    folder or the Hugging Face cache (never a download); None when there is none."""
    if Path(base).is_dir():
        return Path(base)
    try:
        return locate_base(resolved, database=database, use_hub=False)
    except BaseModelNotFound:
        return None


def _task(task_type: object, where: str = "") -> str | None:
    """The task type as the registry stores and shows it (``SEQ_CLS``), from any spelling."""
    if task_type is None:
        return None
    try:
        return parse_choice(TaskType, task_type, "task type").value
    except InvalidConfig as exc:
        raise InvalidConfig(f"{where}{exc}") from None


def _metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    clean = {}
    for key, value in metrics.items():
        validate_key(key, "metric")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidConfig(f"metric {key} must be a number, got {value!r}") from exc
        if not math.isfinite(number):
            raise InvalidConfig(f"metric {key} must be a finite number, got {value!r}")
        clean[key] = number
    return clean
