"""Each task type trains a tiny model for a few steps, the loss falls, and the run is logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapterlab.training import TrainConfig, read_labels, train


def falling(history: list[float]) -> bool:
    head, tail = history[:3], history[-3:]
    return sum(tail) / len(tail) < sum(head) / len(head)


@pytest.mark.parametrize("task", ["seq-cls", "token-cls", "seq2seq", "causal-lm"])
def test_each_task_trains_and_the_loss_falls(
    task: str, tiny_models: dict, task_data: dict, train_home: Path, mlflow_runs
) -> None:
    config = TrainConfig(
        base=str(tiny_models[task]),
        task=task,
        data=str(task_data[task]),
        name=f"tiny-{task}",
        max_steps=24,
        batch_size=8,
        lr=5e-2,
        logging_steps=1,
        eval_split=0.25,
        register=False,
        peft={"r": 4, "lora_alpha": 8, "lora_dropout": 0.0},
    )
    result = train(config)
    assert result.steps == 24 and result.version is None
    (run,) = mlflow_runs()
    assert run.info.status == "FINISHED"
    from mlflow import MlflowClient

    history = [
        m.value
        for m in MlflowClient(f"sqlite:///{train_home / 'mlflow.db'}").get_metric_history(
            run.info.run_id, "train_loss"
        )
    ]
    assert len(history) == 24 and falling(history), history
    expected = (
        {"eval_loss", "eval_accuracy", "eval_f1"} if "cls" in task else {"eval_loss", "eval_exact_match"}
    )
    assert expected <= set(result.metrics)
    config_file = json.loads((result.adapter_path / "adapter_config.json").read_text())
    assert config_file["peft_type"] == "LORA" and config_file["r"] == 4
    if "cls" in task:
        assert read_labels(result.adapter_path)["num_labels"] == (2 if task == "seq-cls" else 3)


def test_accumulation_checkpointing_and_bf16_train(
    tiny_models: dict, task_data: dict, train_home: Path
) -> None:
    config = TrainConfig(
        base=str(tiny_models["seq-cls"]),
        data=str(task_data["seq-cls"]),
        name="options",
        max_steps=3,
        batch_size=4,
        grad_accum=2,
        gradient_checkpointing=True,
        mixed_precision="bf16",
        scheduler="cosine",
        register=False,
    )
    result = train(config)
    assert result.steps == 3 and result.samples_per_second > 0
    assert result.metrics["eval_loss"] == result.metrics["eval_loss"]  # not NaN
