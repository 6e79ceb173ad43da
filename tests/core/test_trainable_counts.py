"""Parameter counts and the print_trainable_parameters line are exactly Hugging Face PEFT's."""

from __future__ import annotations

import copy

import pytest
import torch
from core_bases import BASES, make_base
from transformers import MT5Config, MT5ForConditionalGeneration

from adapterlab import LoraConfig, get_peft_model

peft = pytest.importorskip("peft")

MT0_LARGE = dict(
    d_model=1024,
    d_ff=2816,
    num_layers=24,
    num_decoder_layers=24,
    num_heads=16,
    d_kv=64,
    vocab_size=250112,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
)


def test_the_seed_figure_on_mt0_large_built_on_the_meta_device(capsys) -> None:
    with torch.device("meta"):
        base = MT5ForConditionalGeneration(MT5Config(**MT0_LARGE))
    reference = copy.deepcopy(base)
    settings = dict(task_type="SEQ_2_SEQ_LM", r=8, lora_alpha=32, lora_dropout=0.1)
    ours = get_peft_model(base, LoraConfig(**settings))
    theirs = peft.get_peft_model(reference, peft.LoraConfig(**settings))
    trainable, total = ours.get_nb_trainable_parameters()
    assert trainable == 2_359_296
    assert (trainable, total) == theirs.get_nb_trainable_parameters()
    ours.print_trainable_parameters()
    theirs.print_trainable_parameters()
    ours_line, theirs_line = capsys.readouterr().out.strip().splitlines()
    assert ours_line == theirs_line
    assert ours_line.startswith("trainable params: 2,359,296 || all params: ")


CASES = {
    "bert-default": ("bert", {}),
    "bert-bias-all": ("bert", {"bias": "all"}),
    "bert-all-linear-dora": ("bert", {"target_modules": "all-linear", "use_dora": True}),
    "gpt2-patterns": ("gpt2", {"target_modules": ["c_attn", "c_proj"], "rank_pattern": {"c_proj": 2}}),
    "t5-layers": (
        "t5",
        {"target_modules": ["q", "v", "o"], "layers_to_transform": [1], "layers_pattern": "block"},
    ),
    "llama-embedding": (
        "llama",
        {"target_modules": ["embed_tokens", "q_proj"], "modules_to_save": ["lm_head"]},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_counts_match_hf_peft(case) -> None:
    name, settings = CASES[case]
    settings = {"task_type": BASES[name][1], "r": 4, **settings}
    ours = get_peft_model(make_base(name), LoraConfig(**settings))
    theirs = peft.get_peft_model(make_base(name), peft.LoraConfig(**settings))
    assert ours.get_nb_trainable_parameters() == theirs.get_nb_trainable_parameters()
    ours_names = {n for n, p in ours.named_parameters() if p.requires_grad}
    theirs_names = {n for n, p in theirs.named_parameters() if p.requires_grad}
    assert ours_names == {
        n.replace("lora_magnitude_vector.default.weight", "lora_magnitude_vector.default")
        for n in theirs_names
    }
