"""Fingerprints depend on the tensors only: not on sharding or file format, on every byte of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from adapterlab.errors import CheckpointError
from adapterlab.registry.files.fingerprint import fingerprint_checkpoint

TENSORS = {
    "embeddings.weight": np.arange(64 * 16, dtype=np.float32).reshape(64, 16),
    "layer.bias": np.linspace(-1, 1, 16, dtype=np.float16),
    "layer.weight": np.ones((16, 16), dtype=np.float32),
    "step": np.array([3], dtype=np.int64),
}


def save(folder: Path, tensors: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def fingerprint(folder: Path) -> str:
    return fingerprint_checkpoint(folder).fingerprint


def test_same_weights_same_fingerprint_single_sharded_or_bin(tmp_path: Path) -> None:
    single = save(tmp_path / "single", TENSORS)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shards = {
        "model-1.safetensors": ["embeddings.weight"],
        "model-2.safetensors": ["layer.bias", "layer.weight", "step"],
    }
    for shard, names in shards.items():
        save_file({name: TENSORS[name] for name in names}, str(sharded / shard))
    weight_map = {name: shard for shard, names in shards.items() for name in names}
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save(
        {name: torch.from_numpy(array) for name, array in TENSORS.items()}, legacy / "pytorch_model.bin"
    )

    result = fingerprint_checkpoint(single)
    assert fingerprint(sharded) == fingerprint(legacy) == result.fingerprint
    assert result.tensor_count == 4 and result.parameter_count == 64 * 16 + 16 + 256 + 1


@pytest.mark.parametrize("change", ["byte", "name", "dtype", "shape"])
def test_any_change_changes_the_fingerprint(tmp_path: Path, change: str) -> None:
    tensors = dict(TENSORS)
    if change == "byte":
        tensors["layer.weight"] = tensors["layer.weight"].copy()
        tensors["layer.weight"][3, 5] = np.nextafter(np.float32(1), np.float32(2))
    elif change == "name":
        tensors["layer.weights"] = tensors.pop("layer.weight")
    elif change == "dtype":
        tensors["layer.weight"] = tensors["layer.weight"].view(np.int32)
    else:
        tensors["layer.weight"] = tensors["layer.weight"].reshape(8, 32)
    assert fingerprint(save(tmp_path / "changed", tensors)) != fingerprint(
        save(tmp_path / "original", TENSORS)
    )


def test_big_tensors_are_hashed_in_chunks_with_the_same_result_every_time(
    tmp_path: Path, monkeypatch
) -> None:
    from adapterlab.registry.files import fingerprint as module

    monkeypatch.setattr(module, "CHUNK_BYTES", 1000)  # many chunks per tensor, many threads
    folder = save(tmp_path / "m", TENSORS)
    assert len({fingerprint(folder) for _ in range(3)}) == 1


def test_corrupt_and_missing_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    folder = save(tmp_path / "m", TENSORS)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        fingerprint(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no weights"):
        fingerprint(empty)


def test_memory_stays_far_below_the_checkpoint_size(tmp_path: Path) -> None:
    size = 256 * 1024 * 1024
    folder = save(tmp_path / "big", {"w": np.zeros(size // 4, dtype=np.float32)})
    # VmHWM, not ru_maxrss: the latter carries over the (large) RSS of the forking test process
    code = (
        "import re, sys; from adapterlab.registry.files.fingerprint import fingerprint_checkpoint;"
        "fingerprint_checkpoint(sys.argv[1]);"
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    )
    peak_kib = int(
        subprocess.run(
            [sys.executable, "-c", code, str(folder)], check=True, capture_output=True, text=True
        ).stdout
    )
    assert peak_kib * 1024 < size / 2, f"peak RSS {peak_kib} KiB for a {size >> 20} MiB checkpoint"


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path: Path, capsys) -> None:
    folder = save(tmp_path / "m", TENSORS)
    fingerprint_checkpoint(folder)  # stderr is captured, not a terminal: no bar
    assert capsys.readouterr().err == ""
    fingerprint_checkpoint(folder, progress=True)
    assert "fingerprint" in capsys.readouterr().err


def test_weights_linked_from_outside_the_folder_are_refused(tmp_path: Path) -> None:
    elsewhere = save(tmp_path / "elsewhere", TENSORS)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "model.safetensors").symlink_to(elsewhere / "model.safetensors")
    with pytest.raises(CheckpointError, match="leads outside the model folder"):
        fingerprint(linked)

    escaping_index = tmp_path / "escaping"
    escaping_index.mkdir()
    weight_map = {name: "../elsewhere/model.safetensors" for name in TENSORS}
    (escaping_index / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match="leads outside the model folder"):
        fingerprint(escaping_index)


def test_a_hugging_face_cache_snapshot_links_into_its_blobs(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--org--tiny"
    blob = save(repo / "blobs", TENSORS) / "model.safetensors"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(Path("../../blobs") / blob.name)
    assert fingerprint(snapshot) == fingerprint(repo / "blobs")
