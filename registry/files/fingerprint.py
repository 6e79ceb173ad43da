"""Fingerprints of base models: one hash over a checkpoint's tensors, independent of its files.

Each tensor is hashed as its name, dtype and shape followed by the SHA-256 of each fixed-size
chunk of its bytes; the fingerprint hashes the tensor digests in name order. Chunk digests make
the work parallel (hashlib releases the GIL, so threads use every core) while the result stays
the same whether the weights sit in one safetensors file, in shards, or in a legacy ``.bin``.
Only the chunks being hashed are mapped at a time.

Tensor digests of files unchanged since they were last hashed come from the fingerprint cache
(``fingerprint_cache.py``), so a multi-GB base is read once per machine, and after that resolving
its fingerprint costs a few ``stat`` calls.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from adapterlab.errors import CheckpointError
from adapterlab.registry.files.checkpoint_files import TensorEntry, checkpoint_tensors, weight_files
from adapterlab.registry.files.fingerprint_cache import (
    FileIdentity,
    FingerprintCache,
    TensorDigest,
    cache_folder,
    model_root,
    pin,
)

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


def fingerprint_checkpoint(
    location: Path | str, *, progress: bool | None = None, use_cache: bool = True
) -> Fingerprint:
    """Fingerprint a model folder or weights file; ``progress`` None means "on a terminal".

    Files unchanged since they were last hashed are not read again; ``use_cache=False`` (or
    ``ADAPTERLAB_FINGERPRINT_CACHE=off``) hashes every byte and leaves the cache alone.
    """
    location = Path(location)
    folder = cache_folder() if use_cache else None
    if folder is None:
        return fingerprint_entries(checkpoint_tensors(location), progress=progress)
    return _fingerprint_through(FingerprintCache(folder), location, progress)


def _fingerprint_through(cache: FingerprintCache, location: Path, progress: bool | None) -> Fingerprint:
    """The folder's remembered fingerprint, else its files' remembered digests, hashing only the rest."""
    root, started = model_root(location), time.time_ns()
    files = weight_files(location)
    identities = [pin(file, root) for file in files]
    pinned = [identity for identity in identities if identity is not None]
    summary = cache.lookup_folder(pinned) if len(pinned) == len(files) else None
    if summary is not None:
        return Fingerprint(**summary)  # type: ignore[arg-type]
    known: list[TensorDigest] = []
    unknown: list[tuple[Path, FileIdentity | None]] = []
    for file, identity in zip(files, identities, strict=True):
        cached = cache.lookup(identity) if identity is not None else None
        if cached is None:
            unknown.append((file, identity))
        else:
            known.extend(cached)
    hashed = _hash_files([file for file, _ in unknown], progress)
    # only what provably did not change while it was hashed, and not racily, is remembered
    unchanged = {
        identity: tensors
        for (file, identity), tensors in zip(unknown, hashed, strict=True)
        if identity is not None and identity.settled(started) and pin(file, root) == identity
    }
    cache.store(unchanged)
    result = _combine(known + [tensor for tensors in hashed for tensor in tensors], location)
    if len(pinned) == len(files) and len(unchanged) == len(unknown):  # every file is remembered as it is
        cache.store_folder(pinned, result.to_dict())
    return result


def fingerprint_entries(entries: list[TensorEntry], *, progress: bool | None = None) -> Fingerprint:
    """Fingerprint tensors, wherever they are (files or memory)."""
    return _combine(_digest_entries(entries, progress), "these tensors")


def _hash_files(files: list[Path], progress: bool | None) -> list[list[TensorDigest]]:
    """The tensor digests of each file; all files' chunks share one pool of threads."""
    per_file = [checkpoint_tensors(file) for file in files]
    digests = iter(_digest_entries([entry for entries in per_file for entry in entries], progress))
    return [[next(digests) for _ in entries] for entries in per_file]


def _digest_entries(entries: list[TensorEntry], progress: bool | None) -> list[TensorDigest]:
    total = sum(entry.length for entry in entries)
    show = sys.stderr.isatty() if progress is None else progress
    digests = _tensor_digests(entries, total, show) if entries else []
    return [
        TensorDigest(name=entry.name, dtype=entry.dtype, shape=entry.shape, digest=digest)
        for entry, digest in zip(entries, digests, strict=True)
    ]


def _combine(tensors: list[TensorDigest], location: Path | str) -> Fingerprint:
    tensors = sorted(tensors, key=lambda tensor: tensor.name)
    if len({tensor.name for tensor in tensors}) != len(tensors):
        raise CheckpointError(
            f"{location} stores some tensors twice (overlapping shards); re-save the weights"
        )
    combined = hashlib.sha256(FINGERPRINT_VERSION)
    for tensor in tensors:  # sorted by name
        combined.update(tensor.digest)
    return Fingerprint(
        fingerprint=combined.hexdigest(),
        tensor_count=len(tensors),
        parameter_count=sum(tensor.numel for tensor in tensors),
        size_bytes=sum(tensor.length for tensor in tensors),
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
    window = mmap.mmap(
        descriptors[entry.path], position - aligned + size, offset=aligned, access=mmap.ACCESS_READ
    )
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

    return tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="fingerprint", file=sys.stderr
    )
