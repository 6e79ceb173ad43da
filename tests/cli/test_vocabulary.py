"""One vocabulary: tasks and methods in any spelling, by every command, shown one way; an empty
listing says why."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapterlab.cli.main import cli
from adapterlab.cli.train_command import render_result
from adapterlab.hf_format import PeftType, TaskType
from adapterlab.training.pipeline import TrainResult


def spellings(value: str) -> list[str]:
    return [value, value.lower(), value.replace("_", "-"), value.lower().replace("_", "-"), value.title()]


@pytest.mark.parametrize("member", [*TaskType, *PeftType], ids=str)
def test_every_spelling_of_every_task_and_method_is_one_member(member) -> None:
    for text in spellings(member.value):
        assert type(member)(text) is member, text


def test_training_names_are_spellings_too() -> None:
    assert [TaskType(name) for name in ("seq-cls", "token-cls", "seq2seq", "causal-lm")] == [
        TaskType.SEQ_CLS,
        TaskType.TOKEN_CLS,
        TaskType.SEQ_2_SEQ_LM,
        TaskType.CAUSAL_LM,
    ]
    assert PeftType("prompt-tuning") is PeftType.PROMPT_TUNING and PeftType("p-tuning") is PeftType.P_TUNING


def test_a_library_config_takes_any_spelling() -> None:
    from adapterlab import LoraConfig

    config = LoraConfig(task_type="causal-lm", target_modules=["q"])
    assert config.task_type is TaskType.CAUSAL_LM and config.to_dict()["task_type"] == "CAUSAL_LM"


@pytest.mark.parametrize(
    ("task", "method", "shown"),
    [
        ("seq-cls", "PROMPT_TUNING", ("SEQ_CLS", "PROMPT_TUNING")),
        ("Seq_2_Seq_LM", "lora", ("SEQ_2_SEQ_LM", "LORA")),
        ("seq2seq", "lora", ("SEQ_2_SEQ_LM", "LORA")),  # training's old name for it
        ("causal_lm", "Prefix-Tuning", ("CAUSAL_LM", "PREFIX_TUNING")),
        ("token-cls", "p-tuning", ("TOKEN_CLS", "P_TUNING")),
    ],
)
def test_train_takes_any_spelling_and_shows_pefts(
    task: str, method: str, shown: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAPTERLAB_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(
        cli, ["train", "--base", str(tmp_path), "--task", task, "--method", method, "--print-config"]
    )
    assert result.exit_code == 0, result.output
    assert f"task: {shown[0]}\nmethod: {shown[1]}\n" in result.stdout


def test_an_old_yaml_config_keeps_working_and_resolves_to_peft_names(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ADAPTERLAB_HOME", str(tmp_path / "home"))
    config = tmp_path / "old.yaml"
    config.write_text(f"base: {tmp_path}\ntask: causal-lm\nmethod: prompt-tuning\n")
    result = CliRunner().invoke(cli, ["train", str(config), "--print-config"])
    assert result.exit_code == 0, result.output
    assert "task: CAUSAL_LM\nmethod: PROMPT_TUNING\n" in result.stdout


def test_train_refuses_an_unknown_task_naming_the_choices(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ADAPTERLAB_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["train", "--task", "FEATURE_EXTRACTION", "--print-config"])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: unknown task 'FEATURE_EXTRACTION'; choose one of: SEQ_CLS, TOKEN_CLS, SEQ_2_SEQ_LM, CAUSAL_LM"
    )


def cli_json(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def registered(registry_env, tiny_base, make_lora, monkeypatch) -> None:
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    args = ("--base", str(tiny_base), "--base-name", "org/tiny-bert")
    cli_json("register", str(make_lora(seed=1)), "--name", "a", "--task", "feature-extraction", *args)
    cli_json("register", str(make_lora(seed=2)), "--name", "b", "--task", "Feature_Extraction", *args)


@pytest.mark.parametrize(
    "filters",
    [
        ("--task", "FEATURE_EXTRACTION"),
        ("--task", "feature-extraction"),
        ("--method", "lora"),
        ("--method", "LoRA"),
        ("--task", "feature_extraction", "--method", "Lora"),
    ],
)
def test_list_filters_take_any_spelling_and_show_one(registered, filters: tuple[str, ...]) -> None:
    rows = json.loads(cli_json("list", *filters).stdout)
    assert [(row["name"], row["task_type"], row["peft_type"]) for row in rows] == [
        ("a", "FEATURE_EXTRACTION", "LORA"),
        ("b", "FEATURE_EXTRACTION", "LORA"),
    ]


def test_an_unknown_task_in_list_names_the_known_ones(registered) -> None:
    result = cli_json("list", "--task", "classify", code=1)
    assert result.stderr.startswith("Error: unknown task type 'classify'; use one of SEQ_CLS, SEQ_2_SEQ_LM")


def test_a_filter_that_matches_nothing_says_what_the_registry_holds(registered, caplog) -> None:
    """The note goes to the registry's logger (stderr in a real shell; pytest captures it)."""
    with caplog.at_level(logging.WARNING, logger="adapterlab.registry"):
        result = cli_json("list", "--task", "causal-lm")
    assert json.loads(result.stdout) == []
    assert (
        "Note: no version matches every filter; this registry holds tasks: FEATURE_EXTRACTION; methods: LORA"
        in caplog.text
    )


def test_a_misspelt_base_in_list_gets_a_suggestion(registered) -> None:
    result = cli_json("list", "--base", "org/tiny-bret", code=1)
    assert result.stderr.startswith(
        "Error: no base model 'org/tiny-bret'; did you mean org/tiny-bert? (registry: "
    )


def other_spellings(text: str) -> list[str]:
    """Every spelling of a task or method in ``text`` that is not PEFT's own (``seq-cls``, ``LoRA``,
    ``seq2seq``): PEFT's name is the one way they are shown."""
    found = []
    for member in [*TaskType, *PeftType]:
        words = [re.escape(word) for word in member.value.split("_")]
        pattern = r"[-_ ]?".join(words) + ("|seq2seq" if member is TaskType.SEQ_2_SEQ_LM else "")
        for match in re.finditer(rf"(?<![\w.])(?:{pattern})(?!\w)", text, re.IGNORECASE):
            if match.group() != member.value:
                found.append(match.group())
    return found


def test_other_spellings_are_found() -> None:
    """The checker below would notice the names training used to show."""
    text = "task: seq-cls, Seq_2_Seq_LM, seq2seq, token_cls; method: lora, LoRA, prompt-tuning, P-Tuning"
    assert other_spellings(text) == [
        "seq-cls",
        "Seq_2_Seq_LM",
        "seq2seq",
        "token_cls",
        "lora",
        "LoRA",
        "prompt-tuning",
        "P-Tuning",
    ]
    assert other_spellings("SEQ_CLS LORA --peft.lora_alpha=16 PREFIX_TUNING lora_dropout") == []


@pytest.fixture
def trained(tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A real tiny training run through ``adapters train --json``, with an old-spelling method and task;
    its summary, and its MLflow run."""
    from mlflow import MlflowClient
    from models import save_tiny_model

    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(mlflow_template, home / "mlflow.db")
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    for name in ("ADAPTERLAB_REGISTRY_URL", "MLFLOW_TRACKING_URI", "ADAPTERLAB_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("MLFLOW_DISABLE_TELEMETRY", "true"), ("ADAPTERLAB_MLFLOW_MIRROR", "0")):
        monkeypatch.setenv(name, value)
    base = save_tiny_model(
        tmp_path / "tiny-bert", "FEATURE_EXTRACTION", head=False, max_position_embeddings=64
    )
    data = tmp_path / "rows.jsonl"
    rows = [{"text": f"the box is {'heavy' if i % 2 else 'light'}", "label": i % 2} for i in range(12)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = ["train", "--base", str(base), "--data", str(data), "--task", "seq-cls", "--method", "lora"]
    args += ["--name", "vocab", "--max-steps", "2", "--batch-size", "4", "--peft.r=2", "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {"summary": json.loads(result.stdout), "run": run}


def test_every_place_shows_a_task_and_method_one_way(trained: dict) -> None:
    summary, run = trained["summary"], trained["run"]
    adapter_config = json.loads((Path(summary["adapter_path"]) / "adapter_config.json").read_text())
    shown_version = json.loads(cli_json("show", "vocab").stdout)
    (listed,) = json.loads(cli_json("list").stdout)
    params, tags = run.data.params, run.data.tags
    tasks = {
        "adapter_config.json": adapter_config["task_type"],
        "train --json": summary["task"],
        "show --json": shown_version["task_type"],
        "list --json": listed["task_type"],
        "MLflow param task": params["task"],
        "MLflow param peft.task_type": params["peft.task_type"],
        "MLflow tag adapterlab.task": tags["adapterlab.task"],
    }
    methods = {
        "adapter_config.json": adapter_config["peft_type"],
        "train --json": summary["method"],
        "show --json": shown_version["peft_type"],
        "list --json": listed["peft_type"],
        "show --json tag method": shown_version["tags"]["method"],
        "MLflow param method": params["method"],
        "MLflow param peft.peft_type": params["peft.peft_type"],
        "MLflow tag adapterlab.method": tags["adapterlab.method"],
    }
    assert set(tasks.values()) == {"SEQ_CLS"}, tasks
    assert set(methods.values()) == {"LORA"}, methods
    # the run name is a slug (lower case, like the adapter name in it), made from PEFT's name
    assert re.fullmatch(r"vocab-lora-r2-\d{4}-\d{6}", run.info.run_name), run.info.run_name
    texts = {
        "train --help": CliRunner().invoke(cli, ["train", "--help"]).stdout,
        "train --print-config": CliRunner()
        .invoke(cli, ["train", "--task", "seq2seq", "--method", "prompt-tuning", "--print-config"])
        .stdout,
        "train error": CliRunner()
        .invoke(cli, ["train", "--task", "token-cls", "--method", "p-tuning"])
        .stderr,
        "train summary": render_result(
            TrainResult(**{**summary, "adapter_path": Path(summary["adapter_path"]), "is_main_process": True})
        ),
        "MLflow params": json.dumps(params),
        "MLflow tags": json.dumps({key: value for key, value in tags.items() if key != "mlflow.runName"}),
        "show": CliRunner().invoke(cli, ["show", "vocab"]).stdout,
        "list": CliRunner().invoke(cli, ["list"]).stdout,
    }
    assert {name: other_spellings(text) for name, text in texts.items()} == {name: [] for name in texts}
    assert "SEQ_CLS / LORA" in texts["train summary"] and "LORA" in texts["show"] + texts["list"]
    assert "task: SEQ_2_SEQ_LM\nmethod: PROMPT_TUNING\n" in texts["train --print-config"]
    assert "method P_TUNING cannot train task TOKEN_CLS" in texts["train error"]
