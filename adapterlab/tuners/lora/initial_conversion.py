"""Saving a PiSSA/OLoRA adapter as a plain LoRA (HF PEFT's ``path_initial_model_for_weight_conversion``).

PiSSA and OLoRA start from ``W = W_res + B0 A0``: they move part of the base weight into the
adapter, so a trained adapter ``B A`` only works on the residual base ``W_res``, not on the
original model. Its change to the original is ``B A - B0 A0``, which is itself a LoRA of twice the
rank: ``[B | -B0] @ [A ; A0]``. Given the adapter saved right after initialization (``B0``, ``A0``),
the saved file holds that doubled-rank LoRA, and its config doubles ``r`` and ``lora_alpha`` (alpha
times sqrt(2) with rsLoRA) so the scaling stays the same; it then applies to the untouched base model.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable

import torch

from adapterlab.checkpoint import read_adapter_weights
from adapterlab.config import PeftConfig, PeftType
from adapterlab.errors import CheckpointError, InvalidConfig


def check_convertible(config: PeftConfig) -> None:
    """Raise InvalidConfig when the adapter of ``config`` cannot be saved as a converted LoRA."""
    if config.peft_type != PeftType.LORA:
        raise InvalidConfig(
            f"path_initial_model_for_weight_conversion converts LoRA adapters (PiSSA, OLoRA), not "
            f"{config.peft_type}; drop the argument"
        )
    if config.use_rslora and (config.rank_pattern or config.alpha_pattern):
        # rsLoRA's scaling alpha / sqrt(r) cannot be kept per module by doubling both patterns
        raise InvalidConfig(
            "Passing `path_initial_model_for_weight_conversion` to `save_pretrained` is not supported when "
            "using `rank_pattern` or `alpha_pattern` at the same time as `use_rslora=True`; save without "
            "the conversion, or train without rsLoRA or the patterns"
        )
    init = str(config.init_lora_weights).lower()
    if not (init.startswith("pissa") or init in ("olora", "true")):
        warnings.warn(
            "`path_initial_model_for_weight_conversion` only works for converting a PiSSA/OLoRA adapter to a "
            f"LoRA adapter; this one has init_lora_weights={config.init_lora_weights!r}",
            UserWarning,
            stacklevel=4,
        )


def converter(
    path: str | os.PathLike[str], configs: list[PeftConfig]
) -> Callable[[dict[str, torch.Tensor], PeftConfig], tuple[dict[str, torch.Tensor], PeftConfig]]:
    """Check that the adapters of ``configs`` can be converted, read the initial adapter saved at
    ``path`` (``B0``, ``A0``), and return what turns an adapter's tensors and config into the plain
    LoRA's (for :func:`adapterlab.checkpoint.save_adapters`)."""
    for config in configs:
        check_convertible(config)
    initial = read_adapter_weights(path)
    return lambda tensors, config: (converted_tensors(tensors, initial, path), converted_config(config))


def converted_tensors(
    tensors: dict[str, torch.Tensor], initial: dict[str, torch.Tensor], path: str | os.PathLike[str]
) -> dict[str, torch.Tensor]:
    """``tensors`` with each LoRA A stacked over its initial A0 and each B beside its initial -B0."""
    missing = [key for key in tensors if ("lora_A" in key or "lora_B" in key) and key not in initial]
    if missing:
        raise CheckpointError(
            f"the initial adapter in {path} lacks {missing[0]!r}; pass the folder the adapter was saved to "
            "right after get_peft_model"
        )
    result = dict(tensors)
    for key, value in tensors.items():
        if "lora_A" in key:
            result[key] = torch.cat([value, initial[key].to(value)], dim=0)  # (2r, in, ...)
        elif "lora_B" in key and key.endswith(".weight"):
            result[key] = torch.cat([value, -initial[key].to(value)], dim=1)  # (out, 2r, ...)
    return result


def converted_config(config: PeftConfig) -> PeftConfig:
    """A copy of ``config`` for the converted file: a plain LoRA of twice the rank, same scaling."""
    result = copy.deepcopy(config)
    result.init_lora_weights = True
    result.r *= 2
    result.lora_alpha *= 2**0.5 if result.use_rslora else 2
    result.rank_pattern = {key: 2 * value for key, value in result.rank_pattern.items()}
    result.alpha_pattern = {key: 2 * value for key, value in result.alpha_pattern.items()}
    return result
