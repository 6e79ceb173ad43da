"""``ensure_weight_tying`` (HF PEFT's LoraConfig option): on a model whose lm_head is tied to the input
embeddings, the adapter stays tied; without the option, a warning says the adapter unties them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adapterlab import LoraConfig, PeftModel, get_peft_model
from adapterlab.tuners.lora.layer import LoraLayer
from adapterlab.tuners.lora.weight_tying import tied_module_names
from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper


class TiedConfig:
    def __init__(self, tie: bool) -> None:
        self.tie_word_embeddings = tie

    def to_dict(self) -> dict[str, bool]:
        return {"tie_word_embeddings": self.tie_word_embeddings}


class TinyLM(nn.Module):
    """embed_tokens -> linear -> lm_head, lm_head sharing the embedding matrix (transformers 5's keys)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config_ties: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(50, 16)
        self.model.linear = nn.Linear(16, 16)
        self.lm_head = nn.Linear(16, 50, bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight
        self.config = TiedConfig(config_ties)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.model.linear(self.model.embed_tokens(ids)))


def randomized(model: PeftModel) -> PeftModel:
    torch.manual_seed(1)
    for param in model.parameters():
        if param.requires_grad:
            param.data.normal_()
    return model


def test_tied_module_names_reads_transformers_keys_and_respects_the_config():
    assert tied_module_names(TinyLM()) == ["lm_head"]
    assert tied_module_names(TinyLM(config_ties=False)) == []


def test_lora_on_the_head_shares_the_embeddings_tensors_transposed_and_round_trips(tmp_path):
    config = LoraConfig(target_modules=["linear", "lm_head"], ensure_weight_tying=True)
    model = randomized(get_peft_model(TinyLM(), config))
    embed, head = model.base_model.model.model.embed_tokens, model.base_model.model.lm_head
    assert isinstance(embed, LoraLayer) and isinstance(head, LoraLayer)
    assert head.lora_A["default"].weight.data_ptr() == embed.lora_embedding_B["default"].data_ptr()
    torch.testing.assert_close(head.lora_B["default"].weight, embed.lora_embedding_A["default"].T)
    ids = torch.randint(0, 50, (2, 5))
    model.save_pretrained(tmp_path)  # tensors that share storage are stored as copies
    loaded = PeftModel.from_pretrained(TinyLM(), tmp_path)
    torch.testing.assert_close(loaded(ids), model(ids))


def test_modules_to_save_copy_of_the_head_is_the_embeddings_copy():
    config = LoraConfig(target_modules=["linear"], modules_to_save=["lm_head"], ensure_weight_tying=True)
    model = get_peft_model(TinyLM(), config)
    embed, head = model.base_model.model.model.embed_tokens, model.base_model.model.lm_head
    assert isinstance(embed, ModulesToSaveWrapper) and isinstance(head, ModulesToSaveWrapper)
    assert head.modules_to_save["default"].weight is embed.modules_to_save["default"].weight
    assert config.modules_to_save == ["model.embed_tokens"]


def test_warnings_when_the_tie_is_broken_or_the_option_does_nothing():
    with pytest.warns(UserWarning, match="`ensure_weight_tying` is not set to True"):
        model = get_peft_model(TinyLM(), LoraConfig(target_modules=["linear", "lm_head"]))
    assert not isinstance(model.base_model.model.model.embed_tokens, LoraLayer)  # untied, as asked
    with pytest.warns(UserWarning, match="no tied modules were found in the model"):
        get_peft_model(
            TinyLM(config_ties=False), LoraConfig(target_modules=["lm_head"], ensure_weight_tying=True)
        )
    with pytest.warns(UserWarning, match="no tied modules are added"):
        get_peft_model(TinyLM(), LoraConfig(target_modules=["linear"], ensure_weight_tying=True))


def test_an_adapter_tied_on_gpt2_reloads_with_its_head_still_tied(tmp_path) -> None:
    """The saved config names GPT-2's embedding by its path (transformer.wte), not a usual embedding
    name: a reload must still find the tied head, whose tensors the file holds."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32)
    ).save_pretrained(tmp_path / "base")
    config = LoraConfig(
        task_type="CAUSAL_LM",
        target_modules=["c_attn", "lm_head"],
        ensure_weight_tying=True,
        init_lora_weights=False,
    )
    model = get_peft_model(GPT2LMHeadModel.from_pretrained(tmp_path / "base"), config)
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(
        GPT2LMHeadModel.from_pretrained(tmp_path / "base"), tmp_path / "adapter"
    )
    ids = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(reloaded(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
    head, embedding = reloaded.base_model.model.lm_head, reloaded.base_model.model.transformer.wte
    assert head.lora_A["default"].weight.data_ptr() == embedding.lora_embedding_B["default"].data_ptr()
