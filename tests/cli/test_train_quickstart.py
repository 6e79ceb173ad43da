"""The README's main job: `adapters train` with no arguments, on a fresh machine, with no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from models import minilm_dir


@pytest.mark.slow
def test_quickstart_trains_logs_registers_and_says_what_next(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ADAPTERLAB_", "MLFLOW_"))}
    env.update(
        ADAPTERLAB_HOME=str(home),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    started = time.monotonic()
    trained = subprocess.run(
        [sys.executable, "-m", "adapterlab.cli", "train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.monotonic() - started
    assert trained.returncode == 0, trained.stderr[-3000:]
    print(f"quickstart took {seconds:.0f} s on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})")
    # the time is reported, not asserted: a loaded machine would fail a correct run (speed is for benchmarks/)
    for hint in (
        "adapters list",
        "adapters show quickstart-complaints",
        f"mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'}",
    ):
        assert hint in trained.stdout
    # the progress bar (tqdm: steps, ETA, loss and throughput) and the final summary table
    assert "training:" in trained.stderr and "loss=" in trained.stderr and "samples_s=" in trained.stderr
    assert "<" in trained.stderr  # tqdm's elapsed<remaining (ETA)
    summary = trained.stdout.split("Training finished.", 1)[1]
    for row in ("adapter", "quickstart-complaints:1", "eval_accuracy", "trainable params", "samples/s"):
        assert row in summary

    listed = subprocess.run(
        [sys.executable, "-m", "adapterlab.cli", "list", "--json"], env=env, capture_output=True, text=True
    )
    (version,) = json.loads(listed.stdout)
    assert (version["name"], version["version"], version["base"]) == (
        "quickstart-complaints",
        1,
        "sentence-transformers/all-MiniLM-L6-v2",
    )
    assert version["metrics"]["eval_accuracy"] >= 0.85, version["metrics"]

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert {
        "train_loss",
        "learning_rate",
        "grad_norm",
        "samples_per_second",
        "eval_loss",
        "eval_accuracy",
        "eval_f1",
    } <= set(run.data.metrics)
    assert any(key.startswith("system/") for key in run.data.metrics)
    assert (
        run.data.metrics["eval_accuracy"] >= 0.85
        or max(m.value for m in client.get_metric_history(run.info.run_id, "eval_accuracy")) >= 0.85
    )
    assert run.data.params["method"] == "LORA" and run.data.params["peft.r"] == "8"
    assert run.data.tags["adapterlab.base_name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(run.data.tags["adapterlab.base_fingerprint"]) == 64
    contexts = sorted(i.tags[0].value for i in run.inputs.dataset_inputs)
    assert contexts == ["evaluation", "training"] and all(i.dataset.digest for i in run.inputs.dataset_inputs)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert {
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "adapter/labels.json",
    } <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "config")] == ["config/train_config.yaml"]
    shown = subprocess.run(
        [sys.executable, "-m", "adapterlab.cli", "show", "quickstart-complaints", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert json.loads(shown.stdout).get("mlflow_run_id") == run.info.run_id
    # the adapter names its base portably, in the registry and in the run's artifacts alike
    assert (
        json.loads(shown.stdout)["config"]["base_model_name_or_path"]
        == "sentence-transformers/all-MiniLM-L6-v2"
    )
    logged = Path(client.download_artifacts(run.info.run_id, "adapter", str(tmp_path / "logged")))
    for path in logged.rglob("*"):
        assert path.is_dir() or str(minilm_dir()).encode() not in path.read_bytes(), path
    assert not Path("mlruns").exists()
