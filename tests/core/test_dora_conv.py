"""DoRA on Conv1d/2d/3d: a magnitude per output channel, numerically HF PEFT's, merging exactly."""

from __future__ import annotations

import copy
import warnings

import peft
import pytest
import torch
from torch import nn

import adapterlab
from adapterlab import LoraConfig, get_peft_model


class _ConvNet(nn.Module):
    def __init__(self, dims: int) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        self.conv = conv(3, 6, 3, padding=1)
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _input(dims: int) -> torch.Tensor:
    return torch.randn(2, 3, *([5] * dims))


def _randomize(model: nn.Module) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.add_(torch.randn_like(param) * 0.3)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_dora_conv_matches_hf_peft_and_merges_exactly(dims: int) -> None:
    torch.manual_seed(0)
    base = _ConvNet(dims)
    config = {"target_modules": ["conv"], "use_dora": True, "r": 2, "lora_alpha": 4}
    ours = get_peft_model(copy.deepcopy(base), LoraConfig(**config))
    _randomize(ours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(**config))
    # HF PEFT stores the magnitude as (1, out, 1, ...): ours has the same shape, so state dicts load across
    magnitude = ours.base_model.model.conv.lora_magnitude_vector["default"]
    assert magnitude.shape == (1, 6, *([1] * dims))
    adapterlab.set_peft_model_state_dict(ours, adapterlab.get_peft_model_state_dict(ours))
    peft.set_peft_model_state_dict(theirs, adapterlab.get_peft_model_state_dict(ours))
    x = _input(dims)
    ours.eval(), theirs.eval()
    expected = theirs(x)
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(expected, base(x), atol=1e-3)  # the adapter does something
    ours.merge_adapter()
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)
    ours.unmerge_adapter()
    torch.testing.assert_close(ours.base_model.model.conv.base_layer.weight, base.conv.weight, atol=1e-6, rtol=1e-6)


def test_dora_conv_trains_its_magnitude_and_dropout_path_agrees() -> None:
    torch.manual_seed(0)
    model = get_peft_model(_ConvNet(2), LoraConfig(target_modules=["conv"], use_dora=True, lora_dropout=0.5))
    layer = model.base_model.model.conv
    _randomize(model)
    x = _input(2)
    model.eval()
    reference = model(x)
    # in training the base output is recomputed from the dropped-out input; with dropout off they agree
    layer.lora_dropout["default"] = nn.Dropout(0.0)
    model.train()
    out = model(x)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert layer.lora_magnitude_vector["default"].grad is not None
