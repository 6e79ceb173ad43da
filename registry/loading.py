"""Getting adapters back out: ``pull`` (verified files) and ``load`` (a ready ``PeftModel``).

``load`` finds the base by content (``base_locations.py``) and refuses a base model whose
weights differ from the ones the adapter was registered against (by fingerprint): an adapter on
the wrong base runs without error and gives wrong answers, so the check is on by default and
skipped only with ``allow_base_mismatch=True``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from adapterlab import hf_format
from adapterlab.errors import BaseModelMismatch, BaseModelNotFound, InvalidConfig
from adapterlab.registry.base_locations import locate_base, resolve_given
from adapterlab.registry.db.database import Database
from adapterlab.registry.mlflow.artifacts import download_adapter
from adapterlab.registry.records import AdapterVersion


def pull(version: AdapterVersion, to_dir: Path | str) -> AdapterVersion:
    """Download the files of ``version`` into ``to_dir`` (absent or empty), verified against their sha256."""
    download_adapter(version.artifact_uri, version.sha256, Path(to_dir))
    return version


def load(
    version: AdapterVersion,
    base_model: Any = None,
    *,
    base: str | Path | None = None,
    database: Database | None = None,
    allow_base_mismatch: bool = False,
):
    """The adapter ``version`` on its base model, as an ``adapterlab.PeftModel`` in eval mode.

    ``base_model`` is the base already in memory; else ``base`` (a folder or Hub id) or, without
    it, the copy ``locate_base`` finds (registered folders, the Hugging Face cache, the Hub) is
    loaded. What is given must have the registered weights unless ``allow_base_mismatch``.
    """
    if base_model is not None and base is not None:
        raise InvalidConfig(
            "pass the base as a loaded model (base_model) or as a folder or Hub id (base), not both"
        )
    if base_model is not None:
        if not allow_base_mismatch:
            check_base(version, base_model)
        return load_on(version, base_model=base_model)
    return load_on(version, folder=base_folder(version, base, database, allow_base_mismatch))


def base_folder(
    version: AdapterVersion, given: str | Path | None, database: Database | None, allow_mismatch: bool = False
) -> Path:
    """The folder of the base of ``version`` on this machine (``given`` and unverified with
    ``allow_mismatch``); the error names the adapter that needs it."""
    try:
        if given is not None and allow_mismatch:
            return resolve_given(given)
        return locate_base(version.base, given=given, database=database)
    except (BaseModelNotFound, BaseModelMismatch) as exc:
        raise type(exc)(f"{version.ref}: {exc}") from exc


def load_on(version: AdapterVersion, *, base_model: Any = None, folder: Path | None = None):
    """The adapter on ``base_model``, or on the base loaded from ``folder`` (with the adapter's labels)."""
    from adapterlab import PeftModel
    from adapterlab.labels import read_labels

    with tempfile.TemporaryDirectory(prefix="adapterlab-load-") as scratch:
        adapter = download_adapter(version.artifact_uri, version.sha256, Path(scratch) / "adapter")
        if base_model is None:
            base_model = base_from_pretrained(folder, version.task_type, read_labels(adapter))
        model = PeftModel.from_pretrained(base_model, adapter)
    return model.eval()


def base_from_pretrained(folder: Path, task_type: str | None, labels: dict[str, Any] | None):
    """The base model in ``folder`` (already verified) with the auto class of ``task_type``; a
    classifier's head sized and named by ``labels`` (the adapter's ``labels.json``: the base's own
    config knows nothing of the adapter's classes)."""
    import transformers

    auto = getattr(transformers, hf_format.auto_class_name(task_type))
    task = hf_format.task(task_type)
    head = labels if labels and task is not None and task.labelled else {}
    return auto.from_pretrained(folder, **head)


def check_base(version: AdapterVersion, model) -> None:
    """Raise BaseModelMismatch unless ``model`` holds the weights the adapter was registered on."""
    from adapterlab.registry.files.checkpoint_files import state_dict_entries
    from adapterlab.registry.files.fingerprint import fingerprint_entries

    state = model.state_dict()
    # checkpoints store a tied weight once; the module's state dict names it twice
    candidates = [state_dict_entries(state, drop_tied=False), state_dict_entries(state, drop_tied=True)]
    found = [fingerprint_entries(entries, progress=False).fingerprint for entries in candidates]
    if version.base.fingerprint not in found:
        _compare(version, found[-1], f"the given {type(model).__name__}")


def _compare(version: AdapterVersion, fingerprint: str, what: str) -> None:
    if fingerprint != version.base.fingerprint:
        raise BaseModelMismatch(
            f"{version.ref} was registered on base {version.base.name} ({version.base.fingerprint[:12]}), "
            f"but {what} has other weights ({fingerprint[:12]}); pass the base it was trained on (library: "
            "allow_base_mismatch=True skips this check)"
        )
