"""HF PEFT's LoraConfig fields that adapterlab accepts as plain data or refuses by name.

HF's own tests (and users' scripts) pass every LoraConfig field as a keyword argument; a field we
lack must never surface as a bare ``TypeError`` from the dataclass ``__init__``.
"""

from __future__ import annotations

import dataclasses
import json

import peft
import pytest

import adapterlab
from adapterlab import LoraConfig, PeftConfig
from adapterlab.errors import (
    AdapterNotFound,
    CheckpointError,
    ConfigKeysMissing,
    InvalidConfig,
    UnsupportedFeature,
)


def test_every_hf_lora_config_field_is_accepted_at_its_hf_default() -> None:
    hf_defaults = peft.LoraConfig()
    names = {f.name for f in dataclasses.fields(peft.LoraConfig)} - {"peft_version", "peft_type"}
    ours = LoraConfig(**{name: getattr(hf_defaults, name) for name in names})
    assert {f.name for f in dataclasses.fields(LoraConfig)} >= names
    assert ours.megatron_core == "megatron.core" and ours.qalora_group_size == 16


def test_saved_config_has_hf_s_keys_without_the_runtime_options(tmp_path) -> None:
    LoraConfig(target_modules=["lin0"]).save_pretrained(tmp_path)
    saved = set(json.loads((tmp_path / "adapter_config.json").read_text()))
    assert saved == set(peft.LoraConfig(target_modules=["lin0"]).to_dict())
    assert "runtime_config" not in saved
    assert isinstance(PeftConfig.from_pretrained(tmp_path), LoraConfig)


@pytest.mark.parametrize(
    "field, value",
    [
        ("arrow_config", {"top_k": 2}),
        ("monteclora_config", {"num_samples": 2}),
        ("corda_config", {"corda_method": "kpm"}),
        ("layer_replication", [[0, 2]]),
        ("use_qalora", True),
        ("alora_invocation_tokens", [1, 2]),
        ("loftq_config", {"loftq_bits": 4}),
    ],
)
def test_a_field_that_switches_on_an_hf_only_feature_is_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(UnsupportedFeature, match=field):
        LoraConfig(**{field: value})


def test_plain_data_fields_keep_any_value() -> None:
    config = LoraConfig(megatron_core="my.megatron", qalora_group_size=32)
    assert config.to_dict()["megatron_core"] == "my.megatron"
    assert config.to_dict()["qalora_group_size"] == 32


def test_ephemeral_gpu_offload_is_refused_and_the_default_runtime_config_accepted() -> None:
    LoraConfig(runtime_config=peft.tuners.lora.config.LoraRuntimeConfig())
    with pytest.raises(UnsupportedFeature, match="ephemeral_gpu_offload"):
        LoraConfig(runtime_config=peft.tuners.lora.config.LoraRuntimeConfig(ephemeral_gpu_offload=True))


def test_a_runtime_config_saved_by_accident_is_ignored_on_read(tmp_path) -> None:
    config = LoraConfig(target_modules=["lin0"])
    config.save_pretrained(tmp_path)
    path = tmp_path / "adapter_config.json"
    path.write_text(
        json.dumps({**json.loads(path.read_text()), "runtime_config": {"ephemeral_gpu_offload": True}})
    )
    assert LoraConfig.from_json_file(path) == config.to_dict()
    assert PeftConfig.from_pretrained(tmp_path).to_dict() == config.to_dict()


def test_a_json_file_without_peft_type_is_not_an_adapter_config(tmp_path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"foo": "bar"}))
    with pytest.raises(ConfigKeysMissing, match=r"missing required keys: \{'peft_type'\}") as excinfo:
        LoraConfig.from_pretrained(tmp_path)
    assert isinstance(excinfo.value, TypeError) and isinstance(excinfo.value, CheckpointError)


def test_an_unknown_adapter_name_is_named_with_control_characters_escaped() -> None:
    from torch import nn

    from adapterlab import get_peft_model

    model = get_peft_model(nn.Sequential(nn.Linear(2, 2)), LoraConfig(target_modules=["0"]))
    with pytest.raises(AdapterNotFound, match="Adapter unknown-adapter does not exist; loaded: default"):
        model.delete_adapter("unknown-adapter")
    with pytest.raises(AdapterNotFound) as excinfo:
        model.set_adapter("evil\x1b[2J")
    assert "\x1b" not in str(excinfo.value) and "evil\\x1b[2J" in str(excinfo.value)


@pytest.mark.parametrize(
    "options",
    [
        {"use_dora": True},
        {"init_lora_weights": "gaussian"},
        {"init_lora_weights": "eva"},
        {"init_lora_weights": "loftq", "loftq_config": {"loftq_bits": 4}},
    ],
)
def test_lora_bias_conflicts_are_named_before_anything_else(options: dict) -> None:
    with pytest.raises(InvalidConfig, match="The argument lora_bias=True is"):
        LoraConfig(lora_bias=True, **options)


@pytest.mark.parametrize(
    "config_class, kwargs, expected",
    [
        ("LoraConfig", {}, "LORA"),
        ("PromptTuningConfig", {"num_virtual_tokens": 4}, "PROMPT_TUNING"),
        ("PromptEncoderConfig", {"num_virtual_tokens": 4}, "P_TUNING"),
        ("PrefixTuningConfig", {"num_virtual_tokens": 4}, "PREFIX_TUNING"),
    ],
)
def test_the_config_class_decides_the_peft_type(
    config_class: str, kwargs: dict, expected: str, tmp_path
) -> None:
    config = getattr(adapterlab, config_class)(peft_type="test", **kwargs)
    assert config.peft_type.value == expected
    config.save_pretrained(tmp_path)
    assert PeftConfig.from_pretrained(tmp_path).to_dict() == config.to_dict()
