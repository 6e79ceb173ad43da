"""Configs: HF PEFT's enums, fields, defaults and adapter_config.json format."""

from __future__ import annotations

import dataclasses
import json

import pytest

from adapterlab import LoraConfig, PeftConfig, PeftType, TaskType
from adapterlab.errors import InvalidConfig

peft = pytest.importorskip("peft")


def test_enums_have_hf_values() -> None:
    assert [t.value for t in TaskType] == [
        "SEQ_CLS",
        "SEQ_2_SEQ_LM",
        "CAUSAL_LM",
        "TOKEN_CLS",
        "QUESTION_ANS",
        "FEATURE_EXTRACTION",
    ]
    for task in TaskType:
        assert peft.TaskType(task.value) == task.value
    assert PeftType.LORA == "LORA" and peft.PeftType.LORA.value == PeftType.LORA.value


def test_lora_fields_and_defaults_are_hf_peft_s() -> None:
    ours = LoraConfig().to_dict()
    theirs = peft.LoraConfig().to_dict()
    for key, value in ours.items():
        assert key in theirs, key
        if key == "peft_version":  # each library records its own version there
            continue
        expected = theirs[key].value if hasattr(theirs[key], "value") else theirs[key]
        assert value == expected, key


def test_strings_are_accepted_for_enums() -> None:
    config = LoraConfig(task_type="seq_cls")
    assert config.task_type is TaskType.SEQ_CLS and config.peft_type is PeftType.LORA
    assert LoraConfig(task_type=TaskType.CAUSAL_LM).task_type is TaskType.CAUSAL_LM


def test_save_pretrained_writes_sorted_keys_with_indent_2(tmp_path) -> None:
    config = LoraConfig(
        task_type="SEQ_CLS", r=4, target_modules=["query", "value"], rank_pattern={"query": 2}
    )
    config.save_pretrained(tmp_path)
    text = (tmp_path / "adapter_config.json").read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert data["peft_type"] == "LORA" and data["task_type"] == "SEQ_CLS" and data["r"] == 4
    assert not list(tmp_path.glob("*.tmp"))


def test_round_trip_dispatches_on_peft_type(tmp_path) -> None:
    config = LoraConfig(
        task_type="CAUSAL_LM", r=16, lora_alpha=32, use_rslora=True, target_modules=r".*\.q_proj"
    )
    config.save_pretrained(tmp_path)
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is LoraConfig and loaded == config
    assert LoraConfig.from_pretrained(tmp_path, r=8).r == 8  # keyword overrides


def test_reads_a_config_hf_peft_wrote(tmp_path) -> None:
    peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query"], use_dora=True).save_pretrained(
        tmp_path
    )
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, LoraConfig) and loaded.use_dora and loaded.target_modules == ["query"]


def test_unknown_keys_from_newer_writers_are_dropped_with_a_warning() -> None:
    data = {**LoraConfig().to_dict(), "brand_new_option": 3}
    with pytest.warns(UserWarning, match="brand_new_option"):
        config = PeftConfig.from_dict(data)
    assert not hasattr(config, "brand_new_option")


def test_a_used_hf_feature_we_lack_is_refused_not_ignored() -> None:
    with pytest.raises(InvalidConfig, match="use_qalora"):
        PeftConfig.from_dict({**LoraConfig().to_dict(), "use_qalora": True})


def test_a_config_without_peft_type_is_refused() -> None:
    with pytest.raises(InvalidConfig, match="peft_type"):
        PeftConfig.from_dict({"r": 8})
    with pytest.raises(
        InvalidConfig, match="Invalid peft type: .IA3.. Must be one of the following peft types: LORA"
    ):
        PeftConfig.from_dict({"peft_type": "IA3"})


def test_configs_are_dataclasses_with_hf_field_names() -> None:
    names = {f.name for f in dataclasses.fields(LoraConfig)}
    assert {
        "peft_type",
        "task_type",
        "base_model_name_or_path",
        "revision",
        "inference_mode",
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "exclude_modules",
        "fan_in_fan_out",
        "bias",
        "modules_to_save",
        "use_rslora",
        "use_dora",
        "init_lora_weights",
        "layers_to_transform",
        "layers_pattern",
        "rank_pattern",
        "alpha_pattern",
    } <= names
