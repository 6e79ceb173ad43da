"""One vocabulary: tasks and methods in any spelling, by every command, shown one way; an empty
listing says why."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapterlab.cli.main import cli
from adapterlab.hf_format import PeftType, TaskType


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
        ("SEQ_CLS", "PROMPT_TUNING", ("seq-cls", "prompt-tuning")),
        ("Seq_2_Seq_LM", "lora", ("seq2seq", "lora")),
        ("causal_lm", "Prefix-Tuning", ("causal-lm", "prefix-tuning")),
        ("token-cls", "p_tuning", ("token-cls", "p-tuning")),
    ],
)
def test_train_takes_any_spelling_and_shows_its_own(
    task: str, method: str, shown: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAPTERLAB_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(
        cli, ["train", "--base", str(tmp_path), "--task", task, "--method", method, "--print-config"]
    )
    assert result.exit_code == 0, result.output
    assert f"task: {shown[0]}\nmethod: {shown[1]}\n" in result.stdout


def test_train_refuses_an_unknown_task_naming_the_choices(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ADAPTERLAB_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["train", "--task", "FEATURE_EXTRACTION", "--print-config"])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: unknown task 'FEATURE_EXTRACTION'; choose one of: seq-cls, token-cls, seq2seq, causal-lm"
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
