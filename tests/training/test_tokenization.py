"""Per-task encoding: label alignment, prompt masking, padding, and the metrics computed on them."""

from __future__ import annotations

import pytest

from adapterlab.training.config import TrainConfig, quickstart_base_path
from adapterlab.training.metrics import exact_matches, macro_f1
from adapterlab.training.tokenization import (
    BatchCollator,
    encode_causal_lm,
    encode_seq2seq,
    encode_token_classification,
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(quickstart_base_path())
    tokenizer.eos_token = "[SEP]"
    return tokenizer


def test_word_labels_go_to_the_first_sub_token_only(tokenizer) -> None:
    batch = {"text": [["unbelievably", "cold", "soup"]], "label": [["ADV", "ADJ", "NOUN"]]}
    encoded = encode_token_classification(
        batch, tokenizer, TrainConfig(task="token-cls"), {"ADJ": 0, "ADV": 1, "NOUN": 2}
    )
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    labels = encoded["labels"][0]
    assert pieces[0] == "[CLS]" and labels[0] == -100 and labels[-1] == -100  # specials are not scored
    scored = [(piece, label) for piece, label in zip(pieces, labels, strict=True) if label != -100]
    assert scored == [("un", 1), ("cold", 0), ("soup", 2)]
    assert len(pieces) > 5  # "unbelievably" really was split; its later pieces are -100


def test_causal_lm_masks_the_prompt_and_scores_the_response_and_eos(tokenizer) -> None:
    config = TrainConfig(task="causal-lm")
    encoded = encode_causal_lm(
        {"text": ["question: colour of snow?"], "target": ["white"]}, tokenizer, config, {}
    )
    ids, labels = encoded["input_ids"][0], encoded["labels"][0]
    prompt_length = len(tokenizer("question: colour of snow?")["input_ids"])
    assert labels[:prompt_length] == [-100] * prompt_length
    assert (
        labels[prompt_length:]
        == ids[prompt_length:]
        == [*tokenizer("white", add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    )


def test_seq2seq_targets_become_labels_and_max_length_cuts(tokenizer) -> None:
    config = TrainConfig(task="seq2seq", max_length=4)
    encoded = encode_seq2seq(
        {"text": ["a long source sentence here"], "target": ["a long target sentence"]}, tokenizer, config, {}
    )
    assert len(encoded["input_ids"][0]) == 4 and len(encoded["labels"][0]) == 4


def test_collator_pads_inputs_and_labels(tokenizer) -> None:
    features = [
        {"input_ids": [101, 7, 102], "attention_mask": [1, 1, 1], "labels": [-100, 3, -100]},
        {"input_ids": [101, 102], "attention_mask": [1, 1], "labels": [-100, -100]},
    ]
    batch = BatchCollator(tokenizer)(features)
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert batch["labels"].tolist() == [[-100, 3, -100], [-100, -100, -100]]
    assert BatchCollator(tokenizer)([{"input_ids": [1], "labels": 2}])["labels"].tolist() == [2]


def test_exact_match_is_teacher_forced_greedy_match() -> None:
    import torch

    labels = torch.tensor([[-100, 5, 6], [-100, 5, 6]])
    logits = torch.zeros(2, 3, 10)
    logits[0, 0, 5] = logits[0, 1, 6] = 1  # causal: position t predicts token t+1 -> all right
    logits[1, 0, 5] = logits[1, 1, 7] = 1  # second token wrong
    assert exact_matches(logits, labels, shifted=True).tolist() == [True, False]
    prefixed = torch.cat([torch.zeros(2, 4, 10), logits], dim=1)  # virtual tokens of prompt methods
    assert exact_matches(prefixed, labels, shifted=True).tolist() == [True, False]


def test_macro_f1_averages_classes_equally() -> None:
    assert macro_f1([0, 0, 1, 1], [0, 0, 1, 1], 2) == 1.0
    assert macro_f1([0, 0, 0, 0], [0, 0, 0, 1], 2) == pytest.approx((6 / 7 + 0) / 2)
