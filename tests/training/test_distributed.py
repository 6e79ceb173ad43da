"""Two processes (gloo on CPU): one MLflow run, one registry version, one summary."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LAUNCHERS = {
    "accelerate": lambda port: [
        str(BIN / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        "-m",
        "adapterlab.cli",
    ],
    "torchrun": lambda port: [
        str(BIN / "torchrun"),
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        "-m",
        "adapterlab.cli",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_two_processes_train_the_quickstart_once(launcher: str, train_home: Path, mlflow_runs) -> None:
    # the quickstart's config, capped at a few steps: the point is the process group, not accuracy
    command = [*LAUNCHERS[launcher](free_port()), "train", "--max-steps", "4", "--eval-steps", "4"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Training finished.") == 1  # only the main process reports
    (run,) = mlflow_runs()
    assert run.info.status == "FINISHED" and run.data.params["num_processes"] == "2"
    assert run.data.params["effective_batch_size"] == "32"
    listed = subprocess.run(
        [sys.executable, "-m", "adapterlab.cli", "list", "--json"], capture_output=True, text=True
    )
    (version,) = json.loads(listed.stdout)
    assert (version["name"], version["version"]) == ("quickstart-complaints", 1)
    assert version["metrics"]["eval_accuracy"] == run.data.metrics["eval_accuracy"]
