"""Each training run gets its own folder; nothing of an earlier run is overwritten; --resume finds its run."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

from adapterlab.cli.main import cli
from adapterlab.training.run_folders import holds_run, latest_run_folder, new_run_folder

NOON = datetime(2026, 11, 30, 12, 0, 0, tzinfo=timezone.utc)


def test_new_run_folders_are_named_for_their_start_and_never_reused(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    names = []
    for _ in range(11):
        folder = new_run_folder(runs, NOON)
        folder.mkdir(parents=True)
        names.append(folder.name)
    assert names == ["20261130-120000", *(f"20261130-120000-{n}" for n in range(2, 12))]
    assert latest_run_folder(runs) == runs / "20261130-120000-11"  # by number, not by text ("-11" < "-2")
    later = new_run_folder(runs, NOON.replace(second=1))
    later.mkdir()
    (runs / "not-a-run").mkdir()
    assert latest_run_folder(runs) == later and latest_run_folder(tmp_path / "none") is None


def test_a_folder_holds_a_run_once_a_run_wrote_into_it(tmp_path: Path) -> None:
    assert not holds_run(tmp_path)
    (tmp_path / "run.json").write_text("{}")
    assert holds_run(tmp_path)


def train(tiny_models: dict, task_data: dict, *extra: str, code: int = 0):
    args = [
        "train",
        "--base",
        str(tiny_models["seq-cls"]),
        "--data",
        str(task_data["seq-cls"]),
        "--name",
        "again",
        "--max-steps",
        "2",
        "--save-steps",
        "2",
        "--batch-size",
        "8",
        "--no-register",
        *extra,
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    return result


def digests(folder: Path) -> dict[str, str]:
    return {
        str(file.relative_to(folder)): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(folder.rglob("*"))
        if file.is_file()
    }


def test_a_second_run_gets_its_own_folder_and_resume_continues_the_newest(
    tiny_models: dict, task_data: dict, train_home: Path
) -> None:
    runs = train_home / "runs" / "again"
    train(tiny_models, task_data)
    (first,) = runs.iterdir()
    before = digests(first)
    train(tiny_models, task_data, "--lr", "0.01")
    second = latest_run_folder(runs)
    assert sorted(runs.iterdir()) == sorted([first, second]) and second != first
    assert (second / "adapter" / "adapter_model.safetensors").is_file()
    assert digests(first) == before  # nothing of the first run was overwritten

    train(tiny_models, task_data, "--lr", "0.01", "--max-steps", "4", "--resume")
    assert sorted(runs.iterdir()) == sorted([first, second])  # resumed in place, no new folder
    assert (second / "checkpoints" / "step-000004").is_dir()
    assert digests(first) == before


def test_an_explicit_output_that_holds_a_run_is_refused_without_resume(
    tiny_models: dict, task_data: dict, train_home: Path, tmp_path: Path
) -> None:
    output = tmp_path / "mine"
    train(tiny_models, task_data, "--output", str(output))
    before = digests(output)
    refused = train(tiny_models, task_data, "--output", str(output), code=1)
    assert refused.stderr.splitlines() == [
        f"Error: --output {output} already holds a run; pass --resume to continue it, or choose another "
        "--output (without one, each run gets a new folder under runs/again)"
    ]
    assert digests(output) == before
