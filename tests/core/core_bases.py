"""Tiny base models for the core tests, built from transformers config classes (no downloads)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import (
    AutoModel,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

VOCAB = 64


# Configs of the tiny models every core test builds (hidden 32, 4 heads, 2 layers). Prompt-method
# tests pass positions=48: the virtual tokens need room in the position table.


def bert_config(num_labels: int = 3, positions: int = 32, width: int = 32, layers: int = 2) -> BertConfig:
    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=positions,
        num_labels=num_labels,
    )


def gpt2_config(positions: int = 32, width: int = 32) -> GPT2Config:
    return GPT2Config(vocab_size=VOCAB, n_positions=positions, n_embd=width, n_layer=2, n_head=4)


def t5_config(layers: int = 2) -> T5Config:
    return T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=layers,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )


def llama_config(positions: int = 32, layers: int = 2) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=37,
        max_position_embeddings=positions,
        pad_token_id=0,
    )


def tiny_bert() -> torch.nn.Module:
    return BertForSequenceClassification(bert_config())


def tiny_gpt2() -> torch.nn.Module:
    return GPT2LMHeadModel(gpt2_config())


def tiny_t5() -> torch.nn.Module:
    return T5ForConditionalGeneration(t5_config())


def tiny_llama() -> torch.nn.Module:
    return LlamaForCausalLM(llama_config())


def real_minilm() -> torch.nn.Module:
    # imported here: scripts that put only tests/core on sys.path import this module too
    from models import minilm_dir

    return AutoModel.from_pretrained(minilm_dir())


# name -> (factory, task type, kind of inputs)
BASES: dict[str, tuple[Callable[[], torch.nn.Module], str, str]] = {
    "bert": (tiny_bert, "SEQ_CLS", "encoder"),
    "gpt2": (tiny_gpt2, "CAUSAL_LM", "decoder"),
    "t5": (tiny_t5, "SEQ_2_SEQ_LM", "seq2seq"),
    "llama": (tiny_llama, "CAUSAL_LM", "decoder"),
    "minilm": (real_minilm, "FEATURE_EXTRACTION", "encoder"),
}


def make_base(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return BASES[name][0]().eval()


def make_inputs(kind: str, batch: int = 3, seq: int = 6, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (batch, seq), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if kind == "seq2seq":
        inputs["decoder_input_ids"] = torch.randint(2, VOCAB, (batch, 4), generator=generator)
    return inputs


def output_of(model: torch.nn.Module, inputs: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs, **kwargs)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


@torch.no_grad()
def randomize_adapters(model: torch.nn.Module, seed: int = 2) -> None:
    """Give every adapter tensor random values, so the adapted output differs from the base's."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.copy_(
                torch.randn(param.shape, generator=generator) * 0.1 + (1.0 if "magnitude" in name else 0.0)
            )
