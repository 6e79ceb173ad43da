"""The data-free ``init_lora_weights`` variants start each adapter (and, for PiSSA and OLoRA, the base
weights) exactly as Hugging Face PEFT does, and keep the model's output where the method says."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from core_bases import gpt2_config, llama_config
from transformers import GPT2LMHeadModel, LlamaForCausalLM

import adapterlab
from adapterlab.errors import InvalidConfig, UnsupportedFeature

peft = pytest.importorskip("peft")

INITS = [True, False, "gaussian", "orthogonal", "pissa", "pissa_niter_4", "olora"]
# the model's output at init equals the base's for these (the others start with B @ A != 0)
OUTPUT_PRESERVING = {True, "gaussian", "orthogonal", "pissa", "pissa_niter_4", "olora"}
IDS = torch.arange(1, 9).view(2, 4)


def _llama() -> torch.nn.Module:
    torch.manual_seed(0)
    return LlamaForCausalLM(llama_config()).eval()


def _init(lib: Any, base: torch.nn.Module, init: bool | str, **kw: Any) -> Any:
    torch.manual_seed(7)
    config = lib.LoraConfig(
        task_type="CAUSAL_LM",
        r=4,
        lora_alpha=8,
        init_lora_weights=init,
        target_modules=["q_proj", "v_proj", "down_proj"],
        **kw,
    )
    return lib.get_peft_model(base, config).eval()


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if "lora_" in k or k.endswith("base_layer.weight")}


@pytest.mark.parametrize("init", INITS, ids=str)
def test_adapters_and_base_weights_start_as_in_hf_peft(init: bool | str) -> None:
    base = _llama()
    ours, theirs = _init(adapterlab, copy.deepcopy(base), init), _init(peft, copy.deepcopy(base), init)
    ours_state, theirs_state = _state(ours), _state(theirs)
    assert ours_state.keys() == theirs_state.keys()
    for key, value in ours_state.items():
        torch.testing.assert_close(value, theirs_state[key], atol=1e-5, rtol=1e-4, msg=key)
    with torch.no_grad():
        got, base_logits = ours(input_ids=IDS).logits, base(input_ids=IDS).logits
    if init in OUTPUT_PRESERVING:
        torch.testing.assert_close(got, base_logits, atol=1e-4, rtol=1e-4)
    else:
        assert not torch.allclose(got, base_logits, atol=1e-4)


def test_pissa_puts_the_top_singular_directions_in_the_adapter() -> None:
    base = _llama()
    weight = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    model = _init(adapterlab, base, "pissa")
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    low_rank = layer.get_delta_weight("default")  # scaling * B @ A
    u, s, vh = torch.linalg.svd(weight)
    torch.testing.assert_close(low_rank, u[:, :4] @ torch.diag(s[:4]) @ vh[:4], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(layer.base_layer.weight + low_rank, weight, atol=1e-5, rtol=1e-4)


def test_pissa_on_a_conv1d_base_respects_its_in_out_layout() -> None:
    torch.manual_seed(0)
    base = GPT2LMHeadModel(gpt2_config()).eval()
    torch.manual_seed(7)
    model = adapterlab.get_peft_model(
        copy.deepcopy(base),
        adapterlab.LoraConfig(
            task_type="CAUSAL_LM",
            r=4,
            init_lora_weights="pissa",
            target_modules=["c_attn"],
            fan_in_fan_out=True,
        ),
    )
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval()(input_ids=IDS).logits, base(input_ids=IDS).logits, atol=1e-4, rtol=1e-4
        )


def test_orthogonal_needs_an_even_rank() -> None:
    with pytest.raises(InvalidConfig, match="rank to be even"):
        adapterlab.get_peft_model(_llama(), adapterlab.LoraConfig(r=3, init_lora_weights="orthogonal"))


@pytest.mark.parametrize("init", ["pissa_niter_", "svd", "PISSA", 1])
def test_unknown_inits_are_refused_by_name(init: object) -> None:
    with pytest.raises(InvalidConfig, match="init_lora_weights"):
        adapterlab.LoraConfig(init_lora_weights=init)


def test_svd_based_inits_are_refused_on_convolutions() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    with pytest.raises(UnsupportedFeature, match="pissa.*linear layers only"):
        adapterlab.get_peft_model(
            model, adapterlab.LoraConfig(target_modules=["0"], init_lora_weights="pissa")
        )


@pytest.mark.parametrize("init", ["loftq", "eva", "corda", "lora_ga"])
def test_hf_inits_that_need_data_are_refused_by_name(init: str) -> None:
    with pytest.raises(UnsupportedFeature, match=f"init_lora_weights='{init}'"):
        adapterlab.LoraConfig(init_lora_weights=init)
