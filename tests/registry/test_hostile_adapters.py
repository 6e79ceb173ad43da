"""Hostile and careless adapter folders: refused before anything is written, on both backends.

To add a case, append a ``Refused`` row to ``REFUSED``: ``spoil`` gets a ``Case`` (a good LoRA
folder to damage, the bases, the environment) and returns the keyword arguments that differ from
``register_adapter(case.folder, name="victim", base=case.tiny_base)``. It may register something
first (to set up a conflict): the artifact store and the registry are snapshotted after it runs,
and the test asserts the refused registration changed neither.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from safetensors.numpy import load_file, save_file

from adapterlab.errors import BaseModelMismatch, CheckpointError, InvalidConfig, RegistryUnavailable
from adapterlab.registry import list_versions, pull, register_adapter
from adapterlab.registry.mlflow.artifacts import artifact_key

WEIGHTS = "adapter_model.safetensors"


@dataclass
class Case:
    folder: Path  # a good LoRA adapter for tiny_base, to spoil
    tmp: Path
    tiny_base: Path
    other_base: Path
    monkeypatch: pytest.MonkeyPatch


@dataclass(frozen=True)
class Refused:
    id: str
    spoil: Callable[[Case], dict[str, Any]]
    error: type[Exception]
    match: str


def _link(case: Case, name: str, target: str | Path) -> dict[str, Any]:
    link = case.folder / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists():
        link.unlink()
    link.symlink_to(target)
    return {}


def _weights_moved_out(case: Case) -> dict[str, Any]:
    outside = case.tmp / "elsewhere" / WEIGHTS
    outside.parent.mkdir()
    shutil.move(case.folder / WEIGHTS, outside)
    return _link(case, WEIGHTS, outside)


def _poison(value: float, dtype: str = "float32") -> Callable[[Case], dict[str, Any]]:
    def spoil(case: Case) -> dict[str, Any]:
        tensors = load_file(str(case.folder / WEIGHTS))
        key = sorted(tensors)[-1]
        tensors = {name: tensor.astype(dtype) for name, tensor in tensors.items()}
        tensors[key].flat[3] = value
        save_file(tensors, str(case.folder / WEIGHTS))
        return {}

    return spoil


def _bf16_nan_in_a_bin(case: Case) -> dict[str, Any]:
    import torch

    tensors = {
        name: torch.from_numpy(t).to(torch.bfloat16)
        for name, t in load_file(str(case.folder / WEIGHTS)).items()
    }
    tensors[sorted(tensors)[0]][0, 0] = float("nan")
    torch.save(tensors, case.folder / "adapter_model.bin")
    (case.folder / WEIGHTS).unlink()
    return {}


def _config(case: Case, **changes: Any) -> dict[str, Any]:
    path = case.folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return {}


def _registered_first(case: Case, **first: Any) -> None:
    other = case.tmp / "first"
    shutil.copytree(case.folder, other)
    _config_path = other / "adapter_config.json"
    _config_path.write_text(
        json.dumps({**json.loads(_config_path.read_text()), "lora_alpha": 16})
    )  # other content
    register_adapter(other, **{"name": "victim", "base": case.tiny_base, **first})


def _base_with(case: Case, folder: Path, **config: Any) -> Path:
    shutil.copytree(case.tiny_base, folder)
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return folder


REFUSED = [
    Refused(
        "link to /etc/passwd",
        lambda c: _link(c, "README.md", "/etc/passwd"),
        CheckpointError,
        "outside the adapter folder",
    ),
    Refused("weights linked from outside", _weights_moved_out, CheckpointError, "outside the adapter folder"),
    Refused(
        "relative link climbing out",
        lambda c: _link(c, "labels.json", "../../../secret.json"),
        CheckpointError,
        "outside",
    ),
    Refused(
        "included file links out",
        lambda c: {**_link(c, "extra/notes.txt", "/etc/hostname"), "include": ["extra/*"]},
        CheckpointError,
        "outside the adapter folder",
    ),
    Refused(
        "broken link",
        lambda c: _link(c, "tokenizer.json", c.folder / "missing"),
        CheckpointError,
        "not a regular file",
    ),
    Refused(
        "NaN in float32 weights",
        _poison(float("nan")),
        CheckpointError,
        r"tensor '.*lora_B\.weight'.*NaN or infinite",
    ),
    Refused("inf in float16 weights", _poison(float("inf"), "float16"), CheckpointError, "NaN or infinite"),
    Refused("-inf in float64 weights", _poison(float("-inf"), "float64"), CheckpointError, "NaN or infinite"),
    Refused(
        "NaN in a bfloat16 .bin",
        _bf16_nan_in_a_bin,
        CheckpointError,
        r"tensor '.*layer\.0.*lora_A\.weight'.*NaN",
    ),
    Refused("--include matching nothing", lambda c: {"include": ["*.pt"]}, InvalidConfig, "matches no file"),
    Refused(
        "--include climbing out",
        lambda c: {"include": ["../*"]},
        InvalidConfig,
        "relative to the adapter folder",
    ),
    Refused(
        "--include absolute",
        lambda c: {"include": ["/etc/*"]},
        InvalidConfig,
        "relative to the adapter folder",
    ),
    Refused(
        "unknown task in the config",
        lambda c: _config(c, task_type="X" * 100),
        InvalidConfig,
        "unknown task type",
    ),
    Refused("bad name", lambda c: {"name": "x/../y"}, InvalidConfig, "invalid adapter name"),
    Refused("name too long", lambda c: {"name": "n" * 129}, InvalidConfig, "at most 128"),
    Refused(
        "another base for the same line",
        lambda c: (_registered_first(c), {"base": c.other_base})[1],
        BaseModelMismatch,
        "another name",
    ),
    Refused(
        "another task for the same line",
        lambda c: (_registered_first(c), {"task_type": "SEQ_CLS"})[1],
        InvalidConfig,
        "is for task FEATURE_EXTRACTION",
    ),
    Refused(
        "user name longer than its column",
        lambda c: c.monkeypatch.setenv("ADAPTERLAB_USER", "u" * 129) or {},
        InvalidConfig,
        "created by is 129 characters long; the registry stores at most 128",
    ),
    Refused(
        "run id longer than its column", lambda c: {"mlflow_run_id": "r" * 65}, InvalidConfig, "at most 64"
    ),
    Refused(
        "base model_type longer than its column",
        lambda c: {"base": _base_with(c, c.tmp / "b", model_type="m" * 65)},
        InvalidConfig,
        "model type is 65 characters long",
    ),
    Refused(
        "base revision longer than its column",
        lambda c: {"base": _base_with(c, c.tmp / "models--org--b" / "snapshots" / ("f" * 129))},
        InvalidConfig,
        "revision is 129 characters long",
    ),
    Refused(
        "credentials in the artifact root",
        lambda c: c.monkeypatch.setenv("ADAPTERLAB_ARTIFACT_ROOT", "s3://key:hunter2@bucket/x") or {},
        RegistryUnavailable,
        "carries credentials",
    ),
]


def store_state(home: Path) -> tuple[dict[str, str], list[tuple[str, int]], list[str]]:
    """Every stored file's digest, every registry version, every MLflow model: what a refusal must not
    touch."""
    artifacts = home / "artifacts"
    files = (
        {
            str(path.relative_to(artifacts)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(artifacts.rglob("*"))
            if path.is_file()
        }
        if artifacts.exists()
        else {}
    )
    uri = os.environ["MLFLOW_TRACKING_URI"]
    models = [m.name for m in MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()]
    return files, [(row.name, row.version) for row in list_versions()], models


@pytest.mark.parametrize("refused", REFUSED, ids=[case.id for case in REFUSED])
def test_refused_before_anything_is_written(
    refused: Refused,
    registry_env,
    tiny_base,
    other_base,
    make_lora,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = Case(
        folder=make_lora(seed=7),
        tmp=tmp_path,
        tiny_base=tiny_base,
        other_base=other_base,
        monkeypatch=monkeypatch,
    )
    options = {"name": "victim", "base": tiny_base, **refused.spoil(case)}
    before = store_state(tmp_path / "home")
    with pytest.raises(refused.error, match=refused.match) as raised:
        register_adapter(case.folder, **options)
    assert len(str(raised.value).splitlines()) == 1 and "hunter2" not in str(raised.value)
    assert store_state(tmp_path / "home") == before


# --- folders that look odd but are fine -------------------------------------------------------


def _hf_cache_snapshot(root: Path, adapter: Path) -> Path:
    """The Hugging Face cache layout: snapshot files are relative links into ../../blobs."""
    repo = root / "models--org--tiny-adapter"
    snapshot = repo / "snapshots" / ("a" * 40)
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in adapter.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return snapshot


def test_a_hugging_face_cache_snapshot_registers_through_its_links(
    registry_env, tiny_base, make_lora, tmp_path
) -> None:
    adapter = make_lora(seed=1)
    snapshot = _hf_cache_snapshot(tmp_path / "hub", adapter)
    assert (snapshot / WEIGHTS).is_symlink()
    version = register_adapter(snapshot, name="cached", base=tiny_base)
    pulled = tmp_path / "pulled"
    pull("cached:1", pulled)
    assert sorted(p.name for p in pulled.iterdir()) == ["adapter_config.json", WEIGHTS]
    assert (pulled / WEIGHTS).read_bytes() == (adapter / WEIGHTS).read_bytes()
    assert version.sha256 == register_adapter(adapter, name="cached", base=tiny_base).sha256  # same content


def test_a_link_inside_the_folder_is_followed(registry_env, tiny_base, make_lora, tmp_path) -> None:
    adapter = make_lora(seed=1)
    (adapter / "docs").mkdir()
    (adapter / "docs" / "card.md").write_text("# my adapter\n")
    (adapter / "README.md").symlink_to(Path("docs") / "card.md")
    register_adapter(adapter, name="linked", base=tiny_base)
    pull("linked", tmp_path / "pulled")
    assert (tmp_path / "pulled" / "README.md").read_text() == "# my adapter\n"
    assert not (tmp_path / "pulled" / "docs").exists()


def test_stray_files_are_left_out_and_named_and_include_adds_them(
    registry_env, tiny_base, make_lora, tmp_path, caplog
) -> None:
    adapter = make_lora(seed=1)
    (adapter / "optimizer.pt").write_bytes(os.urandom(4096))
    (adapter / "notes").mkdir()
    (adapter / "notes" / "eval.txt").write_text("accuracy 0.9")
    (adapter / "labels.json").write_text(json.dumps({"id2label": {"0": "a"}, "label2id": {"a": 0}}))
    with caplog.at_level(logging.WARNING, logger="adapterlab.registry"):
        register_adapter(adapter, name="tidy", base=tiny_base)
    notes = [record.getMessage() for record in caplog.records if "not stored" in record.getMessage()]
    assert notes == [
        "Note: not stored with the adapter: notes/eval.txt, optimizer.pt (add them with --include PATTERN)"
    ]
    pull("tidy:1", tmp_path / "one")
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [
        "adapter_config.json",
        WEIGHTS,
        "labels.json",
    ]

    register_adapter(adapter, name="tidy", base=tiny_base, include=["notes/*.txt"])
    pull("tidy:2", tmp_path / "two")
    assert (tmp_path / "two" / "notes" / "eval.txt").read_text() == "accuracy 0.9"
    assert not (tmp_path / "two" / "optimizer.pt").exists()


def test_adapter_names_cannot_reach_each_others_files(registry_env, tiny_base, make_lora, tmp_path) -> None:
    """A name that spells another adapter's old folder (``x/<sha256>``) gets its own, unrelated folder."""
    first = register_adapter(make_lora(seed=1), name="x", base=tiny_base)
    key = first.artifact_uri.rsplit("/", 1)[1]
    hostile = [f"x/{first.sha256}", f"x/{key}", key, f"adapters/{key}", "x/1"]
    registered = [first] + [
        register_adapter(make_lora(seed=2 + i), name=name, base=tiny_base) for i, name in enumerate(hostile)
    ]
    uris = [version.artifact_uri for version in registered]
    for uri in uris:
        assert not any(other != uri and other.startswith(uri.rstrip("/") + "/") for other in uris), uri
        assert len(uri.rsplit("/", 1)[1]) == 64 and uri.rsplit("/", 2)[1] == "adapters"
    assert len(set(uris)) == len(uris)
    for version in registered:  # every adapter's files are intact and verified
        pull(
            version.ref,
            tmp_path / "pulled" / str(len(version.name)) / hashlib.md5(version.name.encode()).hexdigest(),
        )


def test_artifact_key_is_injective_and_fixed_length() -> None:
    keys = {
        artifact_key(name, sha)
        for name, sha in [("a", "b:c"), ("a:b", "c"), ("a/b", "c"), ("a", "b/c"), ("ab", "c")]
    }
    assert len(keys) == 5 and all(len(key) == 64 and key.isalnum() for key in keys)


def test_register_cli_takes_include_and_names_what_it_left_out(registry_env, tiny_base, make_lora) -> None:
    from click.testing import CliRunner

    from adapterlab.cli.main import cli

    adapter = make_lora(seed=1)
    (adapter / "optimizer.pt").write_bytes(b"\0" * 64)
    (adapter / "scheduler.pt").write_bytes(b"\0" * 64)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "register",
            str(adapter),
            "--name",
            "cli-inc",
            "--base",
            str(tiny_base),
            "--include",
            "optimizer.pt",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    stored = Path(json.loads(result.stdout)["artifact_uri"].removeprefix("file://"))
    assert sorted(p.name for p in stored.iterdir()) == ["adapter_config.json", WEIGHTS, "optimizer.pt"]
    result = runner.invoke(
        cli, ["register", str(adapter), "--name", "cli-inc2", "--base", str(tiny_base), "--include", "*.ckpt"]
    )
    assert result.exit_code == 1 and result.stderr.startswith("Error: --include '*.ckpt' matches no file")
    assert len(result.stderr.strip().splitlines()) == 1
