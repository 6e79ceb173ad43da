"""DoRA on Conv1d/2d/3d (a magnitude per output channel) and LoRA and DoRA on grouped convolutions, as HF
PEFT."""

from __future__ import annotations

import copy
import warnings

import peft
import pytest
import torch
from torch import nn

import adapterlab
from adapterlab import LoraConfig, get_peft_model
from adapterlab.errors import InvalidConfig, UnsupportedFeature
from adapterlab.tuners.lora.layer import LoraLayer


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
    torch.testing.assert_close(
        ours.base_model.model.conv.base_layer.weight, base.conv.weight, atol=1e-6, rtol=1e-6
    )


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


# -- grouped convolutions: HF PEFT's layout (full A, grouped B), never merged ------------------------


def _grouped() -> nn.Module:
    return nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, groups=2))


def test_grouped_conv_lora_matches_hf_peft() -> None:
    torch.manual_seed(0)
    base = _grouped()
    with pytest.warns(UserWarning, match="cannot be merged"):
        ours = get_peft_model(copy.deepcopy(base), LoraConfig(target_modules=["0"], r=4))
    _randomize(ours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(target_modules=["0"], r=4))
    state = adapterlab.get_peft_model_state_dict(ours)
    assert state["base_model.model.0.lora_B.weight"].shape == (32, 2, 1, 1)  # grouped B: r / groups inputs
    peft.set_peft_model_state_dict(theirs, state)
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours(x), base(x), atol=1e-3)


def test_grouped_conv_refuses_merging_without_touching_any_layer() -> None:
    model = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, groups=2))
    with pytest.warns(UserWarning):
        peft_model = get_peft_model(
            model, LoraConfig(target_modules=["0", "1"], r=2, init_lora_weights=False)
        )
    before = [p.detach().clone() for p in peft_model.get_base_model().parameters()]
    with pytest.raises(UnsupportedFeature, match="groups=2"):
        peft_model.merge_and_unload()
    with pytest.raises(UnsupportedFeature, match="groups=2"):
        peft_model.merge_adapter()
    after = list(peft_model.get_base_model().parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert isinstance(peft_model.base_model.model[0], LoraLayer)  # nothing was unloaded either


def test_grouped_conv_needs_a_rank_divisible_by_groups() -> None:
    with pytest.raises(InvalidConfig, match="divisible by groups"):
        get_peft_model(_grouped(), LoraConfig(target_modules=["0"], r=3))


def _dense_kernel(conv: nn.modules.conv._ConvNd) -> torch.Tensor:
    """The grouped kernel (out, in / g, *k) written out as the dense (out, in, *k) it acts as, by hand."""
    out, inputs, groups = conv.out_channels, conv.in_channels, conv.groups
    dense = torch.zeros(out, inputs, *conv.kernel_size)
    for o in range(out):
        group = o // (out // groups)
        dense[o, group * (inputs // groups) : (group + 1) * (inputs // groups)] = conv.weight[o]
    return dense


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv1d(8, 12, 3, padding=1, groups=4),
        nn.Conv2d(16, 32, 3, padding=1, groups=2),
        nn.Conv3d(4, 6, 1, groups=2),
    ],
)
def test_grouped_conv_dora_is_dora_of_the_dense_kernel(conv: nn.modules.conv._ConvNd) -> None:
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="cannot be merged"):
        model = get_peft_model(
            nn.Sequential(copy.deepcopy(conv)),
            LoraConfig(target_modules=["0"], r=4, use_dora=True, init_lora_weights=False),
        )
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.lora_magnitude_vector["default"].mul_(
            torch.rand_like(layer.lora_magnitude_vector["default"]) + 0.5
        )
    conv_fn = getattr(torch.nn.functional, f"conv{conv.weight.dim() - 2}d")
    x = torch.randn(2, conv.in_channels, *[5] * (conv.weight.dim() - 2))
    update = layer.lora_weight("default")  # dense: the low-rank path is one ungrouped convolution with it
    torch.testing.assert_close(
        layer.lora_B["default"](layer.lora_A["default"](x)), conv_fn(x, update, padding=conv.padding)
    )
    combined = _dense_kernel(conv) + layer.scaling["default"] * update
    norms = combined.flatten(1).norm(dim=1).view(-1, *[1] * (combined.dim() - 1))
    kernel = layer.lora_magnitude_vector["default"].view(-1, *[1] * (combined.dim() - 1)) / norms * combined
    expected = conv_fn(x, kernel, conv.bias, padding=conv.padding)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    model(x).sum().backward()
    assert layer.lora_magnitude_vector["default"].grad is not None
    with pytest.raises(UnsupportedFeature, match=f"groups={conv.groups}"):
        model.merge_adapter()


@pytest.mark.parametrize("autocast, expected", [(True, torch.float32), (False, torch.bfloat16)])
@pytest.mark.parametrize("layer", [nn.Linear(4, 4), nn.Conv2d(4, 4, 1), nn.Embedding(5, 4)])
def test_dora_magnitude_has_the_adapter_dtype(
    layer: nn.Module, autocast: bool, expected: torch.dtype
) -> None:
    base = nn.Sequential(copy.deepcopy(layer)).to(torch.bfloat16)
    model = get_peft_model(
        base, LoraConfig(target_modules=["0"], use_dora=True), autocast_adapter_dtype=autocast
    )
    assert {p.dtype for n, p in model.named_parameters() if "lora_" in n} == {expected}


def test_layer_status_names_conv_layers_as_hf_peft_does() -> None:
    from adapterlab import get_layer_status

    model = get_peft_model(_ConvNet(3), LoraConfig(target_modules=["conv"]))
    assert [(s.name, s.module_type) for s in get_layer_status(model)] == [("model.conv", "lora.Conv3d")]


@pytest.mark.parametrize("layer", [nn.Linear(4, 4), nn.Conv2d(4, 4, 1), nn.Embedding(5, 4)])
def test_merging_a_float32_dora_magnitude_keeps_the_base_dtype(layer: nn.Module) -> None:
    base = nn.Sequential(copy.deepcopy(layer)).to(torch.bfloat16)
    model = get_peft_model(base, LoraConfig(target_modules=["0"], use_dora=True))
    model.merge_adapter()
    assert model.base_model.model[0].base_layer.weight.dtype == torch.bfloat16
    model.unmerge_adapter()
    assert model.base_model.model[0].base_layer.weight.dtype == torch.bfloat16
    assert model.merge_and_unload()[0].weight.dtype == torch.bfloat16
