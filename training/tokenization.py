"""Turn rows into model inputs, one encoder per task, and pad them into batches.

Labels follow the transformers convention: ``-100`` marks positions the loss ignores (padding,
the sub-tokens after a word's first one, the prompt of a causal-LM example).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from adapterlab.errors import InvalidConfig
from adapterlab.hf_format import TaskType
from adapterlab.training.config import TrainConfig

IGNORE_INDEX = -100  # transformers' cross-entropy ignore_index


def encode_dataset(table: Any, tokenizer: Any, config: TrainConfig, labels: list[str] | None) -> Any:
    """The tokenized dataset (only model inputs left as columns) for ``config.task``."""
    encoders: dict[TaskType, Callable[..., dict[str, list]]] = {
        TaskType.SEQ_CLS: encode_classification,
        TaskType.TOKEN_CLS: encode_token_classification,
        TaskType.SEQ_2_SEQ_LM: encode_seq2seq,
        TaskType.CAUSAL_LM: encode_causal_lm,
    }
    label_ids = {name: index for index, name in enumerate(labels or [])}

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return encoders[TaskType(config.task)](batch, tokenizer, config, label_ids)

    # an explicit fingerprint: otherwise `datasets` pickles the closure (tokenizer included) to
    # hash it, which costs seconds per run; nothing is cached on disk (keep_in_memory)
    fingerprint = hashlib.sha256(
        f"{table._fingerprint}|{config.task}|{config.max_length}|{config.base}|{labels}".encode()
    ).hexdigest()[:16]
    return table.map(
        encode,
        batched=True,
        keep_in_memory=True,
        remove_columns=table.column_names,
        new_fingerprint=fingerprint,
        desc=f"tokenizing ({config.task})",
    )


def encode_classification(
    batch: dict, tokenizer: Any, config: TrainConfig, label_ids: dict[str, int]
) -> dict:
    encoded = tokenizer(batch[config.text_column], truncation=True, max_length=config.max_length)
    encoded["labels"] = [label_ids[str(label)] for label in batch[config.label_column]]
    return dict(encoded)


def encode_token_classification(
    batch: dict, tokenizer: Any, config: TrainConfig, label_ids: dict[str, int]
) -> dict:
    """Each word's label goes to its first sub-token; later sub-tokens and specials get -100."""
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidConfig(
            "token classification needs a fast tokenizer (one with word_ids); this base has none"
        )
    encoded = tokenizer(
        batch[config.text_column], is_split_into_words=True, truncation=True, max_length=config.max_length
    )
    aligned = []
    for row, tags in enumerate(batch[config.label_column]):
        previous_word = None
        row_labels = []
        for word in encoded.word_ids(batch_index=row):
            first_piece = word is not None and word != previous_word
            row_labels.append(label_ids[str(tags[word])] if first_piece else IGNORE_INDEX)
            previous_word = word
        aligned.append(row_labels)
    encoded["labels"] = aligned
    return dict(encoded)


def encode_seq2seq(batch: dict, tokenizer: Any, config: TrainConfig, label_ids: dict[str, int]) -> dict:
    encoded = tokenizer(batch[config.text_column], truncation=True, max_length=config.max_length)
    targets = tokenizer(
        text_target=batch[config.target_column], truncation=True, max_length=config.max_length
    )
    encoded["labels"] = targets["input_ids"]
    return dict(encoded)


def encode_causal_lm(batch: dict, tokenizer: Any, config: TrainConfig, label_ids: dict[str, int]) -> dict:
    """prompt + response + EOS; only the response (and EOS, so the model learns to stop) is scored."""
    prompts = tokenizer(batch[config.text_column])["input_ids"]
    responses = tokenizer(batch[config.target_column], add_special_tokens=False)["input_ids"]
    input_ids, labels = [], []
    for prompt, response in zip(prompts, responses, strict=True):
        response = [*response, tokenizer.eos_token_id]
        ids = (prompt + response)[: config.max_length]
        input_ids.append(ids)
        labels.append(([IGNORE_INDEX] * len(prompt) + response)[: config.max_length])
    return {"input_ids": input_ids, "attention_mask": [[1] * len(ids) for ids in input_ids], "labels": labels}


class BatchCollator:
    """Pads inputs with the tokenizer and per-token labels with -100 (right padding)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        labels = [feature["labels"] for feature in features]
        inputs = [{key: value for key, value in feature.items() if key != "labels"} for feature in features]
        batch = self.tokenizer.pad(inputs, padding=True, return_tensors="pt")
        if isinstance(labels[0], list):
            width = max(len(row) for row in labels)
            labels = [row + [IGNORE_INDEX] * (width - len(row)) for row in labels]
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return dict(batch)
