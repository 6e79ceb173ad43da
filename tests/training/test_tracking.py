"""What goes to MLflow as params: flat, typed readably, no secrets."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

from adapterlab.training.tracking import flatten_params, redact


class Kind(str, Enum):
    LORA = "LORA"


def test_passwords_in_uris_are_redacted() -> None:
    assert redact("postgresql://alice:s3cret@db:5432/reg") == "postgresql://***@db:5432/reg"
    assert redact("postgresql://alice:p@ss@db/reg") == "postgresql://***@db/reg"  # up to the last '@'
    assert redact("https://mlflow.example.com/path") == "https://mlflow.example.com/path"


def test_params_are_flat_readable_and_secret_free() -> None:
    params = flatten_params(
        {
            "registry_url": "postgresql+psycopg://bob:hunter2@host/db",
            "hub_token": "hf_abc",
            "peft": {"r": 8, "target_modules": {"value", "query"}, "peft_type": Kind.LORA},
            "description": "x" * 7000,
        }
    )
    assert params["registry_url"] == "postgresql+psycopg://***@host/db"
    assert params["hub_token"] == "***"
    assert params["peft.r"] == "8" and params["peft.peft_type"] == "LORA"
    assert params["peft.target_modules"] == '["query", "value"]'
    assert len(params["description"]) == 6000
    assert "hunter2" not in str(params) and "hf_abc" not in str(params)


def test_run_names_tell_runs_apart_by_adapter_method_rank_and_time() -> None:
    from datetime import datetime, timezone

    from adapterlab.training.tracking import run_name

    first = datetime(2026, 11, 30, 18, 42, 33, tzinfo=timezone.utc)
    later = datetime(2026, 11, 30, 18, 42, 34, tzinfo=timezone.utc)
    assert run_name("complaints", "LORA", 8, first) == "complaints-lora-r8-1130-184233"
    assert run_name("complaints", "LORA", 8, later) != run_name("complaints", "LORA", 8, first)
    # PEFT's name as a slug, like the adapter name beside it
    assert run_name("complaints", "PREFIX_TUNING", None, first) == "complaints-prefix-tuning-1130-184233"


def test_the_run_logs_the_best_evaluation_the_registry_records(
    tiny_models: dict, task_data: dict, train_home: Path, mlflow_runs
) -> None:
    """``best_<metric>`` and ``best_step`` on the run equal the registered version's metrics."""
    from mlflow import MlflowClient

    from adapterlab.registry import Registry
    from adapterlab.training import TrainConfig, train

    config = TrainConfig(
        base=str(tiny_models["seq-cls"]),
        data=str(task_data["seq-cls"]),
        name="best-agrees",
        max_steps=6,
        eval_steps=2,
        batch_size=8,
        lr=5e-2,
        eval_split=0.25,
        peft={"r": 4, "lora_alpha": 8},
    )
    result = train(config)
    (run,) = mlflow_runs()
    assert re.fullmatch(r"best-agrees-lora-r4-\d{4}-\d{6}", run.info.run_name), run.info.run_name
    with Registry.open() as registry:
        version = registry.show("best-agrees")
    assert version.mlflow_run_id == run.info.run_id
    logged = {key: value for key, value in run.data.metrics.items() if key.startswith("best_")}
    assert logged.pop("best_step") == result.best_step
    expected = {f"best_{key}": value for key, value in version.metrics.items()}
    assert logged == expected, (logged, version.metrics)
    history = MlflowClient(f"sqlite:///{train_home / 'mlflow.db'}").get_metric_history(
        run.info.run_id, "best_eval_accuracy"
    )
    assert [point.step for point in history] == [result.best_step]
