"""Hotswapping: replace a loaded LoRA adapter's weights in place with another adapter's (HF PEFT's
``peft.utils.hotswap``).

Loading a second adapter and switching to it adds modules; hotswapping instead copies the new
weights into the tensors the first adapter already has, so a ``torch.compile``-d model runs the new
adapter without recompiling. That needs the scalings to be tensors (a changed float would be a new
constant to the compiler) and every rank to fit the tensors: :func:`prepare_model_for_compiled_hotswap`
does both, before compiling, by turning scalings into tensors and zero-padding ranks
(:mod:`adapterlab.tuners.lora.rank_padding`).
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any, Literal

import torch
from torch import nn

from adapterlab.checkpoint import load_peft_weights
from adapterlab.config import PeftConfig, PeftType
from adapterlab.errors import AdapterNotFound, HotswapMismatch, InvalidConfig
from adapterlab.tuners.lora.config import LoraConfig
from adapterlab.tuners.lora.layer import LoraLayer, lora_scaling
from adapterlab.tuners.lora.rank_padding import (
    RANK_ROLES,
    check_target_rank,
    groups_of,
    pad_layer,
    pad_rank,
    rank_of,
)
from adapterlab.tuners.targeting import pattern_value

__all__ = ["hotswap_adapter", "hotswap_adapter_from_state_dict", "prepare_model_for_compiled_hotswap"]

# options that change what the same weights compute: two adapters must agree on them to swap
MUST_MATCH = ("use_rslora", "lora_dropout", "alpha_pattern", "use_dora")
# a key's LoRA tensor name, where the adapter name goes in (``lora_A.weight`` -> ``lora_A.x.weight``)
LORA_TENSOR = re.compile(r"\.(lora_(?:A|B|embedding_A|embedding_B|magnitude_vector))(?=\.|$)")


def _is_compiled(model: nn.Module) -> bool:
    return hasattr(model, "_orig_mod") or bool(getattr(model, "_compiled_call_impl", False))


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model under a ``torch.compile`` wrapper (whose state-dict keys start with ``_orig_mod.``)."""
    return getattr(model, "_orig_mod", model)


def prepare_model_for_compiled_hotswap(
    model: nn.Module,
    *,
    target_rank: int | None = None,
    config: LoraConfig | dict[str, LoraConfig] | None = None,
    check_compiled: Literal["error", "warn", "ignore"] = "error",
) -> None:
    """Make ``model``'s LoRA adapters hotswappable once compiled: scalings become tensors and, with
    ``target_rank``, every adapter is zero-padded to that rank (the largest of the adapters to come).
    ``config`` (a config or ``model.peft_config``) gets ``r`` and its ``rank_pattern`` set to the
    target rank. Call it after loading the first adapter and before ``torch.compile``."""
    if check_compiled not in ("error", "warn", "ignore"):
        raise InvalidConfig(
            f"check_compiles should be one of 'error', 'warn', or 'ignore', got '{check_compiled}' instead."
        )
    if _is_compiled(model) and check_compiled == "error":
        raise InvalidConfig(
            "Call prepare_model_for_compiled_hotswap *before* compiling the model: the model is already "
            "compiled (or pass check_compiled='warn' to prepare it anyway, at the cost of a recompilation)"
        )
    if _is_compiled(model) and check_compiled == "warn":
        warnings.warn(
            "prepare_model_for_compiled_hotswap was called with a model that is already compiled; it will "
            "probably recompile. Call it before compiling the model",
            UserWarning,
            stacklevel=2,
        )
    layers = {path: m for path, m in model.named_modules() if isinstance(m, LoraLayer) and m.adapter_names}
    if not layers:
        raise AdapterNotFound(
            "No adapter layers found on the model; call prepare_model_for_compiled_hotswap after loading the "
            "first adapter (and before loading the next)"
        )
    if target_rank is not None:
        for path, layer in layers.items():  # all checks first: nothing is padded unless all can be
            check_target_rank(layer, path, target_rank)
    for layer in layers.values():
        for name, value in layer.scaling.items():
            device = next(iter(layer.lora_A.parameters()), layer.base_layer.weight).device
            layer.scaling[name] = torch.as_tensor(float(value), device=device)
        if target_rank is not None:
            pad_layer(layer, target_rank)
    if target_rank is not None and config is not None:
        for lora_config in config.values() if isinstance(config, dict) else [config]:
            lora_config.r = target_rank
            lora_config.rank_pattern = dict.fromkeys(lora_config.rank_pattern, target_rank)


def check_hotswap_configs_compatible(config0: PeftConfig, config1: PeftConfig) -> None:
    """Raise HotswapMismatch unless an adapter of ``config1`` can replace one of ``config0``."""
    if config0.peft_type != config1.peft_type:
        raise HotswapMismatch(
            f"Incompatible PEFT types found: {PeftType(config0.peft_type).value} and "
            f"{PeftType(config1.peft_type).value}; only an adapter of the same method can be hotswapped in"
        )
    if config0.peft_type != PeftType.LORA:
        raise HotswapMismatch(
            f"Hotswapping only supports LORA but {PeftType(config0.peft_type).value} was passed"
        )
    for key in MUST_MATCH:
        if getattr(config0, key) != getattr(config1, key):
            raise HotswapMismatch(
                f"Configs are incompatible: for {key}, {getattr(config0, key)!r} != "
                f"{getattr(config1, key)!r}; load the adapter with load_adapter instead of hotswapping it"
            )


def hotswap_adapter(
    model: nn.Module,
    model_name_or_path: str | os.PathLike[str],
    adapter_name: str,
    torch_device: str | torch.device | None = None,
    **kwargs: Any,
) -> None:
    """Replace the weights (and scalings) of the loaded LoRA adapter ``adapter_name`` of ``model`` (a
    ``PeftModel``, compiled or not) with those of the adapter saved at ``model_name_or_path``; the name
    stays. ``kwargs``: ``subfolder`` and the Hub options, as for ``PeftModel.from_pretrained``."""
    config = PeftConfig.from_pretrained(model_name_or_path, **kwargs)
    check_hotswap_configs_compatible(_unwrapped(model).peft_config[adapter_name], config)
    weights = load_peft_weights(model_name_or_path, device=torch_device, **kwargs)
    state_dict = {LORA_TENSOR.sub(rf".\1.{adapter_name}", key, count=1): t for key, t in weights.items()}
    hotswap_adapter_from_state_dict(model, state_dict, adapter_name, config)


@torch.no_grad()
def hotswap_adapter_from_state_dict(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    adapter_name: str,
    config: LoraConfig,
    parameter_prefix: str = "lora_",
) -> None:
    """Copy ``state_dict`` (keys as in ``model.state_dict()``, the adapter name included) into adapter
    ``adapter_name``'s tensors in place; its tensors the state dict lacks are zeroed. A rank up to the
    held one is zero-padded into the held tensors; a larger one replaces them, except in a compiled
    model (pad ranks first with :func:`prepare_model_for_compiled_hotswap`). Raises HotswapMismatch
    (a RuntimeError) when the state dict holds tensors the adapter has not."""
    inner = _unwrapped(model)
    held = {
        key: tensor
        for key, tensor in inner.state_dict(keep_vars=True).items()
        if parameter_prefix in key and adapter_name in key.split(".")
    }
    unexpected = [key for key in state_dict if key not in held]
    if unexpected:
        raise HotswapMismatch(
            f"Hot swapping the adapter did not succeed, unexpected keys found: {', '.join(unexpected)}; "
            "the new adapter targets layers the loaded one does not"
        )
    layers = {key: _layer_of(inner, key) for key in state_dict}
    plans = {
        key: _placement(held[key], new, key, layers[key], _is_compiled(model))
        for key, new in state_dict.items()
    }
    for key in held.keys() - state_dict.keys():
        held[key].zero_()
    for key, new in state_dict.items():
        layer = layers[key]
        path = key.partition(f".{LORA_TENSOR.search(key).group(1)}")[0]
        rank = pattern_value(config.rank_pattern, path, config.r)
        alpha = pattern_value(config.alpha_pattern, path, config.lora_alpha)
        _set_scaling(layer, adapter_name, rank, alpha, config.use_rslora)
        target = held[key]
        if plans[key] == "replace":
            target.data = new.to(device=target.device, dtype=target.dtype)
        else:
            target.copy_(plans[key])


def _layer_of(model: nn.Module, key: str) -> LoraLayer:
    match = LORA_TENSOR.search(key)
    return model.get_submodule(key[: match.start()])


def _placement(
    held: torch.Tensor, new: torch.Tensor, key: str, layer: LoraLayer, compiled: bool
) -> torch.Tensor | str:
    """What to copy into ``held`` for ``new`` (``new`` itself, or zero-padded), or "replace" when
    ``held`` must take ``new``'s larger shape; checked before anything is changed."""
    new = new.to(device=held.device, dtype=held.dtype)
    if new.shape == held.shape:
        return new
    role = RANK_ROLES.get(LORA_TENSOR.search(key).group(1))
    dim = 0 if role == "A" else 1
    if role is None or new.shape[:dim] + new.shape[dim + 1 :] != held.shape[:dim] + held.shape[dim + 1 :]:
        raise HotswapMismatch(
            f"Incompatible shapes found for {key}: {tuple(held.shape)} vs {tuple(new.shape)}; the adapters "
            "were made for different base models"
        )
    groups = groups_of(layer)
    held_rank, new_rank = rank_of(held, role, groups), rank_of(new, role, groups)
    if new_rank <= held_rank:
        return pad_rank(new, role, held_rank, groups)
    if not compiled:
        return "replace"
    raise HotswapMismatch(
        f"Incompatible shapes found for LoRA weights {key}: {tuple(held.shape)} vs {tuple(new.shape)}; pad "
        "all ranks to the largest one with prepare_model_for_compiled_hotswap(model, target_rank=...) "
        "before compiling"
    )


def _set_scaling(layer: LoraLayer, name: str, rank: int, alpha: float, use_rslora: bool) -> None:
    """Give adapter ``name`` of ``layer`` the new adapter's rank, alpha and scaling; a tensor scaling
    (prepared for compilation) is filled in place, so the compiled graph sees the new value."""
    layer.r[name], layer.lora_alpha[name] = rank, alpha
    scaling = lora_scaling(alpha, rank, use_rslora)
    if isinstance(layer.scaling[name], torch.Tensor):
        layer.scaling[name].fill_(scaling)
    else:
        layer.scaling[name] = scaling
