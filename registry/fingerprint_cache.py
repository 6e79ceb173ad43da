"""Remembered tensor digests, so an unchanged multi-GB base is hashed once per machine, not per use.

What is remembered, per weights file: the digest of each of its tensors (with name, dtype and
shape), keyed by the file's resolved path and pinned to its size, mtime (ns), inode and device.
Any change to one of those and the file is hashed again; so is a file modified less than
``RACY_SECONDS`` before it was hashed (a later write in the same timestamp tick would leave its
stat unchanged: git's "racily clean" problem).

Where: one JSON file, ``$ADAPTERLAB_FINGERPRINT_CACHE`` (``off`` disables caching), else
``$XDG_CACHE_HOME/adapterlab/fingerprints-v1.json`` (``~/.cache/...``). Not under
``ADAPTERLAB_HOME``: that is one registry's folder (by default relative to the working
directory), while a base model's files, like the Hugging Face cache, belong to the machine and
are shared by every project and registry on it; and what sits in a cache folder may be deleted
at any time, which costs only a re-hash.

The file is only ever replaced whole (written beside it, then renamed), under an advisory lock,
so readers never see half a file and concurrent writers lose nothing. What it holds is checked
before use: a file that is not ours, is writable by others, is too large, is not JSON of the
expected shape, or holds entries of the wrong types is ignored (and rewritten on the next store).
A weight file is only cached when its resolved path stays inside the model folder (or, for a
Hugging Face cache snapshot, inside that model's cache folder, where the blobs live).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from adapterlab.registry.checkpoint_files import DTYPE_SIZES
from adapterlab.registry.database import file_lock

CACHE_ENV = "ADAPTERLAB_FINGERPRINT_CACHE"
CACHE_FORMAT = 1  # bump (and the file name) when the stored entries or the fingerprint change meaning
MAX_FILES = 512  # entries kept; the oldest stored go first
MAX_CACHE_BYTES = 64 * 1024 * 1024  # a larger file is not ours: ignored unread
RACY_SECONDS = 2  # covers the coarsest common timestamp granularity (FAT, ext3, HFS+)
_DISABLED = {"0", "off", "false", "no", "none"}
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TensorDigest:
    """What a fingerprint needs of one tensor, once its bytes have been hashed."""

    name: str
    dtype: str  # safetensors spelling
    shape: tuple[int, ...]
    digest: bytes  # SHA-256 of identity and chunk digests (see fingerprint.py)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def length(self) -> int:
        return self.numel * DTYPE_SIZES[self.dtype]


@dataclass(frozen=True)
class FileIdentity:
    """A weights file as the file system describes it; equal identities mean unchanged bytes."""

    path: str  # resolved, absolute
    size: int
    mtime_ns: int
    ino: int
    dev: int

    def settled(self, before_ns: int) -> bool:
        """Whether the file was last modified well before ``before_ns`` (not racily clean)."""
        return self.mtime_ns < before_ns - RACY_SECONDS * 1_000_000_000


def cache_path() -> Path | None:
    """The cache file, or None when ``$ADAPTERLAB_FINGERPRINT_CACHE`` turns caching off."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured.lower() in _DISABLED:
        return None
    if configured:
        return Path(configured).expanduser().absolute()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root).expanduser().absolute() / "adapterlab" / f"fingerprints-v{CACHE_FORMAT}.json"


def model_root(location: Path) -> Path:
    """The folder a checkpoint's files must stay inside to be cached (its blobs, for a Hub snapshot)."""
    folder = Path(os.path.realpath(location if location.is_dir() else location.parent))
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent  # snapshots/<rev>/* are links to ../../blobs/<hash>
    return folder


def pin(file: Path, root: Path) -> FileIdentity | None:
    """The identity of ``file``, or None when it must not be cached (outside ``root``, not regular)."""
    resolved = os.path.realpath(file)
    if os.path.commonpath([resolved, root]) != str(root):
        return None
    return _stat_identity(resolved)


def _stat_identity(resolved: str) -> FileIdentity | None:
    try:
        info = os.stat(resolved, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return FileIdentity(resolved, info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)


class FingerprintCache:
    """The tensor digests of unchanged weight files, read once per fingerprint and stored in one write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict] | None = None

    def lookup(self, identity: FileIdentity) -> list[TensorDigest] | None:
        if self._entries is None:
            self._entries = _read(self.path)
        entry = self._entries.get(identity.path)
        if entry is None or _identity(identity.path, entry) != identity:
            return None
        return _tensors(entry["tensors"])

    def store(self, results: Mapping[FileIdentity, list[TensorDigest]]) -> None:
        """Remember ``results``; the cache is an optimisation, so failing to write it is not an error."""
        if not results:
            return
        now = time.time_ns()
        with suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with suppress(OSError), file_lock(Path(f"{self.path}.lock")):  # the cache file itself is replaced, not locked
            entries = _read(self.path)  # again, under the lock: another process may have stored since
            for identity, tensors in results.items():
                entries[identity.path] = _entry(identity, tensors, now)
            self._entries = _prune(entries)
            _write(self.path, self._entries)


def _read(path: Path) -> dict[str, dict]:
    """The valid entries of the cache file; anything unexpected reads as an empty cache."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return {}
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not _trustworthy(info):
            return {}
        try:
            document = json.loads(handle.read(MAX_CACHE_BYTES))
        except (OSError, ValueError):
            return {}
    if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
        return {}
    files = document.get("files")
    if not isinstance(files, dict):
        return {}
    return {path: entry for path, entry in files.items() if _valid(path, entry)}


def _trustworthy(info: os.stat_result) -> bool:
    """A regular file of ours, writable by nobody else, of a plausible size."""
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    private = not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return stat.S_ISREG(info.st_mode) and owner_ok and private and info.st_size <= MAX_CACHE_BYTES


def _valid(path: object, entry: object) -> bool:
    if not isinstance(path, str) or not os.path.isabs(path) or not isinstance(entry, dict):
        return False
    numbers = [entry.get(field) for field in ("size", "mtime_ns", "ino", "dev", "stored_ns")]
    if not all(type(number) is int and number >= 0 for number in numbers):
        return False
    tensors = entry.get("tensors")
    if not isinstance(tensors, list) or not all(_valid_tensor(tensor) for tensor in tensors):
        return False
    # a file cannot hold more tensor bytes than its size; a claim to the contrary is forged or stale
    return sum(_tensor(tensor).length for tensor in tensors) <= entry["size"]


def _valid_tensor(tensor: object) -> bool:
    if not isinstance(tensor, list) or len(tensor) != 4:
        return False
    name, dtype, shape, digest = tensor
    return (
        isinstance(name, str)
        and dtype in DTYPE_SIZES
        and isinstance(shape, list)
        and all(type(size) is int and size >= 0 for size in shape)
        and isinstance(digest, str)
        and _DIGEST.fullmatch(digest) is not None
    )


def _tensor(stored: list) -> TensorDigest:
    name, dtype, shape, digest = stored
    return TensorDigest(name=name, dtype=dtype, shape=tuple(shape), digest=bytes.fromhex(digest))


def _tensors(stored: list) -> list[TensorDigest]:
    return [_tensor(tensor) for tensor in stored]


def _identity(path: str, entry: dict) -> FileIdentity:
    return FileIdentity(path, entry["size"], entry["mtime_ns"], entry["ino"], entry["dev"])


def _entry(identity: FileIdentity, tensors: list[TensorDigest], stored_ns: int) -> dict:
    return {
        "size": identity.size,
        "mtime_ns": identity.mtime_ns,
        "ino": identity.ino,
        "dev": identity.dev,
        "stored_ns": stored_ns,
        "tensors": [[t.name, t.dtype, list(t.shape), t.digest.hex()] for t in tensors],
    }


def _prune(entries: dict[str, dict]) -> dict[str, dict]:
    """Drop entries whose file changed or went away, then keep the ``MAX_FILES`` most recent."""
    current = [(path, entry) for path, entry in entries.items() if _stat_identity(path) == _identity(path, entry)]
    newest = sorted(current, key=lambda item: item[1]["stored_ns"], reverse=True)[:MAX_FILES]
    return dict(sorted(newest))


def _write(path: Path, entries: dict[str, dict]) -> None:
    """Replace the cache file whole: readers see the old file or the new one, never a mix."""
    document = json.dumps({"format": CACHE_FORMAT, "files": entries}, separators=(",", ":"))
    descriptor, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(document)
        os.replace(scratch, path)  # replaces a link at ``path`` itself, never writes through it
    except BaseException:
        with suppress(OSError):
            os.unlink(scratch)
        raise
