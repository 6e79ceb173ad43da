"""What ``adapters train`` prints when it finishes: the MLflow URL it names carries no credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path

from adapterlab.cli.output import to_json
from adapterlab.cli.train_command import render_result, summary
from adapterlab.training.pipeline import TrainResult
from adapterlab.training.tracking import RunTracker


def _result(tracking_uri: str) -> TrainResult:
    return TrainResult(
        name="tweets",
        task="SEQ_CLS",
        method="LORA",
        version=1,
        run_id="abc123",
        tracking_uri=tracking_uri,
        adapter_path=Path("/tmp/a"),
        metrics={"eval_accuracy": 0.5},
        best_step=2,
        steps=4,
        seconds=1.0,
        samples_per_second=2.0,
        train_rows=8,
        eval_rows=4,
        trainable_parameters=10,
        total_parameters=100,
        is_main_process=True,
    )


def test_the_summary_names_the_server_without_its_password():
    text = render_result(_result("https://alice:s3cr3t@mlflow.example:5000"))
    assert "s3cr3t" not in text and "alice" not in text
    assert "mlflow.example:5000" in text and "abc123" in text


def test_a_tracker_keeps_mlflow_from_printing_the_run_url(monkeypatch):
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    RunTracker("sqlite:///unused.db", "exp", None)
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"


def test_a_users_own_choice_to_print_it_stands(monkeypatch):
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "false")
    RunTracker("sqlite:///unused.db", "exp", None)
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "false"


def test_the_json_summary_names_task_and_method_and_hides_the_password():
    shown = summary(_result("https://alice:s3cr3t@mlflow.example:5000"))
    assert (shown["task"], shown["method"], shown["version"]) == ("SEQ_CLS", "LORA", 1)
    assert shown["tracking_uri"] == "https://***@mlflow.example:5000" and "is_main_process" not in shown
    assert json.loads(to_json(shown))["adapter_path"] == "/tmp/a"
