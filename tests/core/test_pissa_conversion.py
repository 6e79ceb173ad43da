"""``save_pretrained(..., path_initial_model_for_weight_conversion=...)``: a trained PiSSA/OLoRA adapter
saved as the plain LoRA (twice the rank) that applies to the original, unmodified base model."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from adapterlab import LoraConfig, PeftModel, get_peft_model
from adapterlab.errors import CheckpointError, InvalidConfig


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin0 = nn.Linear(12, 16)
        self.lin1 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin1(torch.relu(self.lin0(x)))


@pytest.mark.parametrize(
    "options",
    [
        {"init_lora_weights": "pissa"},
        {"init_lora_weights": "olora", "rank_pattern": {"lin1": 2}, "alpha_pattern": {"lin1": 5}},
        {"init_lora_weights": "pissa", "use_rslora": True},
    ],
)
def test_converted_adapter_reproduces_the_trained_one_on_the_original_base(tmp_path, options):
    base = MLP()
    x = torch.rand(5, 12)
    model = get_peft_model(copy.deepcopy(base), LoraConfig(target_modules=["lin0", "lin1"], r=4, **options))
    model.save_pretrained(tmp_path / "init")
    for layer in (model.base_model.model.lin0, model.base_model.model.lin1):
        layer.lora_B["default"].weight.data *= 2.0  # "training"
    trained = model(x)
    before = model.peft_config["default"].to_dict()

    model.save_pretrained(tmp_path / "lora", path_initial_model_for_weight_conversion=tmp_path / "init")

    assert model.peft_config["default"].to_dict() == before  # the live adapter is unchanged
    saved = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert saved["r"] == 8 and saved["init_lora_weights"] is True
    assert saved["rank_pattern"] == {key: 2 * v for key, v in options.get("rank_pattern", {}).items()}
    converted = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "lora")
    torch.testing.assert_close(converted(x), trained, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(converted.base_model.model.lin0.base_layer.weight, base.lin0.weight)


def test_rslora_with_patterns_warns_at_config_and_is_refused_at_save(tmp_path):
    with pytest.warns(UserWarning, match="Using Rank-Stabilized LoRA with rank_pattern/alpha_pattern"):
        config = LoraConfig(
            init_lora_weights="pissa", target_modules=["lin0"], use_rslora=True, rank_pattern={"lin0": 2}
        )
    model = get_peft_model(MLP(), config)
    model.save_pretrained(tmp_path / "init")
    with pytest.raises(
        InvalidConfig, match="`path_initial_model_for_weight_conversion` to `save_pretrained` is not"
    ):
        model.save_pretrained(tmp_path / "lora", path_initial_model_for_weight_conversion=tmp_path / "init")
    assert not (tmp_path / "lora").exists()  # nothing half-written


def test_a_missing_initial_adapter_is_one_clear_error_and_writes_nothing(tmp_path):
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin0"], init_lora_weights="pissa"))
    with pytest.raises(CheckpointError, match="no adapter_model.safetensors"):
        model.save_pretrained(
            tmp_path / "lora", path_initial_model_for_weight_conversion=tmp_path / "missing"
        )
    assert not (tmp_path / "lora").exists()
