"""Facts of Hugging Face PEFT's format, in one place: method and task names, file names, key prefixes.

Everything that must agree with HF PEFT (and with transformers' model classes and the Hub's
pipeline tags) is written down here once, and the core, the registry, training, the CLI and the
tests import it from here. It is a leaf: it imports nothing from adapterlab and no torch, so the
registry and the CLI read these facts without loading a deep-learning library.

Adding a task is one line in ``TASKS``.
"""

from __future__ import annotations

import enum
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

CONFIG_NAME = "adapter_config.json"
SAFETENSORS_WEIGHTS_NAME = "adapter_model.safetensors"
WEIGHTS_NAME = "adapter_model.bin"  # legacy: a pickle, read only with torch.load(weights_only=True)
WEIGHT_NAMES = (SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME)  # in the order they are looked for

# checkpoint keys of an injected method (LoRA): the module path under this prefix
MODEL_PREFIX = "base_model.model."
LORA_A, LORA_B = "lora_A.weight", "lora_B.weight"
LORA_EMBEDDING_A, LORA_EMBEDDING_B = "lora_embedding_A", "lora_embedding_B"  # no ".weight"
LORA_MAGNITUDE = "lora_magnitude_vector"  # DoRA
# the names HF PEFT recognizes as input/output embeddings in modules_to_save and target_modules;
# LoRA on one saves its whole base table too (``<module>.base_layer.weight``)
EMBEDDING_LAYER_NAMES = ("embed_tokens", "lm_head")
PROMPT_EMBEDDINGS = "prompt_embeddings"  # the one tensor of a prompt-learning method


# other names a user may write for a member, in spelling() form (training's --task seq2seq)
_ALIASES = {"SEQ2SEQ": "SEQ2SEQLM"}


def spelling(text: str) -> str:
    """The form in which two spellings of one name agree: ``seq-cls``, ``Seq_Cls`` -> ``SEQCLS``."""
    key = "".join(char for char in text.upper() if char.isalnum())
    return _ALIASES.get(key, key)


class _Vocabulary(str, enum.Enum):
    """A str enum that also takes any spelling of its values: case, ``-``, ``_`` and spaces aside."""

    @classmethod
    def _missing_(cls, value: object) -> enum.Enum | None:
        if not isinstance(value, str):
            return None
        return next((member for member in cls if spelling(member.value) == spelling(value)), None)

    def __str__(self) -> str:
        return self.value


class PeftType(_Vocabulary):
    """The PEFT methods, with Hugging Face PEFT's string values."""

    LORA = "LORA"
    PROMPT_TUNING = "PROMPT_TUNING"
    P_TUNING = "P_TUNING"
    PREFIX_TUNING = "PREFIX_TUNING"


class TaskType(_Vocabulary):
    """The task a PEFT model is built for; it picks the ``PeftModelFor...`` class."""

    SEQ_CLS = "SEQ_CLS"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    CAUSAL_LM = "CAUSAL_LM"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"


PEFT_TYPES = tuple(member.value for member in PeftType)
TASK_TYPES = tuple(member.value for member in TaskType)


@dataclass(frozen=True)
class Task:
    """What the ecosystem says about one task type."""

    auto_class: str  # the transformers auto class that builds its model
    model_types: str  # transformers.models.auto.modeling_auto's table of model types it has a head for
    pipeline_tag: str  # the Hub's pipeline tag (model cards)
    head_modules: tuple[str, ...] = ()  # task heads trained in full along the adapter (modules_to_save)
    labelled: bool = False  # its head is sized by the number of classes
    generative: bool = False  # it is used through generate()


TASKS: dict[TaskType, Task] = {
    TaskType.SEQ_CLS: Task(
        "AutoModelForSequenceClassification",
        "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
        "text-classification",
        ("classifier", "score"),
        labelled=True,
    ),
    TaskType.SEQ_2_SEQ_LM: Task(
        "AutoModelForSeq2SeqLM",
        "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
        "text2text-generation",
        generative=True,
    ),
    TaskType.CAUSAL_LM: Task(
        "AutoModelForCausalLM", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "text-generation", generative=True
    ),
    TaskType.TOKEN_CLS: Task(
        "AutoModelForTokenClassification",
        "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
        "token-classification",
        ("classifier", "score"),
        labelled=True,
    ),
    TaskType.QUESTION_ANS: Task(
        "AutoModelForQuestionAnswering",
        "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
        "question-answering",
        ("qa_outputs",),
    ),
    TaskType.FEATURE_EXTRACTION: Task("AutoModel", "MODEL_MAPPING_NAMES", "feature-extraction"),
}


def task(task_type: TaskType | str | None) -> Task | None:
    """The facts of ``task_type`` (an enum member or its value); None for no or an unknown task."""
    try:
        return TASKS[TaskType(str(task_type))] if task_type is not None else None
    except ValueError:
        return None


def auto_class_name(task_type: TaskType | str | None) -> str:
    """The transformers auto class for ``task_type``; ``AutoModel`` (no head) when there is none."""
    found = task(task_type)
    return found.auto_class if found is not None else "AutoModel"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
