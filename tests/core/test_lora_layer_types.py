"""LoRA on convolutions, with ``lora_bias``, and DoRA on embeddings: Hugging Face PEFT's checkpoints both
ways (same keys and shapes, same outputs), exact merges; and the HF features adapterlab refuses, by name."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from core_bases import llama_config
from safetensors import safe_open
from torch import nn
from transformers import LlamaForCausalLM

import adapterlab
from adapterlab.errors import InvalidConfig, MergeImpossible, UnsupportedFeature

peft = pytest.importorskip("peft")


class ConvNet(nn.Module):
    """Conv1d, Conv2d (strided, padded, non-square kernel), Conv3d (1x1x1), then a linear head."""

    def __init__(self, dilation: int | tuple[int, int] = 1) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(3, 6, 3, padding=1)
        self.conv2d = nn.Conv2d(6, 8, (3, 2), stride=2, padding=1, dilation=dilation)
        self.conv3d = nn.Conv3d(8, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, 3, L)
        h = self.conv1d(x)  # (B, 6, L)
        h = self.conv2d(h.unsqueeze(-1).expand(-1, -1, -1, 5))  # (B, 8, H, W)
        h = self.conv3d(h.unsqueeze(-1))  # (B, 4, H, W, 1)
        return self.head(h.mean((2, 3, 4)))  # (B, 2)


INPUT = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(1))
CONV_TARGETS = ["conv1d", "conv2d", "conv3d"]


def _base(dilation: int | tuple[int, int] = 1) -> ConvNet:
    torch.manual_seed(0)
    return ConvNet(dilation).eval()


def _randomized(lib: Any, base: nn.Module, **config: Any) -> Any:
    model = lib.get_peft_model(base, lib.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **config))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=gen) * 0.2)
    return model.eval()


def _shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


CONV_CASES = {
    "conv": {"target_modules": CONV_TARGETS},
    "conv-lora-bias": {"target_modules": CONV_TARGETS, "lora_bias": True},
    "conv-rslora-dropout": {
        "target_modules": [*CONV_TARGETS, "head"],
        "use_rslora": True,
        "lora_dropout": 0.1,
    },
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_checkpoints_interoperate_both_ways(case: str, tmp_path: Path) -> None:
    config = CONV_CASES[case]
    shapes = {}
    for writer, reader in ((adapterlab, peft), (peft, adapterlab)):
        model = _randomized(writer, _base(), **copy.deepcopy(config))
        with torch.no_grad():
            expected = model(INPUT)
            assert not torch.allclose(expected, _base()(INPUT), atol=1e-4), "adapter is a no-op"
        folder = tmp_path / writer.__name__
        model.save_pretrained(str(folder))
        loaded = reader.PeftModel.from_pretrained(_base(), str(folder)).eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(INPUT), expected, atol=1e-5, rtol=0)
        shapes[writer.__name__] = _shapes(folder)
    assert shapes["adapterlab"] == shapes["peft"]
    assert "base_model.model.conv2d.lora_A.weight" in shapes["peft"]
    assert shapes["peft"]["base_model.model.conv2d.lora_A.weight"] == (4, 6, 3, 2)  # base's kernel
    assert shapes["peft"]["base_model.model.conv2d.lora_B.weight"] == (8, 4, 1, 1)  # pointwise
    assert ("base_model.model.conv3d.lora_B.bias" in shapes["peft"]) == bool(config.get("lora_bias"))


def test_conv_trainable_counts_match_hf_peft() -> None:
    ours = adapterlab.get_peft_model(_base(), adapterlab.LoraConfig(r=4, target_modules=CONV_TARGETS))
    theirs = peft.get_peft_model(_base(), peft.LoraConfig(r=4, target_modules=CONV_TARGETS))
    assert ours.get_nb_trainable_parameters() == theirs.get_nb_trainable_parameters()


@pytest.mark.parametrize("lora_bias", [False, True])
def test_merging_a_conv_adapter_gives_the_same_output(lora_bias: bool) -> None:
    # a dilated base: lora_A takes the base's dilation too (HF PEFT's lora_A leaves it out, so its
    # merged and unmerged outputs differ there), else B @ A would not be the kernel it merges as
    model = _randomized(adapterlab, _base(dilation=(1, 2)), target_modules=CONV_TARGETS, lora_bias=lora_bias)
    with torch.no_grad():
        expected = model(INPUT)
        model.merge_adapter()
        torch.testing.assert_close(model(INPUT), expected, atol=1e-5, rtol=1e-5)
        model.unmerge_adapter()
        torch.testing.assert_close(model(INPUT), expected, atol=1e-5, rtol=1e-5)
        merged = model.merge_and_unload()
    assert type(merged.conv2d) is nn.Conv2d
    with torch.no_grad():
        torch.testing.assert_close(merged(INPUT), expected, atol=1e-5, rtol=1e-5)


def test_a_conv_adapter_trains() -> None:
    model = adapterlab.get_peft_model(_base(), adapterlab.LoraConfig(r=4, target_modules=CONV_TARGETS))
    model(INPUT).square().sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)


def test_lora_bias_merge_needs_a_base_bias() -> None:
    base = nn.Sequential(nn.Linear(4, 3, bias=False))
    with pytest.warns(adapterlab.PeftWarning, match="targeted layer of type Linear has no bias"):
        model = _randomized(adapterlab, base, target_modules=["0"], lora_bias=True)
    with pytest.raises(MergeImpossible, match="no bias to merge") as excinfo:
        model.merge_adapter()
    assert isinstance(excinfo.value, RuntimeError) and isinstance(excinfo.value, InvalidConfig)
    assert not model.base_model.model[0].merged


def test_dora_on_an_embedding_merges_exactly() -> None:
    torch.manual_seed(0)
    base = LlamaForCausalLM(llama_config()).eval()
    model = _randomized(adapterlab, base, target_modules=["embed_tokens"], use_dora=True)
    ids = torch.arange(1, 9).view(2, 4)
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        model.merge_adapter()
        torch.testing.assert_close(model(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
        model.unmerge_adapter()
        torch.testing.assert_close(model(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)


# -- refused, by name ------------------------------------------------------------------------------


def test_combining_conv_adapters_is_refused_by_name() -> None:
    model = adapterlab.get_peft_model(_base(), adapterlab.LoraConfig(r=4, target_modules=CONV_TARGETS))
    with pytest.raises(UnsupportedFeature, match="convolution"):
        model.add_weighted_adapter(["default"], [0.5], "half")
    assert "half" not in model.peft_config


def test_lora_bias_is_refused_on_embeddings_and_with_dora() -> None:
    with pytest.raises(UnsupportedFeature, match="lora_bias"):
        adapterlab.get_peft_model(
            nn.Sequential(nn.Embedding(10, 4)), adapterlab.LoraConfig(target_modules=["0"], lora_bias=True)
        )
    with pytest.raises(InvalidConfig, match="lora_bias"):
        adapterlab.LoraConfig(lora_bias=True, use_dora=True)


# -- trainable_token_indices -----------------------------------------------------------------------


def _llama_with_tokens(**extra: Any) -> tuple[nn.Module, Any]:
    torch.manual_seed(0)
    base = LlamaForCausalLM(llama_config()).eval()
    config = adapterlab.LoraConfig(task_type="CAUSAL_LM", r=2, trainable_token_indices=[3, 5], **extra)
    return base, adapterlab.get_peft_model(copy.deepcopy(base), config)


TOKEN_IDS = torch.tensor([[1, 3, 5, 2], [4, 5, 3, 1]])  # 3 and 5 not last: the loss reads them


def test_trainable_tokens_start_at_the_base_and_train_only_their_rows() -> None:
    base, model = _llama_with_tokens(target_modules=["q_proj"])
    table = base.get_input_embeddings().weight.detach().clone()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=TOKEN_IDS).logits, base(input_ids=TOKEN_IDS).logits)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    model(input_ids=TOKEN_IDS, labels=TOKEN_IDS).loss.backward()
    optimizer.step()
    wrapper = model.base_model.model.model.embed_tokens
    assert torch.equal(wrapper.base_layer.weight, table)  # the table itself stays frozen
    delta = wrapper.token_adapter.trainable_tokens_delta["default"]
    assert not torch.equal(delta, table[[3, 5]])
    merged = model.merge_and_unload()
    assert type(merged.model.embed_tokens) is nn.Embedding
    changed = (merged.model.embed_tokens.weight != table).any(dim=1).nonzero().flatten().tolist()
    assert changed == [3, 5]


def test_trainable_tokens_disable_unload_and_delete_restore_the_base() -> None:
    base, model = _llama_with_tokens()
    with torch.no_grad():
        model.base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta["default"].add_(1.0)
        base_logits = base(input_ids=TOKEN_IDS).logits
        assert not torch.allclose(model(input_ids=TOKEN_IDS).logits, base_logits)
        with model.disable_adapter():
            torch.testing.assert_close(model(input_ids=TOKEN_IDS).logits, base_logits)
        model.merge_adapter()
        model.unmerge_adapter()
        torch.testing.assert_close(
            model.get_base_model().model.embed_tokens.base_layer.weight, base.get_input_embeddings().weight
        )
    model.add_adapter("other", adapterlab.LoraConfig(task_type="CAUSAL_LM", r=2))
    model.delete_adapter("default")
    assert model.base_model.model.model.embed_tokens.adapter_names == []
    unloaded = model.unload()
    assert type(unloaded.model.embed_tokens) is nn.Embedding
    torch.testing.assert_close(unloaded.model.embed_tokens.weight, base.get_input_embeddings().weight)


def test_trainable_tokens_refuse_tied_tables_lora_targeted_embeddings_and_mixed_batches() -> None:
    from core_bases import gpt2_config
    from transformers import GPT2LMHeadModel

    with pytest.raises(UnsupportedFeature, match="tied to the output layer"):
        adapterlab.get_peft_model(
            GPT2LMHeadModel(gpt2_config()),
            adapterlab.LoraConfig(task_type="CAUSAL_LM", trainable_token_indices=[1]),
        )
    with pytest.raises(UnsupportedFeature, match="which LoRA also targets"):
        _llama_with_tokens(target_modules=["embed_tokens", "q_proj"])
    _, model = _llama_with_tokens()
    with pytest.raises(UnsupportedFeature, match="mixed batches"):
        model.eval()(input_ids=TOKEN_IDS, adapter_names=["default", "default"])
    with pytest.raises(InvalidConfig, match="outside the vocabulary"):
        adapterlab.get_peft_model(
            LlamaForCausalLM(llama_config()),
            adapterlab.LoraConfig(task_type="CAUSAL_LM", trainable_token_indices=[10_000]),
        )
