"""Exporting a registered adapter for use outside adapterlab.

Two shapes, both written to a staging folder beside the destination and renamed into place, so
a failed export never leaves a half-written folder behind:

- the adapter as it is stored (the Hugging Face PEFT format, checksum-verified by ``pull``),
  plus a model card (``README.md`` with hub metadata) ready to upload;
- ``merged``: the base model with a LoRA adapter folded into its weights (``merge_and_unload``),
  saved by ``save_pretrained`` with the base's tokenizer, so plain transformers (and serving
  engines without adapter support) can load it.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterlab.errors import AdapterExists, InvalidConfig
from adapterlab.hf_format import PeftType
from adapterlab.registry.db.database import Database
from adapterlab.registry.deploy.model_card import render_model_card
from adapterlab.registry.deploy.predict import load_tokenizer
from adapterlab.registry.files.portable_config import write_portable_config
from adapterlab.registry.loading import base_folder, load_on, pull
from adapterlab.registry.records import AdapterVersion

MODEL_CARD_NAME = "README.md"
MERGEABLE_PEFT_TYPES = (
    PeftType.LORA.value,
)  # prompt methods add virtual tokens at run time: nothing to fold in


@dataclass(frozen=True)
class ExportResult:
    ref: str  # the exact version exported, NAME:N
    path: Path
    merged: bool
    files: tuple[str, ...]  # relative paths, sorted

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "path": str(self.path), "merged": self.merged, "files": list(self.files)}


def export_adapter(
    version: AdapterVersion,
    to_dir: str | Path,
    *,
    merged: bool = False,
    base: str | Path | None = None,
    database: Database | None = None,
) -> ExportResult:
    """Write the adapter ``version`` (or, with ``merged``, base + adapter as one model) to ``to_dir``.

    ``merged`` needs the base: ``base`` (a folder or Hub id) or the copy ``locate_base`` finds.
    """
    destination = Path(to_dir).expanduser().absolute()
    check_destination(destination)
    if merged and version.peft_type not in MERGEABLE_PEFT_TYPES:
        raise InvalidConfig(
            f"{version.ref} is a {version.peft_type} adapter, which adds virtual tokens at run time and "
            "cannot be merged into the base weights; export it without --merged"
        )
    if base is not None and not merged:
        raise InvalidConfig("--base is only used with --merged (an adapter export needs no base); drop it")
    folder = base_folder(version, base, database) if merged else None  # before anything is written
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.export-", dir=destination.parent))
    try:
        if folder is not None:
            write_merged_model(version, folder, staging)
        else:
            pull(version, staging)  # the stored files, verified against the registry's checksums
            write_portable_config(staging, version.base)  # for versions registered with a local path
        (staging / MODEL_CARD_NAME).write_text(render_model_card(version, merged=merged), encoding="utf-8")
        publish(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = tuple(
        sorted(p.relative_to(destination).as_posix() for p in destination.rglob("*") if p.is_file())
    )
    return ExportResult(ref=version.ref, path=destination, merged=merged, files=files)


def check_destination(destination: Path) -> None:
    """Exports never overwrite: the destination must not exist, or be an empty folder (and not lie under
    a file)."""
    from adapterlab.registry.settings import usable_folder

    usable_folder(destination, "destination")
    if destination.is_dir() and not any(destination.iterdir()):
        return
    if destination.exists():
        raise AdapterExists(f"{destination} already exists and is not empty; pass a new folder to --to")


def publish(staging: Path, destination: Path) -> None:
    try:
        staging.rename(
            destination
        )  # POSIX: replaces the empty folder check_destination allowed, refuses a filled one
    except OSError as exc:  # a concurrent export or pull got there first
        raise AdapterExists(
            f"{destination} was filled by someone else during the export; pass a new folder to --to"
        ) from exc


def write_merged_model(version: AdapterVersion, base: Path, folder: Path) -> None:
    """Base (from the verified folder ``base``) + adapter as one plain transformers model
    (safetensors), with the base's tokenizer."""
    model = load_on(version, folder=base)
    merged = model.merge_and_unload()
    # the class names came with the adapter's labels.json and stay in config.json
    merged.save_pretrained(folder)
    tokenizer = load_tokenizer(base)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
