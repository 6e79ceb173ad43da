"""Bad input: one line, exit 1, before training starts, and nothing logged or registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapterlab.cli.main import cli


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-input")
    rows = [{"text": f"row {i}", "label": "yes" if i % 2 else "no"} for i in range(20)]
    files = {"good": root / "good.jsonl", "eval-new-label": root / "eval.jsonl", "empty": root / "empty.csv"}
    files["good"].write_text("".join(json.dumps(row) + "\n" for row in rows))
    files["eval-new-label"].write_text(json.dumps({"text": "x", "label": "maybe"}) + "\n")
    files["empty"].write_text("text,label\n")
    return files


CASES = {
    "missing column": (["--text-column", "body"], "column 'body' (--text-column) not found", {}),
    "unknown eval label": (["--eval-data", "{eval-new-label}"], "label(s) maybe that never occur", {}),
    "empty dataset": (["--data", "{empty}"], "is empty", {}),
    "base path missing": (
        ["--base", "/no/such/model"],
        "base model folder /no/such/model does not exist",
        {},
    ),
    "method/task pair": (
        ["--method", "prompt-tuning", "--task", "token-cls"],
        "method PROMPT_TUNING cannot train task TOKEN_CLS",
        {},
    ),
    "task the base has no head for": (["--task", "seq2seq"], "has no head for task SEQ_2_SEQ_LM", {}),
    "unknown peft field": (["--peft.rank=4"], "LoraConfig has no field(s) rank", {}),
    "checkpointing a prompt method": (
        ["--method", "p-tuning", "--gradient-checkpointing"],
        "with method LORA only, not P_TUNING",
        {},
    ),
    "metric the task lacks": (["--metric-for-best", "eval_exact_match"], "is not computed for SEQ_CLS", {}),
    "mlflow unreachable": (
        [],
        "cannot reach the MLflow tracking store at http://127.0.0.1:9",
        {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    ),
    "registry unreachable": (
        [],
        "cannot reach the registry database",
        {"ADAPTERLAB_REGISTRY_URL": "postgresql+psycopg://postgres:pw@127.0.0.1:9/none"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_before_training(
    case: str,
    labelled: dict,
    tiny_models: dict,
    train_home: Path,
    mlflow_runs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra, message, env = CASES[case]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    base = [] if "--base" in extra else ["--base", str(tiny_models["seq-cls"])]
    args = ["train", *base, "--data", str(labelled["good"]), "--name", "bad", *extra]
    args = [arg.format(**labelled) for arg in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert message in line, line
    assert "Traceback" not in result.output
    assert not (train_home / "runs" / "bad").exists()  # nothing trained, no checkpoint
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_runs() == []
    assert (
        not (train_home / "registry.db").exists()
        or "bad" not in CliRunner().invoke(cli, ["list", "--json"]).output
    )
    assert "password" not in result.output and ":pw@" not in result.output


def test_unknown_method_or_task(tmp_path: Path, train_home: Path, mlflow_runs) -> None:
    flag = CliRunner().invoke(cli, ["train", "--method", "ia3"])
    assert (
        flag.exit_code == 1
        and "Error: unknown method 'ia3'; choose one of: LORA, PROMPT_TUNING, P_TUNING, PREFIX_TUNING"
        in flag.output
    )
    config = tmp_path / "run.yaml"
    config.write_text("task: summarise\n")
    from_yaml = CliRunner().invoke(cli, ["train", str(config)])
    assert (
        from_yaml.exit_code == 1
        and "Error: unknown task 'summarise'; choose one of: SEQ_CLS, TOKEN_CLS" in from_yaml.output
    )
    assert mlflow_runs() == []
