"""Adapter configs that name their base portably: by Hub id (or registered name), never a local path.

``save_pretrained`` records where the base was loaded from, often a folder of the training
machine (``/home/me/models/minilm``). Stored or exported that way, the file points everyone
else at a path they do not have (and tells them how the trainer's disk is laid out). Registration,
export and training therefore write the base's ``portable_name`` instead.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adapterlab.hf_format import CONFIG_NAME
from adapterlab.registry.files.adapter_folder import AdapterFolder, describe_file
from adapterlab.registry.hub_access import HUB_ID
from adapterlab.registry.records import BaseSpec

# fields of an adapter config that may hold the base's folder (prompt tuning's tokenizer is the base's)
PATH_FIELDS = ("base_model_name_or_path", "tokenizer_name_or_path")


def portable_config(config: dict[str, Any], base: BaseSpec) -> dict[str, Any]:
    """``config`` with every local path in ``PATH_FIELDS`` replaced by the base's portable name."""
    changed = {key: base.portable_name for key in PATH_FIELDS if is_local_path(config.get(key))}
    return {**config, **changed}


def is_local_path(value: object) -> bool:
    """A folder reference rather than a Hub id: absolute, relative with dots, or existing here."""
    if not isinstance(value, str) or not value:
        return False
    if value.startswith(("/", ".", "~")) or "\\" in value or not HUB_ID.fullmatch(value):
        return True
    return Path(value).exists()


def write_portable_config(folder: Path, base: BaseSpec) -> None:
    """Rewrite ``folder``'s adapter config in place when it names its base by a local path."""
    path = folder / CONFIG_NAME
    config = json.loads(path.read_text(encoding="utf-8"))
    portable = portable_config(config, base)
    if portable != config:
        path.write_text(json.dumps(portable, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextmanager
def portable_folder(folder: AdapterFolder, base: BaseSpec) -> Iterator[AdapterFolder]:
    """``folder`` itself when its config is portable, else a scratch copy of its files with a portable
    config (removed on exit): what registration stores, so its sha256 is of what others get."""
    if portable_config(folder.config, base) == folder.config:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="adapterlab-portable-") as scratch:
        root = Path(scratch)
        for file in folder.files:  # already checked: regular files inside the folder
            (root / file.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder.path / file.path, root / file.path)
        write_portable_config(root, base)
        yield dataclasses.replace(
            folder,
            path=root,
            config=portable_config(folder.config, base),
            files=tuple(describe_file(root, file.path) for file in folder.files),
        )
