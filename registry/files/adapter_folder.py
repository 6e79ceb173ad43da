"""Reading and validating an adapter folder in the HF PEFT format before it is registered.

A folder is accepted only when its ``adapter_config.json`` is valid JSON with a known
``peft_type``, its weights are readable and finite, the tensor names and shapes agree with the
config (``adapter_layout.py``), and no file it would store links outside it
(``adapter_files.py``, which also chooses those files). Nothing is written anywhere while checking.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapterlab.errors import CheckpointError, InvalidConfig
from adapterlab.hf_format import CONFIG_NAME, WEIGHT_NAMES
from adapterlab.hf_format import PEFT_TYPES as KNOWN_PEFT_TYPES
from adapterlab.registry.files.adapter_files import select_adapter_files
from adapterlab.registry.files.adapter_layout import check_tensor_layout
from adapterlab.registry.files.checkpoint_files import TensorEntry, read_bin_tensors, read_safetensors_header
from adapterlab.registry.files.finite_weights import check_finite


@dataclass(frozen=True)
class ArtifactFile:
    path: str  # relative, with '/' separators
    sha256: str
    size: int


@dataclass(frozen=True)
class AdapterFolder:
    path: Path
    config: dict[str, Any]
    peft_type: str
    files: tuple[ArtifactFile, ...]
    trainable_params: int
    left_out: tuple[str, ...] = ()  # files of the folder that are not stored (shown to the user)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # tensor name -> shape, from the header

    @property
    def sha256(self) -> str:
        return manifest_digest(self.files)

    @property
    def size_bytes(self) -> int:
        return sum(file.size for file in self.files)


def read_adapter_folder(path: Path | str, include: Iterable[str] = ()) -> AdapterFolder:
    """Check the adapter folder ``path`` and describe the files to store (``include``: more globs)."""
    if not Path(path).is_dir():
        raise CheckpointError(f"{path} is not a folder; pass the folder that holds {CONFIG_NAME}")
    folder = Path(path).resolve()
    selection = select_adapter_files(folder, include)  # first: links are checked before any file is read
    config = read_adapter_config(folder)
    peft_type = config["peft_type"]
    tensors = read_adapter_weights(folder)
    shapes = {entry.name: entry.shape for entry in tensors}
    check_tensor_layout(peft_type, config, shapes, folder)
    check_finite(tensors, folder)
    return AdapterFolder(
        path=folder,
        config=config,
        peft_type=peft_type,
        files=tuple(describe_file(folder, relative) for relative in selection.files),
        trainable_params=sum(entry.numel for entry in tensors),
        left_out=selection.left_out,
        shapes=shapes,
    )


def read_adapter_config(folder: Path) -> dict[str, Any]:
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise InvalidConfig(
            f"{folder} has no {CONFIG_NAME}; is it an adapter folder saved with save_pretrained()?"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (
        UnicodeDecodeError,
        json.JSONDecodeError,
        RecursionError,
    ) as exc:  # RecursionError: nested too deeply
        raise InvalidConfig(f"{config_path} is not valid JSON ({exc}); fix or re-save the adapter") from exc
    if not isinstance(config, dict):
        raise InvalidConfig(f"{config_path} must hold a JSON object")
    peft_type = config.get("peft_type")
    if peft_type not in KNOWN_PEFT_TYPES:
        raise InvalidConfig(
            f"{config_path} has peft_type {peft_type!r}; the registry accepts {', '.join(KNOWN_PEFT_TYPES)}"
        )
    return config


def read_adapter_weights(folder: Path) -> list[TensorEntry]:
    for name in WEIGHT_NAMES:
        weights = folder / name
        if weights.is_file():
            if weights.suffix == ".safetensors":
                entries = read_safetensors_header(weights)[0]
            else:
                entries = read_bin_tensors(weights)
            if not entries:
                raise CheckpointError(f"{weights} holds no tensors; re-save the adapter")
            return entries
    raise CheckpointError(f"{folder} has no adapter weights ({' or '.join(WEIGHT_NAMES)})")


def folder_files(folder: Path) -> tuple[ArtifactFile, ...]:
    """Every regular file of a folder we downloaded (hidden files and caches excluded), with its digest."""
    files = []
    for file in sorted(folder.rglob("*")):
        relative = file.relative_to(folder)
        if not file.is_file() or any(
            part.startswith(".") or part == "__pycache__" for part in relative.parts
        ):
            continue
        files.append(describe_file(folder, relative.as_posix()))
    return tuple(files)


def describe_file(folder: Path, relative: str) -> ArtifactFile:
    with open(folder / relative, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
        size = handle.tell()
    return ArtifactFile(path=relative, sha256=digest, size=size)


def manifest_digest(files: tuple[ArtifactFile, ...] | list[ArtifactFile]) -> str:
    """One SHA-256 over the files' digests and paths (the lines ``sha256sum`` would print)."""
    lines = "".join(f"{file.sha256}  {file.path}\n" for file in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(lines.encode()).hexdigest()
