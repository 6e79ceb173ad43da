"""Finding and describing the tensors of a checkpoint without loading them.

safetensors files are described from their header alone (8-byte little-endian length, then a
JSON table of ``name -> {dtype, shape, data_offsets}``), so the registry needs neither torch nor
the ``safetensors`` package for them. A legacy pickled ``.bin`` is opened with
``torch.load(weights_only=True, mmap=True)``, torch imported only then.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from adapterlab.errors import CheckpointError, summarize

# bytes per element of each safetensors dtype
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit; a larger length means a corrupt file
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


@dataclass(frozen=True)
class TensorEntry:
    """One tensor: its identity, and where its raw bytes are (a file span or a memory buffer)."""

    name: str
    dtype: str  # safetensors spelling, also for tensors read from .bin files
    shape: tuple[int, ...]
    length: int  # bytes
    path: Path | None = None
    offset: int = 0  # absolute offset in ``path``
    buffer: memoryview | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_safetensors_header(path: Path) -> tuple[list[TensorEntry], dict[str, str]]:
    """The tensors described by a safetensors file's header, checked against the file's size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path} is not a safetensors file (too short); re-save the weights")
            (header_length,) = struct.unpack("<Q", prefix)
            if header_length > min(_MAX_HEADER, size - 8):
                raise CheckpointError(
                    f"{path} is corrupt (header length {header_length}); re-save the weights"
                )
            header = json.loads(handle.read(header_length))
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (
        UnicodeDecodeError,
        json.JSONDecodeError,
        RecursionError,
    ) as exc:  # RecursionError: nested too deeply
        raise CheckpointError(f"{path} is corrupt (unreadable header); re-save the weights") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is corrupt (header is not a table); re-save the weights")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_length
    entries = [_header_entry(path, name, info, data_start, size) for name, info in header.items()]
    return entries, metadata


def _header_entry(path: Path, name: str, info: object, data_start: int, file_size: int) -> TensorEntry:
    try:
        dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]  # type: ignore[index]
        if dtype not in DTYPE_SIZES or any(not isinstance(d, int) or d < 0 for d in shape):
            raise ValueError
        length = end - begin
        if begin < 0 or length != math.prod(shape) * DTYPE_SIZES[dtype] or data_start + end > file_size:
            raise ValueError
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is corrupt (tensor {name!r} is truncated or malformed); re-save the weights"
        ) from exc
    return TensorEntry(
        name=name, dtype=dtype, shape=shape, length=length, path=path, offset=data_start + begin
    )


def checkpoint_tensors(location: Path) -> list[TensorEntry]:
    """Every tensor of a model folder (single or sharded safetensors, legacy .bin) or file."""
    location = Path(location)
    files = weight_files(location)
    entries: list[TensorEntry] = []
    for file in files:
        if file.suffix == ".safetensors":
            entries.extend(read_safetensors_header(file)[0])
        else:
            entries.extend(read_bin_tensors(file))
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise CheckpointError(
            f"{location} stores some tensors twice (overlapping shards); re-save the weights"
        )
    return sorted(entries, key=lambda entry: entry.name)


def model_config(folder: Path) -> dict:
    """A model folder's ``config.json``; empty when there is none or it is unreadable."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return {}  # a folder of bare weights is still a base; it just has no model_type
    return config if isinstance(config, dict) else {}


def weight_files(location: Path) -> list[Path]:
    """The weight files of a checkpoint, preferring safetensors and following shard indexes.

    A file named directly is read as given; inside a folder, a weight file (or a shard an index
    names) that is a link out of the folder is refused, as for adapter folders.
    """
    if location.is_file():
        return [location]
    if not location.is_dir():
        raise CheckpointError(f"{location} does not exist; pass a model folder or weights file")
    return [_inside(location, file) for file in _folder_weight_files(location)]


def _folder_weight_files(location: Path) -> list[Path]:
    for index_name in (SAFETENSORS_INDEX, BIN_INDEX):
        index = location / index_name
        if index.is_file():
            return _shards(index)
    for pattern in ("model.safetensors", "*.safetensors", "pytorch_model.bin", "*.bin"):
        found = sorted(location.glob(pattern))
        if found:
            return found
    raise CheckpointError(
        f"no weights in {location}: expected model.safetensors, a shard index or pytorch_model.bin"
    )


def link_boundary(folder: Path) -> Path:
    """Where links in ``folder`` may point: the folder itself or, for a snapshot in a Hugging Face
    cache (``models--org--name/snapshots/<rev>/``), that cached repo, whose files are links into
    its ``blobs/``."""
    for ancestor in folder.parents:
        if ancestor.name.startswith("models--") and folder.is_relative_to(ancestor / "snapshots"):
            return ancestor
    return folder


def _inside(folder: Path, file: Path) -> Path:
    if not file.resolve().is_relative_to(link_boundary(folder.resolve())):
        raise CheckpointError(
            f"{file} leads outside the model folder {folder} (a link or a '..' shard name); "
            "copy the weights into the folder"
        )
    return file


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({index.parent / shard for shard in weight_map.values()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"{index} is not a valid shard index; re-save the weights") from exc
    missing = [file.name for file in files if not file.is_file()]
    if missing:
        raise CheckpointError(f"{index} lists missing shards: {', '.join(missing[:3])}")
    return files


def read_bin_tensors(path: Path) -> list[TensorEntry]:
    """Tensors of a pickled checkpoint, loaded safely (``weights_only``) and memory-mapped."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
        raise CheckpointError(
            f"cannot read {path} safely: {summarize(exc, first_line=True, limit=None)}"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return [_tensor_entry(name, tensor) for name, tensor in state.items()]


def state_dict_entries(state: dict, *, drop_tied: bool) -> list[TensorEntry]:
    """Tensors of an in-memory state dict; ``drop_tied`` keeps one name per shared storage."""
    entries, seen = [], set()
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if drop_tied and key in seen:
            continue
        seen.add(key)
        entries.append(_tensor_entry(name, tensor))
    return entries


def _tensor_entry(name: str, tensor) -> TensorEntry:
    import torch

    dtype = TORCH_DTYPES.get(str(tensor.dtype).removeprefix("torch."))
    if dtype is None:
        raise CheckpointError(f"tensor {name!r} has unsupported dtype {tensor.dtype}")
    flat = tensor.detach().contiguous().reshape(-1).view(torch.uint8)  # raw bytes, any dtype
    buffer = memoryview(flat.numpy()).cast("B")
    return TensorEntry(name=name, dtype=dtype, shape=tuple(tensor.shape), length=len(buffer), buffer=buffer)


TORCH_DTYPES = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "int16": "I16",
    "uint16": "U16",
    "float16": "F16",
    "bfloat16": "BF16",
    "int32": "I32",
    "uint32": "U32",
    "float32": "F32",
    "int64": "I64",
    "uint64": "U64",
    "float64": "F64",
}
