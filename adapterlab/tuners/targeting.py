"""Which modules of a base model an injection method (LoRA) adapts.

The matching rules are Hugging Face PEFT's, so one ``adapter_config.json`` selects the same layers
in both libraries: a list entry matches a module whose dotted name equals it or ends with
``.<entry>``; a string is a regex that must match the whole name; ``"all-linear"`` means every
linear layer except the output head; ``None`` takes the defaults for the model's ``model_type``.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterlab.errors import InvalidConfig, TargetModuleNotFound

ALL_LINEAR = "all-linear"
INCLUDE_LINEAR_LAYERS_SHORTHAND = ALL_LINEAR  # HF PEFT's name for it
SEQ_CLS_HEAD_NAMES = ("score", "classifier")


def resolve_target_modules(
    target_modules: list[str] | str | None, model: nn.Module, defaults: dict[str, list[str]], task_type: Any
) -> list[str] | str:
    """Turn ``None`` and ``"all-linear"`` into explicit module names for ``model``."""
    if target_modules is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in defaults:
            raise InvalidConfig(
                f"Please specify `target_modules` in `peft_config`: there is no default for model_type "
                f"{model_type!r}; e.g. target_modules=['q_proj', 'v_proj'] or 'all-linear'"
            )
        return list(defaults[model_type])
    if isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR:
        return _all_linear_names(model, task_type)
    return target_modules


def _all_linear_names(model: nn.Module, task_type: Any) -> list[str]:
    excluded: set[str] = set()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None and str(task_type) == "SEQ_CLS":
        head = next((getattr(model, n) for n in SEQ_CLS_HEAD_NAMES if hasattr(model, n)), None)
    names = []
    for name, module in model.named_modules():
        if module is head:
            excluded.add(name)
        elif isinstance(module, (nn.Linear, Conv1D)):
            names.append(name)
    return sorted(n for n in names if n not in excluded)


def _matches_any_name(entries: list[str] | str, key: str) -> bool:
    if isinstance(entries, str):
        return re.fullmatch(entries, key) is not None
    return key in entries or any(key.endswith(f".{entry}") for entry in entries)


def _layer_index(key: str, layers_pattern: list[str] | str | None) -> int | None:
    if not layers_pattern:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
    else:
        patterns = [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern
        match = None
        for pattern in patterns:
            match = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key)
            if match:
                break
    return int(match.group("idx")) if match else None


def is_target(config: Any, target_modules: list[str] | str, key: str) -> bool:
    """True when the module named ``key`` is to be adapted under ``config``."""
    if is_excluded(config, key):
        return False
    if not _matches_any_name(target_modules, key):
        return False
    layers = config.layers_to_transform
    if layers is None or isinstance(target_modules, str) or (isinstance(layers, list) and not layers):
        return True
    index = _layer_index(key, config.layers_pattern)
    if index is None:
        return False
    return index == layers if isinstance(layers, int) else index in layers


def pattern_value(patterns: dict[str, Any], key: str, default: Any) -> Any:
    """The value of the first ``rank_pattern``/``alpha_pattern`` entry whose regex ends ``key``."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", key):
            return value
    return default


def check_all_targets_found(
    target_modules: list[str] | str, modules: dict[str, nn.Module], matched: list[str], excluded: list[str]
) -> None:
    """Raise TargetModuleNotFound when nothing matched or a listed name exists nowhere in ``modules``;
    ``excluded``: the modules that ``exclude_modules`` or ``modules_to_save`` kept from matching."""
    module_names = list(modules)
    if not matched and excluded:
        if len(excluded) == len(module_names):
            raise TargetModuleNotFound(
                "All modules were excluded. This is likely unintended. Check your `target_modules`, "
                "`exclude_modules` and `modules_to_save` configuration."
            )
        raise TargetModuleNotFound(
            "No modules were targeted for adaptation. This might be caused by a combination of mismatched "
            "target modules and excluded modules: check `target_modules` and `exclude_modules` (modules in "
            f"`modules_to_save` are never adapted); excluded: {', '.join(excluded[:10])}"
        )
    if isinstance(target_modules, str):
        missing = [] if matched else [target_modules]
    else:
        missing = [t for t in target_modules if not any(n == t or n.endswith(f".{t}") for n in module_names)]
        if not matched and not missing:
            missing = list(target_modules)
    if not missing:
        return
    # the layer kinds LoRA can adapt come first: they are what the user most likely meant
    kinds = (nn.Linear, Conv1D, nn.Embedding)
    adaptable = {
        n.rsplit(".", 1)[-1] for n, m in modules.items() if isinstance(getattr(m, "base_layer", m), kinds)
    }
    others = {
        n.rsplit(".", 1)[-1] for n in module_names if n and not n.rsplit(".", 1)[-1].isdigit()
    } - adaptable
    leaf_names = sorted(adaptable) + sorted(others)
    shown = ", ".join(leaf_names[:20]) + (", ..." if len(leaf_names) > 20 else "")
    raise TargetModuleNotFound(
        f"Target modules {', '.join(map(repr, missing))} not found in the base model (or excluded); "
        f"module names that exist: {shown}"
    )


def is_excluded(config: Any, key: str) -> bool:
    """True when ``exclude_modules`` or ``modules_to_save`` keeps module ``key`` from being adapted."""
    if config.exclude_modules and _matches_any_name(config.exclude_modules, key):
        return True
    return bool(config.modules_to_save) and any(
        re.match(rf"(^|.*\.){m}($|\..*)", key) for m in config.modules_to_save
    )


def warn_unused_excludes(config: Any, keys: list[str]) -> None:
    """HF PEFT's warning: ``exclude_modules`` was given but excludes none of ``keys``."""
    if config.exclude_modules and not any(_matches_any_name(config.exclude_modules, key) for key in keys):
        warnings.warn(
            f"You have passed exclude_modules={config.exclude_modules!r} but no modules were excluded. "
            "Please check that exclude_modules was set correctly.",
            UserWarning,
            stacklevel=5,
        )
