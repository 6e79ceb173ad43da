"""Every PEFT method trains through ``adapters train``; LoRA's result lands in the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapterlab.cli.main import cli

# training's old names as input (still accepted) -> PEFT's, the one name everything shows
PEFT_TYPES = {
    "lora": "LORA",
    "prompt-tuning": "PROMPT_TUNING",
    "p-tuning": "P_TUNING",
    "prefix-tuning": "PREFIX_TUNING",
}


@pytest.mark.parametrize("method", ["lora", "prompt-tuning", "p-tuning", "prefix-tuning"])
def test_each_method_trains_through_the_cli(
    method: str, tiny_models: dict, task_data: dict, train_home: Path, mlflow_runs
) -> None:
    args = [
        "train",
        "--base",
        str(tiny_models["seq-cls"]),
        "--data",
        str(task_data["seq-cls"]),
        "--method",
        method,
        "--name",
        f"tiny-{method}",
        "--max-steps",
        "4",
        "--batch-size",
        "8",
        "--logging-steps",
        "1",
    ]
    if method != "lora":
        args += ["--peft.num_virtual_tokens=4", "--no-register"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (
        "Training finished." in result.output and "mlflow ui --backend-store-uri sqlite:///" in result.output
    )
    (run_folder,) = (train_home / "runs" / f"tiny-{method}").iterdir()
    adapter = run_folder / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == PEFT_TYPES[method]
    (run,) = mlflow_runs()
    assert run.info.status == "FINISHED" and run.data.tags["adapterlab.method"] == PEFT_TYPES[method]
    if method == "lora":
        listed = CliRunner().invoke(cli, ["list", "--json"])
        assert listed.exit_code == 0, listed.output
        assert "tiny-lora" in listed.output and "adapters show tiny-lora" in result.output
