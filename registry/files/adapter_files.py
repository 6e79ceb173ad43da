"""Which files of a folder are the adapter: what gets stored, and what links may point at.

A folder handed to ``adapters register`` is treated as hostile. Only the adapter's own files at
its top level are stored (``ADAPTER_FILES``): what ``save_pretrained`` writes (config, weights,
model card), the class names (``labels.json``) and, when the trainer saved one beside the
adapter, the tokenizer (small, and needed when the adapter added tokens). Anything else (an
``optimizer.pt``, checkpoints, data) is left out and named, unless ``--include PATTERN`` asks
for it: a shared artifact store should not fill up with, or leak, what merely lay beside the
adapter.

A symbolic link is followed only when its target stays inside the folder, or, for a folder
inside a Hugging Face cache (``models--org--name/snapshots/<rev>/``), inside that cached repo:
the cache stores every file as a link into ``../../blobs``. A link anywhere else (``/etc/passwd``,
another user's home) is refused.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from adapterlab.errors import CheckpointError, InvalidConfig
from adapterlab.registry.files.checkpoint_files import link_boundary

ADAPTER_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "README.md",
    "labels.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
)
_LISTED = 10  # names shown in the "left out" line before "and N more"


@dataclass(frozen=True)
class Selection:
    files: tuple[str, ...]  # relative, '/'-separated, sorted: what is stored
    left_out: tuple[str, ...]  # what is not, for the one-line note


def select_adapter_files(folder: Path, include: Iterable[str] = ()) -> Selection:
    """The files to store from ``folder`` (resolved): the allowlist plus ``include`` matches, links
    checked."""
    patterns = [_pattern(text) for text in include]
    every = _walk(folder)
    chosen, left_out, matched = [], [], set()
    for relative in every:
        if relative.endswith("/"):  # a linked or hidden folder: never descended into, never stored
            left_out.append(relative)
            continue
        hits = {pattern for pattern in patterns if fnmatch.fnmatchcase(relative, pattern)}
        matched |= hits
        if relative in ADAPTER_FILES or hits:
            chosen.append(relative)
        else:
            left_out.append(relative)
    unmatched = [pattern for pattern in patterns if pattern not in matched]
    if unmatched:
        raise InvalidConfig(
            f"--include {unmatched[0]!r} matches no file in {folder}; check the pattern (relative to the "
            "folder)"
        )
    allowed = link_boundary(folder)
    for relative in chosen:
        _check_link(folder, relative, allowed)
    return Selection(files=tuple(chosen), left_out=_summary(left_out))


def _pattern(text: str) -> str:
    if not isinstance(text, str) or not text.strip() or text.startswith("/") or ".." in Path(text).parts:
        raise InvalidConfig(
            f"--include {text!r} must be a glob relative to the adapter folder, e.g. 'extra/*.json'"
        )
    return text.strip().removeprefix("./")


def _walk(folder: Path) -> list[str]:
    """Every file below ``folder`` (links to files included); linked and hidden folders are listed
    with a trailing '/' and not descended into (``.git`` can be huge, a link can lead anywhere)."""
    found = []
    for top, folders, names in os.walk(folder, followlinks=False):
        relative_top = Path(top).relative_to(folder)
        found += [(relative_top / name).as_posix() for name in names]
        closed = {name for name in folders if name.startswith(".") or (Path(top) / name).is_symlink()}
        found += [(relative_top / name).as_posix() + "/" for name in closed]
        folders[:] = sorted(name for name in folders if name not in closed)
    return sorted(found)


def _check_link(folder: Path, relative: str, allowed: Path) -> None:
    path = folder / relative
    real = path.resolve()
    if not real.is_relative_to(allowed):
        raise CheckpointError(
            f"{path} is a link to a file outside the adapter folder; refusing to store it. "
            "Copy the file into the folder if it belongs to the adapter"
        )
    if not real.is_file():
        raise CheckpointError(
            f"{path} is not a regular file (a broken link, a folder or a device); remove it"
        )


def _summary(names: list[str]) -> tuple[str, ...]:
    if len(names) <= _LISTED:
        return tuple(names)
    return (*names[:_LISTED], f"and {len(names) - _LISTED} more")
