"""A run folder is not trusted: ``--resume`` never unpickles, so a planted checkpoint file runs no code.

One short real run leaves a checkpoint; each test plants something hostile in a copy of it and
resumes through the CLI: the payload must not run, the error is one line with exit 1, and the model
is never loaded (no MLflow run is opened).
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapterlab.cli.main import cli
from adapterlab.training import TrainConfig, train
from adapterlab.training.checkpointing import read_checkpoint


class WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: a real payload, harmless but visible."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def finished_run(tiny_models: dict, task_data: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a checkpoint written by a real (short) training run."""
    root = tmp_path_factory.mktemp("checkpointed")
    home = root / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAPTERLAB_HOME", str(home))
        for name in ("ADAPTERLAB_REGISTRY_URL", "MLFLOW_TRACKING_URI", "ADAPTERLAB_ARTIFACT_ROOT"):
            patch.delenv(name, raising=False)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        train(
            TrainConfig(
                base=str(tiny_models["seq-cls"]),
                data=str(task_data["seq-cls"]),
                name="planted",
                max_steps=2,
                batch_size=4,
                save_steps=2,
                logging_steps=1,
                output=str(root / "run"),
                register=False,
            )
        )
    assert (root / "run" / "checkpoints" / "step-000002" / "rng-0.json").is_file()
    return root / "run"


def plant_and_resume(
    finished_run: Path, tmp_path: Path, tiny_models: dict, task_data: dict, plant
) -> tuple[object, Path]:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "run.json").unlink()  # its MLflow run lives in the fixture's own home
    plant(run / "checkpoints" / "step-000002")
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--base",
            str(tiny_models["seq-cls"]),
            "--data",
            str(task_data["seq-cls"]),
            "--name",
            "planted",
            "--max-steps",
            "4",
            "--batch-size",
            "4",
            "--output",
            str(run),
            "--no-register",
            "--resume",
        ],
    )
    return result, run


def pickle_payload(file: Path, marker: Path) -> None:
    with file.open("wb") as handle:
        pickle.dump({"state": {}, "param_groups": [WritesMarker(marker)]}, handle)


@pytest.mark.parametrize("planted", ["optimizer.pt", "scheduler.pt"])
def test_a_planted_pickle_does_not_run_and_fails_in_one_line(
    planted: str,
    finished_run: Path,
    tmp_path: Path,
    tiny_models: dict,
    task_data: dict,
    train_home: Path,
    mlflow_runs,
) -> None:
    marker = tmp_path / "payload-ran"
    pickle.loads(pickle.dumps(WritesMarker(marker)))  # the payload is real: plain unpickling runs it
    assert marker.exists()
    marker.unlink()

    result, _ = plant_and_resume(
        finished_run, tmp_path, tiny_models, task_data, lambda step: pickle_payload(step / planted, marker)
    )
    assert not marker.exists()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: refusing ") and planted in line and "without --resume" in line
    assert mlflow_runs() == []  # failed before the model was loaded and the run opened


@pytest.mark.parametrize(
    "damage",
    [
        "rng json not an object",
        "rng state wrong length",
        "deeply nested state.json",
        "state with a string step",
        "old pickled rng",
        "truncated safetensors",
        "run.json without a run id",
    ],
)
def test_a_damaged_checkpoint_is_one_line(
    damage: str,
    finished_run: Path,
    tmp_path: Path,
    tiny_models: dict,
    task_data: dict,
    train_home: Path,
    mlflow_runs,
) -> None:
    def plant(step: Path) -> None:
        rng = json.loads((step / "rng-0.json").read_text())
        if damage == "rng json not an object":
            (step / "rng-0.json").write_text("[1, 2]")
        elif damage == "rng state wrong length":
            rng["python"][1] = rng["python"][1][:10]
            (step / "rng-0.json").write_text(json.dumps(rng))
        elif damage == "deeply nested state.json":
            (step / "state.json").write_text("[" * 100_000 + "]" * 100_000)
        elif damage == "state with a string step":
            (step / "state.json").write_text(json.dumps({"global_step": "2"}))
        elif damage == "old pickled rng":
            (step / "rng-0.json").unlink()
            (step / "rng-0.pt").write_bytes(b"not read")
        elif damage == "run.json without a run id":
            (step.parent.parent / "run.json").write_text(json.dumps({"mlflow_run_id": ["x"]}))
        else:
            data = (step / "trainable.safetensors").read_bytes()
            (step / "trainable.safetensors").write_bytes(data[:40])

    result, _ = plant_and_resume(finished_run, tmp_path, tiny_models, task_data, plant)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and ("without --resume" in line or "delete it" in line), line
    assert mlflow_runs() == []


def test_random_state_round_trips_through_json(finished_run: Path) -> None:
    import random

    import numpy
    import torch

    from adapterlab.training.checkpointing import restore_rng

    contents = read_checkpoint(finished_run / "checkpoints" / "step-000002")
    restore_rng(contents.rng)
    first = (random.random(), numpy.random.rand(), torch.rand(2))
    restore_rng(read_checkpoint(finished_run / "checkpoints" / "step-000002").rng)
    second = (random.random(), numpy.random.rand(), torch.rand(2))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])
    assert contents.state.global_step == 2 and contents.optimizer["state"]


def test_a_legit_checkpoint_resumes(
    finished_run: Path, tmp_path: Path, tiny_models: dict, task_data: dict, train_home: Path
) -> None:
    result, run = plant_and_resume(finished_run, tmp_path, tiny_models, task_data, lambda step: None)
    assert result.exit_code == 0, result.output
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
