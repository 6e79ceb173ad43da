"""Hotswapping LoRA adapters in place (HF PEFT's ``peft.utils.hotswap``): the swapped model computes
what the new adapter computes, ranks are zero-padded, and incompatible adapters are refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adapterlab import LoraConfig, PeftModel, get_peft_model
from adapterlab.errors import AdapterNotFound, HotswapMismatch, InvalidConfig
from adapterlab.tuners.lora.hotswap import (
    hotswap_adapter,
    hotswap_adapter_from_state_dict,
    prepare_model_for_compiled_hotswap,
)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(10, 20)
        self.lin1 = nn.Linear(20, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin1(torch.relu(self.lin0(x)))


class GroupedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, kernel_size=3, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def fresh(base: type[nn.Module]) -> nn.Module:
    """The same base weights every time."""
    torch.manual_seed(0)
    return base()


def saved_adapter(folder, base: type[nn.Module], config: LoraConfig, seed: int, x: torch.Tensor):
    """Save an adapter with random weights (by ``seed``) on ``fresh(base)``; return its output on ``x``."""
    model = fresh(base)
    torch.manual_seed(seed)
    model = get_peft_model(model, config).eval()
    model.save_pretrained(folder)
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("ranks", [(4, 9), (9, 4)])
def test_hotswap_gives_the_new_adapters_output_whatever_its_rank(tmp_path, ranks):
    x = torch.rand(3, 10)
    out0 = saved_adapter(
        tmp_path / "a0",
        MLP,
        LoraConfig(target_modules=["lin0", "lin1"], r=ranks[0], init_lora_weights=False),
        0,
        x,
    )
    config1 = LoraConfig(target_modules=["lin0"], r=ranks[1], lora_alpha=3, init_lora_weights=False)
    out1 = saved_adapter(tmp_path / "a1", MLP, config1, 1, x)
    model = PeftModel.from_pretrained(fresh(MLP), tmp_path / "a0").eval()
    hotswap_adapter(model, tmp_path / "a1", adapter_name="default")
    with torch.no_grad():
        torch.testing.assert_close(model(x), out1)
    assert (model.base_model.model.lin1.lora_B["default"].weight == 0).all()  # lin1 is not in adapter 1
    assert model.base_model.model.lin0.scaling["default"] == 3 / ranks[1]
    hotswap_adapter(model, tmp_path / "a0", adapter_name="default")
    with torch.no_grad():
        torch.testing.assert_close(model(x), out0)


def test_prepare_pads_ranks_and_makes_scalings_tensors_without_changing_the_output(tmp_path):
    config = LoraConfig(
        target_modules=["lin0", "lin1"], r=4, rank_pattern={"lin1": 6}, init_lora_weights=False
    )
    model = get_peft_model(MLP(), config).eval()
    x = torch.rand(3, 10)
    with torch.no_grad():
        before = model(x)
    model.lin1.lora_A["default"].weight.requires_grad_(False)
    prepare_model_for_compiled_hotswap(model, target_rank=8, config=model.peft_config)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)
    lin0, lin1 = model.base_model.model.lin0, model.base_model.model.lin1
    assert lin0.lora_A["default"].weight.shape == (8, 10) and lin0.lora_B["default"].weight.shape == (20, 8)
    assert lin0.lora_A["default"].out_features == 8
    assert isinstance(lin0.scaling["default"], torch.Tensor)
    assert lin1.scaling["default"].item() == pytest.approx(8 / 6)
    assert (
        lin1.lora_A["default"].weight.requires_grad is False and lin1.lora_B["default"].weight.requires_grad
    )
    assert model.peft_config["default"].r == 8 and model.peft_config["default"].rank_pattern == {"lin1": 8}


def test_grouped_conv_pads_blockwise_and_swaps_exactly(tmp_path):
    x = torch.rand(1, 4, 8, 8)
    out0 = saved_adapter(
        tmp_path / "a0", GroupedConv, LoraConfig(target_modules=["conv"], r=2, init_lora_weights=False), 0, x
    )
    out1 = saved_adapter(
        tmp_path / "a1", GroupedConv, LoraConfig(target_modules=["conv"], r=4, init_lora_weights=False), 1, x
    )
    model = PeftModel.from_pretrained(fresh(GroupedConv), tmp_path / "a0").eval()
    prepare_model_for_compiled_hotswap(model, target_rank=6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), out0)
        hotswap_adapter(model, tmp_path / "a1", adapter_name="default")
        torch.testing.assert_close(model(x), out1)
        hotswap_adapter(model, tmp_path / "a0", adapter_name="default")
        torch.testing.assert_close(model(x), out0)
    with pytest.raises(InvalidConfig, match="not divisible by 2"):
        prepare_model_for_compiled_hotswap(model, target_rank=7)


def test_prepare_refusals_change_nothing():
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin0", "lin1"], r=4, rank_pattern={"lin1": 10}))
    with pytest.raises(InvalidConfig, match=r"target rank 9, but the original rank is larger \(10\)"):
        prepare_model_for_compiled_hotswap(model, target_rank=9)
    assert model.base_model.model.lin0.lora_A["default"].weight.shape[0] == 4  # lin0 was not padded either
    assert isinstance(model.base_model.model.lin0.scaling["default"], float)
    with pytest.raises(InvalidConfig, match="check_compiles should be one of"):
        prepare_model_for_compiled_hotswap(model, check_compiled="maybe")
    with pytest.raises(AdapterNotFound, match="No adapter layers found"):
        prepare_model_for_compiled_hotswap(MLP())


def test_hotswap_refuses_incompatible_adapters(tmp_path):
    x = torch.rand(2, 10)
    saved_adapter(tmp_path / "a0", MLP, LoraConfig(target_modules=["lin0"]), 0, x)
    saved_adapter(tmp_path / "rs", MLP, LoraConfig(target_modules=["lin0"], use_rslora=True), 1, x)
    saved_adapter(tmp_path / "wide", MLP, LoraConfig(target_modules=["lin0", "lin1"]), 2, x)
    model = PeftModel.from_pretrained(MLP(), tmp_path / "a0")
    weight = model.base_model.model.lin0.lora_A["default"].weight.clone()
    with pytest.raises(HotswapMismatch, match="Configs are incompatible: for use_rslora"):
        hotswap_adapter(model, tmp_path / "rs", adapter_name="default")
    with pytest.raises(
        RuntimeError, match="unexpected keys found: base_model.model.lin1.lora_A.default.weight"
    ):
        hotswap_adapter(model, tmp_path / "wide", adapter_name="default")
    torch.testing.assert_close(model.base_model.model.lin0.lora_A["default"].weight, weight)  # untouched


def test_hotswap_from_state_dict_refuses_a_larger_rank_in_a_compiled_model():
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin0"], r=2))
    compiled = torch.compile(model)
    big = {"base_model.model.lin0.lora_A.default.weight": torch.ones(4, 10)}
    with pytest.raises(HotswapMismatch, match="prepare_model_for_compiled_hotswap"):
        hotswap_adapter_from_state_dict(compiled, big, "default", LoraConfig(target_modules=["lin0"], r=4))
    with pytest.raises(InvalidConfig, match=r"\*before\* compiling"):
        prepare_model_for_compiled_hotswap(compiled)
    with pytest.warns(UserWarning, match="already compiled"):
        prepare_model_for_compiled_hotswap(compiled, check_compiled="warn")
