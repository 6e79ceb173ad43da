"""Checkpoints: --resume after SIGKILL gives the very same adapter; SIGTERM ends the run KILLED."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapterlab.training import TrainConfig, train

STEPS = 100


def options(tiny_models: dict, task_data: dict, output: Path) -> list[str]:
    # dropout on, several epochs, evals between checkpoints: everything resume has to get right
    return [
        "--base",
        str(tiny_models["seq-cls"]),
        "--data",
        str(task_data["seq-cls"]),
        "--name",
        "resumed",
        "--max-steps",
        str(STEPS),
        "--batch-size",
        "4",
        "--save-steps",
        "5",
        "--eval-steps",
        "15",
        "--logging-steps",
        "5",
        "--lr",
        "0.01",
        "--peft.lora_dropout=0.2",
        "--output",
        str(output),
    ]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "adapterlab.cli", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path_glob: tuple[Path, str], process: subprocess.Popen, timeout: float = 300) -> None:
    folder, pattern = path_glob
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(folder.glob(pattern)):
            return
        if process.poll() is not None:
            raise AssertionError(
                f"training ended before {pattern} appeared:\n{process.stderr.read()[-3000:]}"
            )
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"{pattern} never appeared")


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.slow
def test_resume_after_sigkill_reproduces_the_uninterrupted_adapter(
    tiny_models: dict, task_data: dict, train_home: Path, tmp_path: Path, mlflow_runs
) -> None:
    import torch
    from safetensors.torch import load_file

    reference = train(
        TrainConfig(
            base=str(tiny_models["seq-cls"]),
            data=str(task_data["seq-cls"]),
            name="resumed",
            max_steps=STEPS,
            batch_size=4,
            save_steps=5,
            eval_steps=15,
            logging_steps=5,
            lr=0.01,
            peft={"lora_dropout": 0.2},
            output=str(tmp_path / "reference"),
            register=False,
        )
    )
    output = tmp_path / "interrupted"
    process = start([*options(tiny_models, task_data, output), "--no-register"])
    wait_for((output / "checkpoints", "step-000005"), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output / "adapter").exists()  # it really died mid-run

    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapterlab.cli",
            "train",
            *options(tiny_models, task_data, output),
            "--no-register",
            "--resume",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = f"checkpoints/step-{STEPS:06d}/trainable.safetensors"
    for expected, got in [
        (adapter_tensors(reference.adapter_path), adapter_tensors(output / "adapter")),  # the best adapter
        (load_file(str(tmp_path / "reference" / final)), load_file(str(output / final))),  # the last step
    ]:
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[key], got[key]) for key in expected)
    runs = {run.info.status for run in mlflow_runs()}
    assert runs == {"FINISHED"} and len(mlflow_runs()) == 2  # the resumed run continued the killed one


@pytest.mark.slow
def test_sigterm_checkpoints_ends_killed_registers_nothing_and_says_how_to_resume(
    tiny_models: dict, task_data: dict, train_home: Path, tmp_path: Path, mlflow_runs
) -> None:
    output = tmp_path / "run"
    process = start(options(tiny_models, task_data, output))
    wait_for((output / "checkpoints", "step-000005"), process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert "checkpoint saved" in line and "--resume" in line and "nothing was registered" in line
    (run,) = mlflow_runs()
    assert run.info.status == "KILLED"
    assert not (output / "adapter").exists()
    from adapterlab.registry import list_versions

    assert list_versions() == []

    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapterlab.cli",
            "train",
            *options(tiny_models, task_data, output),
            "--resume",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run,) = mlflow_runs()
    assert run.info.status == "FINISHED"
    assert [(v.name, v.version) for v in list_versions()] == [("resumed", 1)]
