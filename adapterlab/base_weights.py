"""The base model's own weights inside a model with adapters, under the base model's original keys.

Injection methods (LoRA) move each adapted layer under ``<path>.base_layer`` and each
``modules_to_save`` module under ``<path>.original_module``; a checkpoint of the plain base model
(or one gathered from FSDP shards) does not know those names. ``get_base_model_state_dict`` and
``set_base_model_state_dict`` translate, found by structure (which modules are adapter layers),
and leave the adapters' own tensors out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper
from adapterlab.tuners.tuners_utils import BaseTunerLayer

if TYPE_CHECKING:
    from adapterlab.peft_model import PeftModel


class LoadResult(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def _key_map(base: nn.Module) -> tuple[list[tuple[str, str]], list[str]]:
    """(wrapped prefix -> original prefix) pairs, and the prefixes under which adapter tensors live."""
    renames, adapter_prefixes = [], []
    for path, module in base.named_modules():
        here = f"{path}." if path else ""
        if isinstance(module, BaseTunerLayer):
            renames.append((f"{here}base_layer.", here))
            # other_param_names: per-adapter state, some of it tensors (VeLoRA's projections)
            adapter_prefixes += [
                f"{here}{name}." for name in (*module.adapter_layer_names, *module.other_param_names)
            ]
        elif isinstance(module, ModulesToSaveWrapper):
            renames.append((f"{here}original_module.", here))
            adapter_prefixes.append(f"{here}modules_to_save.")
    renames.sort(key=lambda pair: -len(pair[0]))  # innermost wrapper first
    return renames, adapter_prefixes


def _original_key(key: str, renames: list[tuple[str, str]]) -> str:
    for wrapped, original in renames:
        if key.startswith(wrapped):
            key = original + key[len(wrapped) :]
    return key


def get_base_model_state_dict(model: PeftModel) -> dict[str, torch.Tensor]:
    """The transformers model's weights, without any adapter tensor, under its original keys."""
    base = model.get_base_model()
    renames, adapter_prefixes = _key_map(base)
    return {
        _original_key(key, renames): value
        for key, value in base.state_dict().items()
        if not any(key.startswith(prefix) for prefix in adapter_prefixes)
    }


def set_base_model_state_dict(
    model: PeftModel, state_dict: dict[str, torch.Tensor], strict: bool = True
) -> LoadResult:
    """Load base weights keyed as in the plain base model; the adapters keep their values.

    With ``strict`` a missing or unexpected key raises torch's RuntimeError naming the keys.
    """
    base = model.get_base_model()
    renames, adapter_prefixes = _key_map(base)
    current = base.state_dict(keep_vars=True)
    wrapped_by_original = {
        _original_key(key, renames): key
        for key in current
        if not any(key.startswith(p) for p in adapter_prefixes)
    }
    translated = {wrapped_by_original.get(key, key): value for key, value in state_dict.items()}
    adapters = {k: v for k, v in current.items() if any(k.startswith(p) for p in adapter_prefixes)}
    result = base.load_state_dict({**adapters, **translated}, strict=strict)
    originals = {wrapped: original for original, wrapped in wrapped_by_original.items()}
    return LoadResult(
        missing_keys=[originals.get(k, k) for k in result.missing_keys],
        unexpected_keys=list(result.unexpected_keys),
    )
