"""inject_adapter_in_model(low_cpu_mem_usage=True): LoRA tensors on the meta device until a load fills
them."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from adapterlab import LoraConfig, inject_adapter_in_model


def _base() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 6), nn.Conv1d(6, 6, 1))


def _forward(model: nn.Module) -> torch.Tensor:
    hidden = model[1](model[0](torch.arange(4)))  # (4, 6)
    return model[2](hidden.T.unsqueeze(0))


@pytest.mark.parametrize("use_dora", [False, True])
def test_adapter_tensors_stay_on_meta_until_loaded_with_assign(use_dora: bool) -> None:
    config = LoraConfig(target_modules=["0", "1", "2"], use_dora=use_dora, init_lora_weights=False)
    trained = inject_adapter_in_model(copy.deepcopy(config), _base())
    lora_state = {k: v for k, v in trained.state_dict().items() if "lora_" in k}

    light = inject_adapter_in_model(copy.deepcopy(config), _base(), low_cpu_mem_usage=True)
    devices = {name: p.device.type for name, p in light.named_parameters()}
    assert {d for n, d in devices.items() if "lora_" in n} == {"meta"}
    assert {d for n, d in devices.items() if "lora_" not in n} == {"cpu"}  # the base is untouched

    light.load_state_dict(lora_state, strict=False, assign=True)
    assert {p.device.type for p in light.parameters()} == {"cpu"}
    torch.testing.assert_close(_forward(light), _forward(trained))
