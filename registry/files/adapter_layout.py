"""Do an adapter's tensor names and shapes agree with its config? (HF PEFT key layout.)

LoRA keys are ``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight`` (embeddings:
``lora_embedding_A`` / ``lora_embedding_B``; DoRA adds ``lora_magnitude_vector``), with the
adapter name removed; ``modules_to_save`` and LoRA biases are saved under their plain module
path. Prompt methods save ``prompt_embeddings``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from adapterlab.errors import CheckpointError, InvalidConfig
from adapterlab.hf_format import (
    LORA_A,
    LORA_B,
    LORA_EMBEDDING_A,
    LORA_EMBEDDING_B,
    LORA_MAGNITUDE,
    PROMPT_EMBEDDINGS,
    TASKS,
    PeftType,
)
from adapterlab.hf_format import MODEL_PREFIX as PREFIX

_LORA_PARTS = "|".join(re.escape(part) for part in (LORA_A, LORA_B, LORA_EMBEDDING_A, LORA_EMBEDDING_B))
_LORA_KEY = re.compile(rf"(?P<module>.+)\.(?P<part>{_LORA_PARTS}|{LORA_MAGNITUDE}(?:\.weight)?)")
# heads HF PEFT saves for classification / QA tasks even when the config leaves them implicit
TASK_HEADS = tuple(dict.fromkeys(name for task in TASKS.values() for name in task.head_modules))


def check_tensor_layout(
    peft_type: str, config: dict[str, Any], shapes: dict[str, tuple[int, ...]], folder: Path
) -> None:
    saved = _saved_modules(config)
    if peft_type == PeftType.LORA:
        _check_lora(config, shapes, saved, folder)
    else:
        _check_prompt(peft_type, config, shapes, saved, folder)


def _saved_modules(config: dict[str, Any]) -> tuple[str, ...]:
    extra = config.get("modules_to_save") or []
    if not isinstance(extra, list) or not all(isinstance(name, str) for name in extra):
        raise InvalidConfig("adapter_config.json: modules_to_save must be a list of module names")
    return (*extra, *TASK_HEADS)


def _is_saved_module(key: str, saved: tuple[str, ...]) -> bool:
    path = key.removeprefix(PREFIX)
    return any(path.startswith(f"{name}.") or f".{name}." in path for name in saved)


def _mismatch(folder: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"weights in {folder} do not match adapter_config.json: {detail}; re-save the adapter"
    )


def _check_lora(
    config: dict[str, Any], shapes: dict[str, tuple[int, ...]], saved: tuple[str, ...], folder: Path
) -> None:
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise InvalidConfig(f"adapter_config.json: LoRA rank r must be a positive integer, got {rank!r}")
    pairs, others = lora_modules(shapes)
    for key in others:
        if not (_is_saved_module(key, saved) or _is_lora_bias(key, config)):
            raise _mismatch(folder, f"unexpected tensor {key!r}")
    if not pairs:
        raise _mismatch(
            folder, "no LoRA tensors (expected keys like base_model.model.<module>.lora_A.weight)"
        )
    for module, parts in sorted(pairs.items()):
        _check_lora_module(module, parts, config, rank, folder)


def lora_modules(
    shapes: dict[str, tuple[int, ...]],
) -> tuple[dict[str, dict[str, tuple[int, ...]]], list[str]]:
    """LoRA tensor shapes by module path (prefix removed) and part (``lora_A.weight``...), and the
    keys that are not LoRA tensors."""
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    others = []
    for key, shape in shapes.items():
        match = _LORA_KEY.fullmatch(key)
        if match and key.startswith(PREFIX):
            pairs.setdefault(match["module"].removeprefix(PREFIX), {})[match["part"]] = shape
        else:
            others.append(key)
    return pairs, others


def _is_lora_bias(key: str, config: dict[str, Any]) -> bool:
    return config.get("bias", "none") != "none" and key.startswith(PREFIX) and key.endswith(".bias")


def _check_lora_module(
    module: str, parts: dict[str, tuple[int, ...]], config: dict[str, Any], rank: int, folder: Path
) -> None:
    if not _targeted(module, config.get("target_modules")):
        raise _mismatch(folder, f"module {module!r} is not in target_modules")
    for a_name, b_name in ((LORA_A, LORA_B), (LORA_EMBEDDING_A, LORA_EMBEDDING_B)):
        if (a_name in parts) != (b_name in parts):
            raise _mismatch(folder, f"module {module!r} has only one of {a_name} / {b_name}")
        if a_name in parts:
            a_shape, b_shape = parts[a_name], parts[b_name]
            if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
                raise _mismatch(
                    folder,
                    f"module {module!r}: {a_name} {list(a_shape)} and {b_name} {list(b_shape)} disagree",
                )
            if not config.get("rank_pattern") and a_shape[0] != rank:
                raise _mismatch(folder, f"module {module!r} has rank {a_shape[0]}, the config says r={rank}")
    if not any(name in parts for name in (LORA_A, LORA_EMBEDDING_A)):
        raise _mismatch(folder, f"module {module!r} has a magnitude vector but no LoRA matrices")


def _targeted(module: str, targets: Any) -> bool:
    if targets is None or targets == "all-linear":
        return True
    if isinstance(targets, str):
        try:
            return re.fullmatch(targets, module) is not None
        except (re.error, RecursionError, OverflowError) as exc:
            raise InvalidConfig(
                f"adapter_config.json: target_modules {targets!r} is not a valid regex ({exc}); "
                "fix the pattern or give a list of module names"
            ) from exc
    if isinstance(targets, list):
        return any(module == name or module.endswith(f".{name}") for name in targets)
    raise InvalidConfig(
        f"adapter_config.json: target_modules must be a list or a regex string, got {targets!r}"
    )


def _check_prompt(
    peft_type: str,
    config: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    saved: tuple[str, ...],
    folder: Path,
) -> None:
    if PROMPT_EMBEDDINGS not in shapes:
        raise _mismatch(folder, f"no {PROMPT_EMBEDDINGS!r} tensor")
    for key in shapes:
        if key != PROMPT_EMBEDDINGS and not _is_saved_module(key, saved):
            raise _mismatch(folder, f"unexpected tensor {key!r}")
    expected = _prompt_shape(peft_type, config)
    if expected is not None and shapes[PROMPT_EMBEDDINGS] != expected:
        raise _mismatch(
            folder,
            f"{PROMPT_EMBEDDINGS} is {list(shapes[PROMPT_EMBEDDINGS])}, the config implies {list(expected)}",
        )


def _prompt_shape(peft_type: str, config: dict[str, Any]) -> tuple[int, int] | None:
    tokens, dim = config.get("num_virtual_tokens"), config.get("token_dim")
    if not isinstance(tokens, int) or not isinstance(dim, int):
        return None  # older writers leave these to the base model; nothing to compare against
    if peft_type == "PREFIX_TUNING":
        layers = config.get("num_layers")
        return (tokens, layers * 2 * dim) if isinstance(layers, int) else None
    return (tokens * (config.get("num_transformer_submodules") or 1), dim)
