"""Getting adapters back out: ``pull`` (verified files) and ``load`` (a ready ``PeftModel``).

``load`` refuses a base model whose weights differ from the ones the adapter was registered
against (by fingerprint): an adapter on the wrong base runs without error and gives wrong
answers, so the check is on by default and skipped only with ``allow_base_mismatch=True``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from adapterlab import hf_format
from adapterlab.errors import BaseModelMismatch
from adapterlab.registry.mlflow.artifacts import download_adapter
from adapterlab.registry.records import AdapterVersion


def pull(version: AdapterVersion, to_dir: Path | str) -> AdapterVersion:
    """Download the files of ``version`` into ``to_dir`` (absent or empty), verified against their sha256."""
    download_adapter(version.artifact_uri, version.sha256, Path(to_dir))
    return version


def load(version: AdapterVersion, base_model: Any = None, *, allow_base_mismatch: bool = False):
    """The adapter ``version`` on its base model, as an ``adapterlab.PeftModel`` in eval mode.

    ``base_model`` defaults to the base loaded from the folder it was registered from (or its
    Hub name); a given model must have the registered weights unless ``allow_base_mismatch``.
    """
    from adapterlab import PeftModel
    from adapterlab.labels import read_labels

    if base_model is not None and not allow_base_mismatch:
        check_base(version, base_model)
    with tempfile.TemporaryDirectory(prefix="adapterlab-load-") as scratch:
        folder = download_adapter(version.artifact_uri, version.sha256, Path(scratch) / "adapter")
        if base_model is None:
            base_model = load_base(version, check=not allow_base_mismatch, labels=read_labels(folder))
        model = PeftModel.from_pretrained(base_model, folder)
    return model.eval()


def load_base(version: AdapterVersion, *, check: bool, labels: dict[str, Any] | None = None):
    """The registered base, from its recorded folder when it still exists, else from its name.

    ``labels`` (the adapter's ``labels.json``) sizes a classification head for the adapter's
    classes and names them; the base's own config knows nothing of them.
    """
    source = version.base.source
    local = source is not None and Path(source).is_dir()
    if check and local:
        _compare(version, _folder_fingerprint(Path(source)), f"the folder {source}")
    model = base_from_pretrained(
        source if local else version.base.name,
        version.task_type,
        labels,
        revision=None if local else version.base.revision,
    )
    if check and not local:
        check_base(version, model)
    return model


def base_from_pretrained(
    location: str | Path, task_type: str | None, labels: dict[str, Any] | None, revision: str | None = None
):
    """The base model at ``location`` (folder or Hub name) with the auto class of ``task_type``; a
    classifier's head sized and named by ``labels``."""
    import transformers

    auto = getattr(transformers, hf_format.auto_class_name(task_type))
    task = hf_format.task(task_type)
    head = labels if labels and task is not None and task.labelled else {}
    return auto.from_pretrained(location, revision=revision, **head)


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


def _folder_fingerprint(folder: Path) -> str:
    from adapterlab.registry.files.fingerprint import fingerprint_checkpoint

    return fingerprint_checkpoint(folder).fingerprint


def _compare(version: AdapterVersion, fingerprint: str, what: str) -> None:
    if fingerprint != version.base.fingerprint:
        raise BaseModelMismatch(
            f"{version.ref} was registered on base {version.base.name} ({version.base.fingerprint[:12]}), "
            f"but {what} has other weights ({fingerprint[:12]}); pass the base it was trained on (library: "
            "allow_base_mismatch=True skips this check)"
        )
