"""Running a registered adapter on one text: a label with its probability, or generated text.

The base is found once (``base_locations.locate_base``: its weights' fingerprint is checked
against the one the adapter was registered with) and gives both the model and the tokenizer.
The adapter is the exact version the reference resolved to, so an alias moved meanwhile cannot
mix two versions.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterlab.errors import InvalidConfig
from adapterlab.hf_format import TASKS, TaskType
from adapterlab.registry.db.database import Database
from adapterlab.registry.loading import base_folder, load_on
from adapterlab.registry.records import AdapterVersion

CLASSIFICATION = (TaskType.SEQ_CLS.value,)
GENERATION = tuple(task_type.value for task_type, task in TASKS.items() if task.generative)
# a folder holds a tokenizer when it has one of these (fast, WordPiece, BPE, SentencePiece)
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
)


@dataclass(frozen=True)
class Prediction:
    ref: str  # the exact version that ran, NAME:N
    task_type: str
    label: str | None = None  # classification: the most probable label
    probability: float | None = None
    probabilities: dict[str, float] | None = None  # classification: every label
    generated_text: str | None = None  # language-model tasks

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def predict(
    version: AdapterVersion,
    text: str,
    *,
    base: str | Path | None = None,
    database: Database | None = None,
    max_new_tokens: int = 32,
) -> Prediction:
    """Run the adapter ``version`` on ``text``: classify it, or continue it (LM tasks).

    The base is ``base`` (a folder or Hub id) or the copy ``locate_base`` finds, verified by fingerprint.
    """
    if not text.strip():
        raise InvalidConfig("the text to predict on is empty; pass some text with --text")
    check_predictable(version.ref, version.task_type)
    folder = base_folder(version, base, database)
    tokenizer = load_tokenizer(folder)
    if tokenizer is None:
        raise InvalidConfig(
            f"no tokenizer found for the base of {version.ref} ({version.base.name}) in {folder}; "
            "pass --base with a copy of the base that holds its tokenizer files"
        )
    model = load_on(version, folder=folder)
    if version.task_type in CLASSIFICATION:
        return classify(model, tokenizer, text, version.ref, version.task_type)
    return generate(model, tokenizer, text, version.ref, version.task_type or "", max_new_tokens)


def check_predictable(ref: str, task_type: str | None) -> None:
    """Refuse an adapter of a task that prediction does not cover (feature extraction, token labels)."""
    if task_type not in CLASSIFICATION + GENERATION:
        raise InvalidConfig(
            f"{ref} is a {task_type or 'task-less'} adapter; predict runs "
            f"{', '.join(CLASSIFICATION + GENERATION)} adapters"
        )


def classify(model: Any, tokenizer: Any, text: str, ref: str, task_type: str) -> Prediction:
    import torch

    inputs = tokenizer(text, return_tensors="pt", truncation=True)
    with torch.no_grad():
        logits = model(**inputs).logits[0]  # (num_labels,)
    probabilities = torch.softmax(logits.float(), dim=-1).tolist()
    names = label_names(model, len(probabilities))
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    return Prediction(
        ref=ref,
        task_type=task_type,
        label=names[best],
        probability=probabilities[best],
        probabilities=dict(zip(names, probabilities, strict=True)),
    )


def generate(
    model: Any, tokenizer: Any, text: str, ref: str, task_type: str, max_new_tokens: int
) -> Prediction:
    import torch

    # only ids and mask: segment ids (BERT-style tokenizers) are no input of generative models
    inputs = tokenizer(text, return_tensors="pt", return_token_type_ids=False)
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_token_id
        )
    if task_type == "CAUSAL_LM":
        output = output[:, inputs["input_ids"].shape[1] :]  # decoder-only models echo the prompt
    text_out = tokenizer.decode(output[0], skip_special_tokens=True)
    return Prediction(ref=ref, task_type=task_type, generated_text=text_out.strip())


def label_names(model: Any, count: int) -> list[str]:
    """The class names ``registry.load`` gave the model (from the adapter's ``labels.json``), else
    ``LABEL_<i>``."""
    id2label = getattr(model.config, "id2label", None) or {}
    return [str(id2label.get(index, f"LABEL_{index}")) for index in range(count)]


def load_tokenizer(folder: Path) -> Any | None:
    """The tokenizer in the base's ``folder``, or None when it holds none."""
    from transformers import AutoTokenizer

    # transformers builds an empty tokenizer (special tokens only) for a folder without one
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError):  # unusable tokenizer files: transformers' ways of saying so
        return None
