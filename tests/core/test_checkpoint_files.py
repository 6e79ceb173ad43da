"""Checkpoint files: HF PEFT's layout, atomic writes, state-dict helpers."""

from __future__ import annotations

import json

import pytest
import torch
from core_bases import make_base, make_inputs, output_of, randomize_adapters
from safetensors.torch import load_file

from adapterlab import (
    LoraConfig,
    PeftModel,
    get_peft_model,
    get_peft_model_state_dict,
    set_peft_model_state_dict,
)
from adapterlab.errors import ShapeMismatch

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _model() -> PeftModel:
    model = get_peft_model(make_base("bert"), LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8))
    randomize_adapters(model)
    return model


def test_saved_files_are_hf_peft_s_format(tmp_path) -> None:
    model = _model()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["inference_mode"] is True and config["peft_type"] == "LORA"
    assert config["modules_to_save"] == ["classifier", "score"] and sorted(config["target_modules"]) == [
        "query",
        "value",
    ]
    assert model.peft_config["default"].inference_mode is False  # saving does not freeze the live model
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    assert set(tensors) == set(get_peft_model_state_dict(model))
    assert "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight" in tensors
    assert tensors["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"].shape == (
        4,
        32,
    )


def test_a_crash_while_writing_leaves_no_half_written_file(tmp_path, monkeypatch) -> None:
    model = _model()
    model.save_pretrained(tmp_path)
    before = (tmp_path / "adapter_model.safetensors").read_bytes()
    randomize_adapters(model, seed=11)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("adapterlab.checkpoint.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]


def test_state_dict_loads_under_any_adapter_name() -> None:
    source = _model()
    state = get_peft_model_state_dict(source)
    target = get_peft_model(
        make_base("bert"), LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8), adapter_name="mine"
    )
    set_peft_model_state_dict(target, state, adapter_name="mine")
    inputs = make_inputs("encoder")
    torch.testing.assert_close(output_of(target, inputs), output_of(source, inputs), rtol=0, atol=1e-6)
    bad = dict(state)
    key = next(k for k in bad if k.endswith("lora_B.weight"))
    bad[key] = torch.zeros(5, 5)
    with pytest.raises(ShapeMismatch, match=r"\(5, 5\)"):
        set_peft_model_state_dict(target, bad, adapter_name="mine")


def test_selected_adapters_and_names(tmp_path) -> None:
    model = _model()
    model.add_adapter("second", LoraConfig(task_type="SEQ_CLS", r=2))
    model.save_pretrained(tmp_path, selected_adapters=["second"])
    assert not (tmp_path / "adapter_model.safetensors").exists()
    assert (tmp_path / "second" / "adapter_config.json").is_file()
    second = load_file(tmp_path / "second" / "adapter_model.safetensors")
    assert all(".second" not in key for key in second)
    assert second["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"].shape == (2, 32)
