"""Fingerprints of base models: one hash over a checkpoint's tensors, independent of its files.

Each tensor is hashed as its name, dtype and shape followed by the SHA-256 of each fixed-size
chunk of its bytes; the fingerprint hashes the tensor digests in name order. Chunk digests make
the work parallel (hashlib releases the GIL, so threads use every core) while the result stays
the same whether the weights sit in one safetensors file, in shards, or in a legacy ``.bin``.
Only the chunks being hashed are mapped at a time.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from adapterlab.registry.files.checkpoint_files import TensorEntry, checkpoint_tensors

CHUNK_BYTES = 16 * 1024 * 1024  # part of the fingerprint's definition: never change it
FINGERPRINT_VERSION = b"adapterlab-fingerprint-v1\n"


@dataclass(frozen=True)
class Fingerprint:
    fingerprint: str  # hex SHA-256
    tensor_count: int
    parameter_count: int
    size_bytes: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def fingerprint_checkpoint(location: Path | str, *, progress: bool | None = None) -> Fingerprint:
    """Fingerprint a model folder or weights file; ``progress`` None means "on a terminal"."""
    return fingerprint_entries(checkpoint_tensors(Path(location)), progress=progress)


def fingerprint_entries(entries: list[TensorEntry], *, progress: bool | None = None) -> Fingerprint:
    """Fingerprint tensors, wherever they are (files or memory)."""
    entries = sorted(entries, key=lambda entry: entry.name)
    total = sum(entry.length for entry in entries)
    show = sys.stderr.isatty() if progress is None else progress
    digests = _tensor_digests(entries, total, show)
    combined = hashlib.sha256(FINGERPRINT_VERSION)
    for digest in digests:  # entries are sorted by name
        combined.update(digest)
    return Fingerprint(
        fingerprint=combined.hexdigest(),
        tensor_count=len(entries),
        parameter_count=sum(entry.numel for entry in entries),
        size_bytes=total,
    )


def _tensor_digests(entries: list[TensorEntry], total: int, show_progress: bool) -> list[bytes]:
    chunks = [(index, start) for index, entry in enumerate(entries) for start in _chunk_starts(entry.length)]
    chunk_digests: list[list[bytes]] = [[] for _ in entries]
    with ExitStack() as stack:
        descriptors = {}
        for entry in entries:
            if entry.path is not None and entry.path not in descriptors:
                descriptors[entry.path] = os.open(entry.path, os.O_RDONLY)
                stack.callback(os.close, descriptors[entry.path])

        def hash_chunk(job: tuple[int, int]) -> tuple[int, bytes, int]:
            index, start = job
            return index, *_chunk_digest(entries[index], start, descriptors)

        bar = _progress_bar(total) if show_progress else None
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            for index, digest, length in pool.map(hash_chunk, chunks):  # in submission order
                chunk_digests[index].append(digest)
                if bar is not None:
                    bar.update(length)
        if bar is not None:
            bar.close()
    return [_tensor_digest(entry, parts) for entry, parts in zip(entries, chunk_digests, strict=True)]


def _chunk_starts(length: int) -> Iterator[int]:
    yield 0  # an empty tensor still has one (empty) chunk
    yield from range(CHUNK_BYTES, length, CHUNK_BYTES)


def _chunk_digest(entry: TensorEntry, start: int, descriptors: dict[Path, int]) -> tuple[bytes, int]:
    """SHA-256 of one chunk, hashed in place: file chunks through a short-lived memory map, so
    nothing is copied and the pages leave the process as soon as the chunk is done."""
    size = min(CHUNK_BYTES, entry.length - start)
    if entry.buffer is not None:
        return hashlib.sha256(entry.buffer[start : start + size]).digest(), size
    if size == 0:
        return hashlib.sha256(b"").digest(), 0
    position = entry.offset + start
    aligned = position - position % mmap.ALLOCATIONGRANULARITY
    window = mmap.mmap(descriptors[entry.path], position - aligned + size, offset=aligned, access=mmap.ACCESS_READ)
    try:
        with memoryview(window) as view:
            return hashlib.sha256(view[position - aligned :]).digest(), size
    finally:
        window.close()


def _tensor_digest(entry: TensorEntry, chunk_digests: list[bytes]) -> bytes:
    identity = json.dumps([entry.name, entry.dtype, list(entry.shape)]).encode()
    return hashlib.sha256(identity + b"\0" + b"".join(chunk_digests)).digest()


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="fingerprint", file=sys.stderr)
