"""Remembered tensor digests, so an unchanged multi-GB base is hashed once per machine, not per use.

What is remembered, per weights file: the digest of each of its tensors (with name, dtype and
shape), keyed by the file's resolved path and pinned to its size, mtime (ns), inode and device.
Any change to one of those and the file is hashed again; so is a file modified less than
``RACY_SECONDS`` before it was hashed (a later write in the same timestamp tick would leave its
stat unchanged: git's "racily clean" problem).

Where: a folder, ``$ADAPTERLAB_FINGERPRINT_CACHE`` (``off`` disables caching), else
``$XDG_CACHE_HOME/adapterlab/fingerprints-v1`` (``~/.cache/...``). Not under ``ADAPTERLAB_HOME``:
that is one registry's folder (by default relative to the working directory), while a base
model's files, like the Hugging Face cache, belong to the machine and are shared by every project
and registry on it; and what sits in a cache folder may be deleted at any time, which costs only
a re-hash.

One small JSON file per weights file, named by a hash of its path, and one per set of files (a
checkpoint folder) holding the finished fingerprint, so an unchanged folder resolves with a
``stat`` per file and one small read, however many tensors it has. A lookup reads only the
entries it needs, whatever else is cached, and a store replaces one entry whole (written
beside it, then renamed), so readers never see half an entry and concurrent writers need no lock
(the last of two writers of one entry wins; both wrote the truth about the file they saw). An
entry is checked before use: one that is not ours, is writable by others, is too large, is not
JSON of the expected shape or types, or describes another path is ignored (and replaced on the
next store). A weights file is only cached when its resolved path stays inside the model folder
(or, for a Hugging Face cache snapshot, inside that model's cache folder, where the blobs live).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from adapterlab.registry.files.checkpoint_files import DTYPE_SIZES, link_boundary

CACHE_ENV = "ADAPTERLAB_FINGERPRINT_CACHE"
CACHE_FORMAT = 1  # bump (and the folder name) when entries or the fingerprint change meaning
MAX_ENTRIES = 2048  # entries (files and folders) kept; the least recently used are forgotten first
MAX_ENTRY_BYTES = 16 * 1024 * 1024  # a larger entry is not ours: ignored unread
RACY_SECONDS = 2  # covers the coarsest common timestamp granularity (FAT, ext3, HFS+)
_DISABLED = {"0", "off", "false", "no", "none"}
_DIGEST = re.compile(r"[0-9a-f]{64}")
_IDENTITY = ("path", "size", "mtime_ns", "ino", "dev")  # FileIdentity's fields, as stored
_RESULT = ("fingerprint", "tensor_count", "parameter_count", "size_bytes")  # Fingerprint's fields


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


def cache_folder() -> Path | None:
    """The cache's folder, or None when ``$ADAPTERLAB_FINGERPRINT_CACHE`` turns caching off."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured.lower() in _DISABLED:
        return None
    if configured:
        return Path(configured).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = (
        xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    )  # as the XDG spec says
    if not os.path.isabs(root):
        return None  # no home folder (a bare container): no cache, rather than one in the working directory
    return Path(root) / "adapterlab" / f"fingerprints-v{CACHE_FORMAT}"


def model_root(location: Path) -> Path:
    """The folder a checkpoint's files must stay inside to be cached (its blobs, for a Hub snapshot)."""
    return link_boundary(Path(os.path.realpath(location if location.is_dir() else location.parent)))


def pin(file: Path, root: Path) -> FileIdentity | None:
    """The identity of ``file``, or None when it must not be cached (outside ``root``, not regular)."""
    resolved = os.path.realpath(file)
    if os.path.commonpath([resolved, root]) != str(root):
        return None
    try:
        info = os.stat(resolved, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return FileIdentity(resolved, info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)


class FingerprintCache:
    """Tensor digests of unchanged weights files, and fingerprints of unchanged sets of them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def entry_path(self, *paths: str) -> Path:
        key = "\0".join(paths).encode(errors="surrogateescape")
        return self.folder / f"{hashlib.sha256(key).hexdigest()[:40]}.json"

    def lookup(self, identity: FileIdentity) -> list[TensorDigest] | None:
        entry = self._used(self.entry_path(identity.path), _valid_file)
        if entry is None or _identity(entry) != identity:
            return None
        return [_tensor(tensor) for tensor in entry["tensors"]]

    def lookup_folder(self, files: list[FileIdentity]) -> dict[str, object] | None:
        """The fingerprint's fields (see ``Fingerprint``) stored for exactly these files, unchanged."""
        entry = self._used(self.entry_path("folder", *(file.path for file in files)), _valid_folder)
        if (
            entry is None
            or [_identity(dict(zip(_IDENTITY, file, strict=True))) for file in entry["files"]] != files
        ):
            return None
        for file in files:  # their entries are in use too: forgotten with the folder's, not before
            with suppress(OSError):
                os.utime(self.entry_path(file.path))
        return {field: entry[field] for field in _RESULT}

    def store(self, results: Mapping[FileIdentity, list[TensorDigest]]) -> None:
        self._store(
            {
                self.entry_path(identity.path): _entry(identity, tensors)
                for identity, tensors in results.items()
            }
        )

    def store_folder(self, files: list[FileIdentity], result: Mapping[str, object]) -> None:
        entry = {
            "format": CACHE_FORMAT,
            "files": [[getattr(file, field) for field in _IDENTITY] for file in files],
        }
        self._store(
            {
                self.entry_path("folder", *(file.path for file in files)): entry
                | {f: result[f] for f in _RESULT}
            }
        )

    def _used(self, path: Path, valid: Callable[[object], bool]) -> dict | None:
        entry = _read(path, valid)
        if entry is not None:
            with suppress(OSError):
                os.utime(path)  # recently used: forgotten last
        return entry

    def _store(self, entries: Mapping[Path, dict]) -> None:
        """Write ``entries``; the cache is an optimisation, so failing to write it is not an error."""
        if not entries:
            return
        with suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            for path, entry in entries.items():
                _write(path, entry)
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        entries = list(self.folder.glob("*.json"))
        if len(entries) <= MAX_ENTRIES:
            return
        by_age = sorted(entries, key=lambda entry: entry.stat().st_mtime_ns)
        for entry in by_age[: len(entries) - MAX_ENTRIES]:
            entry.unlink(missing_ok=True)


def _read(path: Path, valid: Callable[[object], bool]) -> dict | None:
    """A valid entry, or None: anything unexpected reads as "not cached"."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        if not _trustworthy(os.fstat(handle.fileno())):
            return None
        try:
            entry = json.loads(handle.read(MAX_ENTRY_BYTES))
        except (OSError, ValueError):
            return None
    return entry if valid(entry) else None


def _trustworthy(info: os.stat_result) -> bool:
    """A regular file of ours, writable by nobody else, of a plausible size."""
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    private = not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return stat.S_ISREG(info.st_mode) and owner_ok and private and info.st_size <= MAX_ENTRY_BYTES


def _valid_file(entry: object) -> bool:
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or not _valid_identity(entry):
        return False
    tensors = entry.get("tensors")
    if not isinstance(tensors, list) or not all(_valid_tensor(tensor) for tensor in tensors):
        return False
    # a file cannot hold more tensor bytes than its size; a claim to the contrary is forged or stale
    return sum(math.prod(shape) * DTYPE_SIZES[dtype] for _, dtype, shape, _ in tensors) <= entry["size"]


def _valid_identity(entry: dict) -> bool:
    if not isinstance(entry.get("path"), str) or not os.path.isabs(entry["path"]):
        return False
    return all(type(entry.get(field)) is int and entry[field] >= 0 for field in _IDENTITY[1:])


def _valid_folder(entry: object) -> bool:
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT:
        return False
    files = entry.get("files")
    if not isinstance(files, list) or not files:
        return False
    if not all(isinstance(file, list) and len(file) == len(_IDENTITY) for file in files):
        return False
    if not all(_valid_identity(dict(zip(_IDENTITY, file, strict=True))) for file in files):
        return False
    if not all(type(entry.get(field)) is int and entry[field] >= 0 for field in _RESULT[1:]):
        return False
    digest = entry.get("fingerprint")
    # as for a file's tensors: the files cannot hold more tensor bytes than their sizes
    return (
        isinstance(digest, str)
        and _DIGEST.fullmatch(digest) is not None
        and entry["size_bytes"] <= sum(file[1] for file in files)
    )


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


def _identity(entry: dict) -> FileIdentity:
    return FileIdentity(entry["path"], entry["size"], entry["mtime_ns"], entry["ino"], entry["dev"])


def _entry(identity: FileIdentity, tensors: list[TensorDigest]) -> dict:
    return {
        "format": CACHE_FORMAT,
        "path": identity.path,
        "size": identity.size,
        "mtime_ns": identity.mtime_ns,
        "ino": identity.ino,
        "dev": identity.dev,
        "tensors": [[t.name, t.dtype, list(t.shape), t.digest.hex()] for t in tensors],
    }


def _write(path: Path, entry: dict) -> None:
    """Replace one entry whole: readers see the old entry or the new one, never a mix."""
    descriptor, scratch = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(entry, handle, separators=(",", ":"))
        os.replace(scratch, path)  # replaces a link at ``path`` itself, never writes through it
    except BaseException:
        with suppress(OSError):
            os.unlink(scratch)
        raise
