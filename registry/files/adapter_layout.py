"""Do an adapter's tensor names and shapes agree with its config? (HF PEFT key layout.)

LoRA keys are ``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight`` (embeddings:
``lora_embedding_A`` / ``lora_embedding_B``; DoRA adds ``lora_magnitude_vector``), with the
adapter name removed; ``modules_to_save`` and LoRA biases are saved under their plain module
path. Variants add per-module tensors (``lora_B.bias`` with ``lora_bias``, KaSA's ``lora_diag``,
VeLoRA's ``lora_velora_embed``); LoRA on an embedding layer (``lm_head``, ``embed_tokens``) also
saves the base table, ``<module>.base_layer.weight``. A and B shapes per layer kind:
``lora_shapes.py``. Prompt methods save ``prompt_embeddings``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from adapterlab.errors import CheckpointError, InvalidConfig
from adapterlab.hf_format import (
    EMBEDDING_LAYER_NAMES,
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
from adapterlab.registry.files.lora_shapes import lora_shape, targeted_path

_LORA_PARTS = "|".join(re.escape(part) for part in (LORA_A, LORA_B, LORA_EMBEDDING_A, LORA_EMBEDDING_B))
# variant tensors, each saved only when the config field that asks for it is set
VARIANT_PARTS = {"lora_B.bias": "lora_bias", "lora_diag": "kasa_config", "lora_velora_embed": "velora_config"}
_EXTRA_PARTS = "|".join(re.escape(part) for part in VARIANT_PARTS)
_LORA_KEY = re.compile(
    rf"(?P<module>.+)\.(?P<part>{_LORA_PARTS}|{LORA_MAGNITUDE}(?:\.weight)?|{_EXTRA_PARTS}|base_layer\.weight)"
)
# heads HF PEFT saves for classification / QA tasks even when the config leaves them implicit
TOKEN_DELTA = "token_adapter.trainable_tokens_delta"
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
        if not (_is_saved_module(key, saved) or _is_lora_bias(key, config) or _is_token_delta(key, config)):
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
        if match and key.startswith(PREFIX) and _is_lora_part(match["module"], match["part"]):
            pairs.setdefault(match["module"].removeprefix(PREFIX), {})[match["part"]] = shape
        else:
            others.append(key)
    return pairs, others


def _is_lora_part(module: str, part: str) -> bool:
    """``base_layer.weight`` is a LoRA module's part only on an embedding layer (its saved table)."""
    return part != "base_layer.weight" or module.rsplit(".", 1)[-1] in EMBEDDING_LAYER_NAMES


def _is_token_delta(key: str, config: dict[str, Any]) -> bool:
    """The rows ``trainable_token_indices`` trains, saved under the embedding's path."""
    return bool(config.get("trainable_token_indices")) and key.endswith(f".{TOKEN_DELTA}")


def _is_lora_bias(key: str, config: dict[str, Any]) -> bool:
    return config.get("bias", "none") != "none" and key.startswith(PREFIX) and key.endswith(".bias")


def _check_lora_module(
    module: str, parts: dict[str, tuple[int, ...]], config: dict[str, Any], rank: int, folder: Path
) -> None:
    if not (
        _targeted(targeted_path(module), config.get("target_modules"))
        or is_parameter_target(module, config)
        or _tied_output(module, config)
    ):
        raise _mismatch(folder, f"module {module!r} is not in target_modules")
    for part in parts.keys() & VARIANT_PARTS.keys():
        if not config.get(VARIANT_PARTS[part]):
            raise _mismatch(
                folder, f"module {module!r} has {part} but the config has no {VARIANT_PARTS[part]}"
            )
    for a_name, b_name in ((LORA_A, LORA_B), (LORA_EMBEDDING_A, LORA_EMBEDDING_B)):
        if (a_name in parts) != (b_name in parts):
            raise _mismatch(folder, f"module {module!r} has only one of {a_name} / {b_name}")
        if a_name in parts:
            a_shape, b_shape = parts[a_name], parts[b_name]
            shape = lora_shape(module, a_shape, b_shape, config)
            if shape is None:
                raise _mismatch(
                    folder,
                    f"module {module!r}: {a_name} {list(a_shape)} and {b_name} {list(b_shape)} disagree",
                )
            if not config.get("rank_pattern") and not _rank_fits(shape.rank, rank, module, config):
                raise _mismatch(folder, f"module {module!r} has rank {shape.rank}, the config says r={rank}")
    if not any(name in parts for name in (LORA_A, LORA_EMBEDDING_A)):
        raise _mismatch(folder, f"module {module!r} has {', '.join(sorted(parts))} but no LoRA matrices")


def _tied_output(module: str, config: dict[str, Any]) -> bool:
    """``ensure_weight_tying`` names the input embedding in target_modules and saves the output layer too."""
    return bool(config.get("ensure_weight_tying")) and module.rsplit(".", 1)[-1] == "lm_head"


def is_parameter_target(module: str, config: dict[str, Any]) -> bool:
    """A LoRA module on parameters (``target_parameters``: ``experts.gate_up_proj`` or ``gate_up_proj``)
    rather than on a module ``target_modules`` names."""
    names = config.get("target_parameters") or []
    owner = targeted_path(module)
    if not isinstance(names, list) or _targeted(owner, config.get("target_modules") or []):
        return False
    return any(
        isinstance(name, str)
        and (
            "." not in name or owner == name.rsplit(".", 1)[0] or owner.endswith(f".{name.rsplit('.', 1)[0]}")
        )
        for name in names
    )


def _rank_fits(found: int, rank: int, module: str, config: dict[str, Any]) -> bool:
    """A parameter's A and B hold r per expert (``experts * r`` rows); any other module holds r."""
    return found == rank or (is_parameter_target(module, config) and found % rank == 0)


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
