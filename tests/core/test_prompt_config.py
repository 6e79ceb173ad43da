"""Prompt-method configs: HF PEFT's fields and defaults, validation, sizes filled from model configs."""

from __future__ import annotations

import dataclasses

import pytest
from transformers import BartConfig, BertConfig, GPT2Config, LlamaConfig, T5Config

from adapterlab.errors import InvalidConfig
from adapterlab.tuners.prompt.config import (
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptEncoderReparameterizationType,
    PromptTuningConfig,
    PromptTuningInit,
)
from adapterlab.tuners.prompt.model_sizes import fill_model_sizes

peft = pytest.importorskip("peft")

PAIRS = [
    (PromptTuningConfig, peft.PromptTuningConfig),
    (PromptEncoderConfig, peft.PromptEncoderConfig),
    (PrefixTuningConfig, peft.PrefixTuningConfig),
]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=lambda c: c.__name__)
def test_fields_and_defaults_match_hf_peft(ours, theirs):
    made_ours = ours(task_type="CAUSAL_LM", num_virtual_tokens=5)
    made_theirs = theirs(task_type="CAUSAL_LM", num_virtual_tokens=5)
    ours_dict = made_ours.to_dict()
    theirs_dict = made_theirs.to_dict()
    theirs_dict.pop("peft_version", None)
    assert set(theirs_dict) <= set(ours_dict)
    for key, value in theirs_dict.items():
        assert ours_dict[key] == (value.value if hasattr(value, "value") else value), key


def test_enums_take_hf_strings():
    config = PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4, prompt_tuning_init="sample_vocab")
    assert config.prompt_tuning_init is PromptTuningInit.SAMPLE_VOCAB
    config = PromptEncoderConfig(
        task_type="SEQ_CLS", num_virtual_tokens=4, encoder_reparameterization_type="LSTM"
    )
    assert config.encoder_reparameterization_type is PromptEncoderReparameterizationType.LSTM
    assert config.to_dict()["encoder_reparameterization_type"] == "LSTM"


@pytest.mark.parametrize("bad", [0, -3, "20", 2.5, True])  # None is allowed until use (test_hf_behaviour)
@pytest.mark.parametrize("config_class", [PromptTuningConfig, PromptEncoderConfig, PrefixTuningConfig])
def test_num_virtual_tokens_must_be_positive(config_class, bad):
    with pytest.raises(InvalidConfig, match="num_virtual_tokens"):
        config_class(task_type="CAUSAL_LM", num_virtual_tokens=bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_tuning_init": "TEXT", "tokenizer_name_or_path": "gpt2"}, "prompt_tuning_init_text"),
        ({"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "Classify:"}, "tokenizer_name_or_path"),
        (
            {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "", "tokenizer_name_or_path": "x"},
            "init_text",
        ),
        ({"tokenizer_kwargs": {"use_fast": True}}, "tokenizer_kwargs"),
        ({"prompt_tuning_init": "WORDS"}, "prompt_tuning_init"),
        ({"token_dim": 0}, "token_dim"),
        ({"num_transformer_submodules": 3}, "num_transformer_submodules"),
    ],
)
def test_prompt_tuning_config_refuses(kwargs, message):
    with pytest.raises(InvalidConfig, match=message):
        PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, **kwargs)


@pytest.mark.parametrize(
    ("config_class", "kwargs", "message"),
    [
        (PromptEncoderConfig, {"encoder_reparameterization_type": "GRU"}, "encoder_reparameterization_type"),
        (PromptEncoderConfig, {"encoder_dropout": 1.0}, "encoder_dropout"),
        (PromptEncoderConfig, {"encoder_num_layers": 0}, "encoder_num_layers"),
        (PromptEncoderConfig, {"encoder_hidden_size": -8}, "encoder_hidden_size"),
        (PrefixTuningConfig, {"init_weights": "ones"}, "init_weights"),
        (PrefixTuningConfig, {"num_layers": 0}, "num_layers"),
    ],
)
def test_encoder_configs_refuse(config_class, kwargs, message):
    with pytest.raises(InvalidConfig, match=message):
        config_class(task_type="CAUSAL_LM", num_virtual_tokens=4, **kwargs)


def _filled(config_class, model_config, task_type="CAUSAL_LM", **kwargs):
    config = config_class(task_type=task_type, num_virtual_tokens=4, **kwargs)
    fill_model_sizes(config, model_config)
    return config


def _sizes(config):
    return (
        config.token_dim,
        config.num_layers,
        config.num_attention_heads,
        config.num_transformer_submodules,
    )


GPT2 = GPT2Config(n_embd=48, n_layer=3, n_head=6)
T5 = T5Config(d_model=32, d_kv=8, num_layers=2, num_decoder_layers=3, num_heads=4)
BERT = BertConfig(hidden_size=24, num_hidden_layers=5, num_attention_heads=3)
LLAMA = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2)
BART = BartConfig(
    d_model=40, encoder_layers=2, decoder_layers=4, encoder_attention_heads=5, decoder_attention_heads=5
)


@pytest.mark.parametrize(
    ("model_config", "task_type", "expected"),
    [
        (GPT2, "CAUSAL_LM", (48, 3, 6, 1)),
        (T5, "SEQ_2_SEQ_LM", (32, 2, 4, 2)),
        (BERT, "SEQ_CLS", (24, 5, 3, 1)),
        (LLAMA, "CAUSAL_LM", (64, 2, 8, 1)),
        (BART, "SEQ_2_SEQ_LM", (40, 2, 5, 2)),
    ],
    ids=["gpt2", "t5", "bert", "llama", "bart"],
)
def test_sizes_filled_from_model_config(model_config, task_type, expected):
    config = _filled(PromptTuningConfig, model_config, task_type)
    assert _sizes(config) == expected
    assert _filled(PromptEncoderConfig, model_config, task_type).encoder_hidden_size == expected[0]


def test_prefix_sizes_follow_key_value_heads_and_decoder_layers():
    # grouped-query attention: keys/values are num_key_value_heads * head_dim wide
    assert _sizes(_filled(PrefixTuningConfig, LLAMA)) == (16, 2, 2, 1)
    # the decoder's self-attention holds the prefix of an encoder-decoder model
    assert _sizes(_filled(PrefixTuningConfig, BART, "SEQ_2_SEQ_LM")) == (40, 4, 5, 2)
    assert _sizes(_filled(PrefixTuningConfig, T5, "SEQ_2_SEQ_LM")) == (32, 3, 4, 2)
    # mT5-small style: heads * d_kv (6 * 8) differs from d_model (32)
    mt5_like = T5Config(d_model=32, d_kv=8, num_layers=2, num_heads=6)
    assert _sizes(_filled(PrefixTuningConfig, mt5_like, "SEQ_2_SEQ_LM"))[:3] == (48, 2, 6)
    assert _filled(PrefixTuningConfig, LLAMA, prefix_projection=True).encoder_hidden_size == 16


def test_explicit_sizes_are_kept():
    config = _filled(PromptTuningConfig, GPT2, token_dim=48, num_layers=7, num_attention_heads=2)
    assert _sizes(config) == (48, 7, 2, 1)


def test_missing_size_names_the_field():
    class Bare:
        num_hidden_layers = 2

    with pytest.raises(InvalidConfig, match="token_dim"):
        _filled(PromptTuningConfig, Bare())


def test_config_is_a_plain_dataclass_with_hf_keys():
    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    keys = {f.name for f in dataclasses.fields(config)}
    assert {
        "num_virtual_tokens",
        "token_dim",
        "prefix_projection",
        "encoder_hidden_size",
        "init_weights",
    } <= keys
    assert config.to_dict()["peft_type"] == "PREFIX_TUNING"
