"""The fingerprint cache: an unchanged base is not read again; any change, or a doubtful cache, is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from adapterlab.errors import CheckpointError
from adapterlab.registry.files import fingerprint as module
from adapterlab.registry.files import fingerprint_cache
from adapterlab.registry.files.fingerprint import fingerprint_checkpoint
from adapterlab.registry.files.fingerprint_cache import CACHE_ENV, cache_folder

SHARDS = {
    "model-00001-of-00002.safetensors": {
        "embed.weight": np.arange(64 * 16, dtype=np.float32).reshape(64, 16),
        "layer.0.weight": np.linspace(-1, 1, 256, dtype=np.float32).reshape(16, 16),
    },
    "model-00002-of-00002.safetensors": {
        "layer.1.weight": np.full((16, 16), 0.5, dtype=np.float16),
        "step": np.array([3], dtype=np.int64),
    },
}
AN_HOUR_AGO = time.time() - 3600


def settle(*paths: Path, when: float = AN_HOUR_AGO) -> None:
    """Date files back, as a downloaded base is: files written just now are not cached (racily clean)."""
    for path in paths:
        for file in [path] if path.is_file() else path.iterdir():
            os.utime(file, (when, when), follow_symlinks=False)


def sharded(folder: Path, shards: dict = SHARDS) -> Path:
    folder.mkdir(parents=True)
    for shard, tensors in shards.items():
        save_file(tensors, str(folder / shard))
    weight_map = {name: shard for shard, tensors in shards.items() for name in tensors}
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    settle(folder)
    return folder


def single(folder: Path, seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    save_file(
        {"w": np.random.default_rng(seed).standard_normal(64).astype(np.float32)},
        str(folder / "model.safetensors"),
    )
    settle(folder)
    return folder


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files whose tensor bytes are read (one item per chunk hashed)."""
    reads: list[str] = []
    chunk_digest = module._chunk_digest

    def spy(entry, start, descriptors):
        reads.append(
            entry.path.name if entry.path is not None else "(in memory)"
        )  # .bin tensors are mapped by torch
        return chunk_digest(entry, start, descriptors)

    monkeypatch.setattr(module, "_chunk_digest", spy)
    return reads


def uncached(location: Path) -> str:
    return fingerprint_checkpoint(location, use_cache=False).fingerprint


def test_second_fingerprint_reads_no_tensor_bytes_nor_headers_and_equals_the_uncached_one(
    tmp_path, hashed, monkeypatch
):
    folder = sharded(tmp_path / "base")
    first = fingerprint_checkpoint(folder)
    assert sorted(set(hashed)) == sorted(SHARDS)
    hashed.clear()
    with monkeypatch.context() as patch:
        patch.setattr(
            module, "checkpoint_tensors", lambda location: pytest.fail(f"read the header of {location}")
        )
        # the folder's finished fingerprint answers: not even the files' tensor digests are read
        patch.setattr(
            fingerprint_cache.FingerprintCache,
            "lookup",
            lambda self, identity: pytest.fail("read a file entry"),
        )
        second = fingerprint_checkpoint(folder)
    assert hashed == []
    assert second == first  # fingerprint, tensor and parameter counts, size
    assert uncached(folder) == first.fingerprint


def test_files_written_just_now_are_hashed_again_until_they_settle(tmp_path, hashed):
    folder = sharded(tmp_path / "base")
    settle(folder, when=time.time())
    fingerprint_checkpoint(folder)
    fingerprint_checkpoint(folder)
    assert len(hashed) == 2 * 4  # four tensors, both times
    settle(folder)
    fingerprint_checkpoint(folder)
    hashed.clear()
    fingerprint_checkpoint(folder)
    assert hashed == []


def test_a_cached_legacy_bin_checkpoint_resolves_without_torch(tmp_path, hashed):
    import torch

    folder = tmp_path / "legacy"
    folder.mkdir()
    torch.save(
        {name: torch.from_numpy(array) for tensors in SHARDS.values() for name, array in tensors.items()},
        folder / "pytorch_model.bin",
    )
    settle(folder)
    expected = fingerprint_checkpoint(folder).fingerprint
    assert expected == uncached(sharded(tmp_path / "sharded"))  # same tensors, same fingerprint
    code = (
        "import sys; from adapterlab.registry.files.fingerprint import fingerprint_checkpoint;"
        "print(fingerprint_checkpoint(sys.argv[1]).fingerprint, 'torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [expected, "False"]


def _replace_same_size_and_mtime(shard: Path) -> None:
    """Other bytes, same size and mtime: only the inode tells."""
    before = shard.stat()
    other = shard.with_suffix(".new")
    tensors = dict(SHARDS[shard.name])
    tensors["step"] = np.array([4], dtype=np.int64)
    save_file(tensors, str(other))
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, shard)
    after = shard.stat()
    assert (after.st_size, after.st_mtime_ns) == (
        before.st_size,
        before.st_mtime_ns,
    ) and after.st_ino != before.st_ino


@pytest.mark.parametrize("change", ["mtime", "size", "inode"])
def test_any_change_to_a_file_rehashes_that_file_only(tmp_path, hashed, change):
    folder = sharded(tmp_path / "base")
    original = fingerprint_checkpoint(folder).fingerprint
    shard = folder / "model-00002-of-00002.safetensors"
    if change == "mtime":
        settle(shard, when=AN_HOUR_AGO - 60)
    elif change == "size":
        save_file({**SHARDS[shard.name], "extra": np.zeros(3, dtype=np.float32)}, str(shard))
        settle(shard)
    else:
        _replace_same_size_and_mtime(shard)
    hashed.clear()
    changed = fingerprint_checkpoint(folder).fingerprint
    assert set(hashed) == {shard.name}
    assert changed == uncached(folder)
    assert (changed == original) is (change == "mtime")


def cached_entries(folder: Path) -> dict[Path, dict]:
    return {path: json.loads(path.read_text()) for path in folder.glob("*.json")}


def file_entries(folder: Path) -> dict[Path, dict]:
    """The per-file entries (tensor digests), without the folders' finished fingerprints."""
    return {path: entry for path, entry in cached_entries(folder).items() if "tensors" in entry}


def folder_entries(folder: Path) -> dict[Path, dict]:
    return {path: entry for path, entry in cached_entries(folder).items() if "files" in entry}


@pytest.mark.parametrize(
    "content",
    [
        b"\x00garbage{",
        b"[1, 2, 3]",
        "format 99",
        "another path",
        "forged digest",
        "forged shape",
        "claims more bytes than the file has",
    ],
)
def test_a_corrupt_or_forged_entry_is_ignored_and_rewritten(
    tmp_path, hashed, private_fingerprint_cache, content
):
    folder = single(tmp_path / "base")
    expected = uncached(folder)
    fingerprint_checkpoint(folder)
    for summary in folder_entries(private_fingerprint_cache):
        summary.unlink()  # else the folder's finished fingerprint answers first
    ((path, entry),) = file_entries(private_fingerprint_cache).items()
    if isinstance(content, str):
        tensor = entry["tensors"][0]
        if content == "format 99":
            entry["format"] = 99
        elif content == "another path":
            entry["path"] = str(tmp_path / "other" / "model.safetensors")
        elif content == "forged digest":
            tensor[3] = "not hex" * 8
        elif content == "forged shape":
            tensor[2] = [-1, -64]
        else:
            tensor[2] = [10**9]
        content = json.dumps(entry).encode()
    path.write_bytes(content)
    hashed.clear()
    assert fingerprint_checkpoint(folder).fingerprint == expected
    assert hashed == ["model.safetensors"]  # not trusted: read again
    assert file_entries(private_fingerprint_cache)[path]["path"] == os.path.realpath(
        folder / "model.safetensors"
    )
    hashed.clear()
    assert (
        fingerprint_checkpoint(folder).fingerprint == expected and hashed == []
    )  # the rewritten entry is used


@pytest.mark.parametrize(
    "forgery",
    [
        "fingerprint not hex",
        "negative count",
        "more bytes than the files",
        "another file's identity",
        "no files",
    ],
)
def test_a_forged_folder_fingerprint_is_ignored_and_rewritten(
    tmp_path, hashed, private_fingerprint_cache, forgery
):
    folder = sharded(tmp_path / "base")
    expected = fingerprint_checkpoint(folder)
    ((path, entry),) = folder_entries(private_fingerprint_cache).items()
    assert entry["fingerprint"] == expected.fingerprint
    if forgery == "fingerprint not hex":
        entry["fingerprint"] = "z" * 64
    elif forgery == "negative count":
        entry["tensor_count"] = -1
    elif forgery == "more bytes than the files":
        entry["size_bytes"] = 10**12
    elif forgery == "another file's identity":
        entry["files"][0][2] += 1  # mtime_ns
    else:
        entry["files"] = []
    path.write_text(json.dumps(entry))
    hashed.clear()
    assert fingerprint_checkpoint(folder) == expected
    assert hashed == []  # the per-file entries still held
    assert folder_entries(private_fingerprint_cache)[path]["fingerprint"] == expected.fingerprint


def test_entries_others_can_write_are_not_trusted(tmp_path, hashed, private_fingerprint_cache):
    folder = single(tmp_path / "base")
    fingerprint_checkpoint(folder)
    entries = list(cached_entries(private_fingerprint_cache))
    assert len(entries) == 2  # the file's tensor digests, the folder's fingerprint
    for path in entries:
        path.chmod(0o666)
    hashed.clear()
    fingerprint_checkpoint(folder)
    assert hashed == ["model.safetensors"]
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in entries)  # replaced by private ones


def test_entries_that_are_links_are_neither_read_nor_written_through(
    tmp_path, hashed, private_fingerprint_cache
):
    folder = single(tmp_path / "base")
    fingerprint_checkpoint(folder)
    links = {}
    for number, path in enumerate(cached_entries(private_fingerprint_cache)):
        links[path] = tmp_path / f"elsewhere-{number}.json"
        links[path].write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(links[path])
    before = {target: target.read_bytes() for target in links.values()}
    hashed.clear()
    fingerprint_checkpoint(folder)
    assert hashed == ["model.safetensors"]  # the links' (valid) content was not used
    assert {target: target.read_bytes() for target in links.values()} == before
    assert not any(path.is_symlink() for path in links)


def test_the_least_recently_used_entries_are_forgotten(
    tmp_path, hashed, private_fingerprint_cache, monkeypatch
):
    monkeypatch.setattr(fingerprint_cache, "MAX_ENTRIES", 4)  # two folders' entries (file and folder)
    first, second, third = (single(tmp_path / name, seed=seed) for seed, name in enumerate(["a", "b", "c"]))
    fingerprint_checkpoint(first)
    fingerprint_checkpoint(second)
    weights = os.path.realpath(first / "model.safetensors")
    for path, entry in cached_entries(private_fingerprint_cache).items():  # long unused, the first longest
        when = AN_HOUR_AGO - (60 if weights in (entry.get("path"), entry.get("files", [[None]])[0][0]) else 0)
        os.utime(path, (when, when))
    fingerprint_checkpoint(first)  # used again: now the most recent
    fingerprint_checkpoint(third)
    assert len(cached_entries(private_fingerprint_cache)) == 4
    remembered = {entry["path"] for entry in file_entries(private_fingerprint_cache).values()}
    assert remembered == {os.path.realpath(folder / "model.safetensors") for folder in (first, third)}


def test_no_cache_when_bypassed_by_argument_or_environment(
    tmp_path, hashed, private_fingerprint_cache, monkeypatch
):
    folder = single(tmp_path / "base")
    fingerprint_checkpoint(folder, use_cache=False)
    fingerprint_checkpoint(folder, use_cache=False)
    assert not private_fingerprint_cache.exists()  # neither read nor written
    monkeypatch.setenv(CACHE_ENV, "off")
    fingerprint_checkpoint(folder)
    fingerprint_checkpoint(folder)
    assert hashed == ["model.safetensors"] * 4
    assert not private_fingerprint_cache.exists()


def test_the_cache_lives_in_the_user_cache_folder_unless_moved(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_folder() == tmp_path / "home" / ".cache" / "adapterlab" / "fingerprints-v1"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the XDG spec says
    assert cache_folder() == tmp_path / "home" / ".cache" / "adapterlab" / "fingerprints-v1"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = single(tmp_path / "base")
    fingerprint_checkpoint(folder)
    assert [
        entry["path"] for entry in file_entries(tmp_path / "xdg" / "adapterlab" / "fingerprints-v1").values()
    ] == [os.path.realpath(folder / "model.safetensors")]
    monkeypatch.setenv(CACHE_ENV, "~/elsewhere")
    assert cache_folder() == tmp_path / "home" / "elsewhere"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # no home folder at all (a bare container)
    assert cache_folder() is None


def test_an_unusable_cache_folder_only_costs_a_rehash(tmp_path, hashed, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocked))
    folder = single(tmp_path / "base")
    assert (
        fingerprint_checkpoint(folder).fingerprint
        == fingerprint_checkpoint(folder).fingerprint
        == uncached(folder)
    )
    assert hashed == ["model.safetensors"] * 3 and blocked.read_text() == "not a folder"


def test_links_inside_the_folder_are_cached_and_retargeting_one_rehashes(tmp_path, hashed):
    folder = single(tmp_path / "base")
    (folder / "weights").mkdir()
    os.replace(folder / "model.safetensors", folder / "weights" / "a.safetensors")
    save_file({"w": np.ones(64, dtype=np.float32)}, str(folder / "weights" / "b.safetensors"))
    (folder / "model.safetensors").symlink_to("weights/a.safetensors")
    settle(folder, folder / "weights")
    first = fingerprint_checkpoint(folder).fingerprint
    hashed.clear()
    assert fingerprint_checkpoint(folder).fingerprint == first and hashed == []
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to("weights/b.safetensors")
    assert fingerprint_checkpoint(folder).fingerprint == uncached(folder) != first
    assert hashed == ["model.safetensors"] * 2  # the link, read once cached and once uncached


def test_links_out_of_the_folder_are_refused_and_never_cached(tmp_path, hashed, private_fingerprint_cache):
    outside = single(tmp_path / "outside") / "model.safetensors"
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "model.safetensors").symlink_to(outside)
    for _ in range(2):
        with pytest.raises(CheckpointError, match="leads outside the model folder"):
            fingerprint_checkpoint(folder)
    assert hashed == []
    assert not private_fingerprint_cache.exists()


def test_a_hub_cache_snapshot_is_cached_through_its_blob_links(tmp_path, hashed):
    repo = tmp_path / "hub" / "models--org--tiny"
    blob = single(repo / "blobs") / "model.safetensors"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(Path("../..") / "blobs" / "model.safetensors")
    first = fingerprint_checkpoint(snapshot).fingerprint
    hashed.clear()
    assert fingerprint_checkpoint(snapshot).fingerprint == first == uncached(blob.parent) and hashed == [
        "model.safetensors"
    ]


WORKER = """
import sys, time
from adapterlab.registry.files.fingerprint import fingerprint_checkpoint
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # all start storing at once
for folder in sys.argv[2:]:
    print(folder, fingerprint_checkpoint(folder).fingerprint)
"""


def test_concurrent_processes_share_the_cache_without_losing_or_corrupting_it(
    tmp_path, private_fingerprint_cache
):
    workers, per_worker = 4, 10
    folders = [str(single(tmp_path / f"base-{seed}", seed=seed)) for seed in range(workers * per_worker)]
    expected = {folder: uncached(Path(folder)) for folder in folders}
    start = str(time.time() + 3)  # past every interpreter's start-up
    running = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, start, *folders[i::workers]], stdout=subprocess.PIPE, text=True
        )
        for i in range(workers)
    ]
    for worker, i in zip(running, range(workers), strict=True):
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        assert dict(line.split() for line in output.splitlines()) == {
            folder: expected[folder] for folder in folders[i::workers]
        }
    # every process's entries are there, whole
    remembered = [entry["path"] for entry in file_entries(private_fingerprint_cache).values()]
    assert sorted(remembered) == sorted(
        os.path.realpath(Path(folder) / "model.safetensors") for folder in folders
    )


def test_registering_and_loading_against_an_unchanged_base_hash_it_once(
    registry_env, tiny_base, make_lora, tmp_path, hashed, monkeypatch
):
    from adapterlab.registry import load, register_adapter

    base = tmp_path / "tiny-bert"
    shutil.copytree(tiny_base, base)
    settle(base)
    first = register_adapter(make_lora(seed=1), name="a", base=base)
    assert hashed
    hashed.clear()
    second = register_adapter(make_lora(seed=2), name="b", base=base)
    assert hashed == [] and second.base.fingerprint == first.base.fingerprint
    checked = []
    from adapterlab.registry import base_locations

    monkeypatch.setattr(
        base_locations,
        "fingerprint_checkpoint",
        lambda *a, **k: checked.append(a) or fingerprint_checkpoint(*a, **k),
    )
    assert load("b") is not None
    assert checked and hashed == []  # the base folder's fingerprint was checked, from the cache
    assert uncached(base) == first.base.fingerprint
