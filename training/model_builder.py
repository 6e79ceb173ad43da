"""Build the model to train: the base for the task, wrapped by the chosen PEFT method.

``check_base`` reads only the base's ``config.json``, so a missing base or a task the base's
architecture has no head for fails before any weights are loaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from adapterlab.errors import InvalidConfig, summarize
from adapterlab.hf_format import TASKS as TASK_FACTS
from adapterlab.hf_format import PeftType, TaskType
from adapterlab.training.config import TrainConfig

# method -> the adapterlab config class (same names as HF PEFT)
METHOD_CONFIGS = {
    PeftType.LORA: "LoraConfig",
    PeftType.PROMPT_TUNING: "PromptTuningConfig",
    PeftType.P_TUNING: "PromptEncoderConfig",
    PeftType.PREFIX_TUNING: "PrefixTuningConfig",
}
# what a method gets when the user sets nothing; LoRA's r/alpha suit small encoders like MiniLM
METHOD_DEFAULTS: dict[PeftType, dict[str, Any]] = {
    PeftType.LORA: {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1},
    PeftType.PROMPT_TUNING: {"num_virtual_tokens": 20},
    PeftType.P_TUNING: {"num_virtual_tokens": 20, "encoder_hidden_size": 128},
    PeftType.PREFIX_TUNING: {"num_virtual_tokens": 20},
}


def check_method_task(config: TrainConfig) -> None:
    """Refuse a method/task pair the core cannot train, before anything is loaded."""
    from adapterlab.methods import get_method

    supported = getattr(get_method(PeftType(config.method)), "supported_tasks", None)
    if supported is not None and config.task not in {str(getattr(task, "value", task)) for task in supported}:
        raise InvalidConfig(
            f"method {config.method} cannot train task {config.task} (per-token outputs would be shifted "
            f"by its virtual tokens); use --method {PeftType.LORA} or {PeftType.PREFIX_TUNING}"
        )
    if config.gradient_checkpointing and config.method != PeftType.LORA:
        raise InvalidConfig(
            f"gradient checkpointing is supported with method {PeftType.LORA} only, not {config.method}"
        )


def check_base(config: TrainConfig) -> Any:
    """The base's transformers config; a clear error if it is missing or has no head for the task."""
    from transformers import AutoConfig
    from transformers.models.auto import modeling_auto

    base = config.base
    if not Path(base).expanduser().exists() and base.startswith((".", "/", "~")):
        raise InvalidConfig(f"base model folder {base} does not exist")
    try:
        base_config = AutoConfig.from_pretrained(
            str(Path(base).expanduser()) if Path(base).expanduser().exists() else base
        )
    except Exception as exc:  # OSError, ValueError, connection errors: all mean "cannot use this base"
        raise InvalidConfig(
            f"base model {base} is neither a local model folder nor reachable on the Hub: {summarize(exc)}"
        ) from exc
    if base_config.model_type not in getattr(modeling_auto, TASK_FACTS[TaskType(config.task)].model_types):
        raise InvalidConfig(
            f"base model type {base_config.model_type!r} has no head for task {config.task}; pick another "
            "base or task"
        )
    return base_config


def load_tokenizer(config: TrainConfig) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.base)
    tokenizer.padding_side = "right"  # labels are padded on the right too
    if tokenizer.pad_token is None:  # decoder-only tokenizers (GPT-2, Llama) ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_peft_config(config: TrainConfig) -> Any:
    """The method's config from its defaults, the task, and ``config.peft`` (unknown field: an error).

    Built from the options alone, so ``train`` checks it before loading the tokenizer or the model.
    """
    import adapterlab

    config_class = getattr(adapterlab, METHOD_CONFIGS[PeftType(config.method)])
    values = {**METHOD_DEFAULTS[PeftType(config.method)], "task_type": config.task, **config.peft}
    if values.get("prompt_tuning_init") == "TEXT":
        values.setdefault("tokenizer_name_or_path", config.base)
    known = {item.name for item in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidConfig(
            f"{config_class.__name__} has no field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    check_sizes(values)
    try:
        return config_class(**values)
    except (TypeError, ValueError) as exc:
        raise InvalidConfig(
            f"invalid --peft options for {config.method}: {summarize(exc, limit=None)}"
        ) from exc


# sizes beyond this are typos (r=80000 for r=8), not experiments: refused before any memory is allocated
MAX_ADAPTER_SIZE = 65_536
SIZE_FIELDS = ("r", "num_virtual_tokens", "encoder_hidden_size", "encoder_num_layers")


def check_sizes(values: dict[str, Any]) -> None:
    sizes = {name: values[name] for name in SIZE_FIELDS if name in values}
    pattern = values.get("rank_pattern")
    if isinstance(pattern, dict):
        sizes.update({f"rank_pattern[{key!r}]": rank for key, rank in pattern.items()})
    for name, size in sizes.items():
        if isinstance(size, int) and not isinstance(size, bool) and size > MAX_ADAPTER_SIZE:
            raise InvalidConfig(f"--peft.{name}={size} is larger than {MAX_ADAPTER_SIZE}; use a smaller size")


def build_model(config: TrainConfig, peft_config: Any, labels: list[str] | None, tokenizer: Any) -> Any:
    """The base model for the task, wrapped by ``adapterlab.get_peft_model``."""
    import transformers

    import adapterlab

    auto_class = getattr(transformers, TASK_FACTS[TaskType(config.task)].auto_class)
    kwargs: dict[str, Any] = {}
    if labels is not None:
        kwargs = {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: index for index, name in enumerate(labels)},
        }
    model = auto_class.from_pretrained(config.base, **kwargs)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id  # sequence heads find the last token by it
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        return adapterlab.get_peft_model(model, peft_config)
    except InvalidConfig:
        raise
    except (TypeError, ValueError, MemoryError, RuntimeError) as exc:  # RuntimeError: torch's allocator
        raise InvalidConfig(
            f"{config.method} cannot wrap {config.base}: {summarize(exc, limit=None)}"
        ) from exc
