"""Adapter configs that name their base portably: by Hub id (or registered name), never a local path.

``save_pretrained`` records where the base was loaded from, often a folder of the training
machine (``/home/me/models/minilm``), in ``adapter_config.json`` and in the model card's
``base_model``. Stored or exported that way, the files point everyone else at a path they do
not have (and tell them how the trainer's disk is laid out). Registration, export and training
therefore write the base's ``portable_name`` instead.
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
MODEL_CARD = "README.md"  # save_pretrained's card repeats the base's path as its base_model


def portable_config(config: dict[str, Any], base: BaseSpec) -> dict[str, Any]:
    """``config`` naming its base by Hub id when the registry knows it, and with every local path in
    ``PATH_FIELDS`` replaced by the base's portable name."""
    changed = {key: base.portable_name for key in PATH_FIELDS if is_local_path(config.get(key))}
    if base.hub_id is not None:  # the weights were verified: this is the base, whatever the file says
        changed["base_model_name_or_path"] = base.hub_id
    return {**config, **changed}


def is_local_path(value: object) -> bool:
    """A folder reference rather than a Hub id: absolute, relative with dots, or existing here."""
    if not isinstance(value, str) or not value:
        return False
    if value.startswith(("/", ".", "~")) or "\\" in value or not HUB_ID.fullmatch(value):
        return True
    return Path(value).exists()


def write_portable_config(folder: Path, base: BaseSpec) -> None:
    """Rewrite ``folder``'s adapter config (and model card) in place when they name the base otherwise."""
    path = folder / CONFIG_NAME
    config = json.loads(path.read_text(encoding="utf-8"))
    portable = portable_config(config, base)
    if portable == config:
        return
    path.write_text(json.dumps(portable, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    local_paths = {config[key] for key in PATH_FIELDS if is_local_path(config.get(key))}
    card = folder / MODEL_CARD
    if card.is_file() and local_paths:
        text = card.read_text(encoding="utf-8", errors="replace")
        for local in sorted(local_paths, key=len, reverse=True):  # a path before its prefixes
            text = text.replace(local, base.portable_name)
        card.write_text(text, encoding="utf-8")


@contextmanager
def portable_folder(folder: AdapterFolder, base: BaseSpec) -> Iterator[AdapterFolder]:
    """``folder`` itself when its config is portable, else a scratch copy of its files with a portable
    config and model card (removed on exit): what registration stores, so its sha256 is of what
    others get."""
    config = portable_config(folder.config, base)
    if config == folder.config:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="adapterlab-portable-") as scratch:
        root = Path(scratch)
        for file in folder.files:  # already checked: regular files inside the folder
            (root / file.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder.path / file.path, root / file.path)
        write_portable_config(root, base)
        yield dataclasses.replace(
            folder, path=root, config=config, files=tuple(describe_file(root, f.path) for f in folder.files)
        )
