"""``add_weighted_adapter``: a new LoRA adapter made from a weighted mix of existing ones.

- ``linear``: same rank everywhere; A and B are weighted sums, with sqrt(|w * scaling|) on each
  side (the sign on A), so a single adapter reproduces ``w * B @ A * scaling`` exactly.
- ``cat``: stacks the adapters' ranks (new r = sum of ranks): ``B_cat @ A_cat = sum_i w_i s_i B_i A_i``.
- ``svd``: the weighted sum of full updates ``sum_i w_i * delta_i``, truncated by SVD to ``svd_rank``
  (default: the largest rank).
The new adapter has ``lora_alpha = r``, i.e. scaling 1, as in Hugging Face PEFT.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import TYPE_CHECKING

import torch

from adapterlab.errors import AdapterExists, AdapterNotFound, InvalidConfig, UnsupportedFeature
from adapterlab.tuners.lora.conv import Conv
from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper

if TYPE_CHECKING:
    from adapterlab.tuners.lora.layer import LoraLayer
    from adapterlab.tuners.lora.model import LoraModel

COMBINATIONS = ("linear", "cat", "svd")


def _new_rank(model: LoraModel, adapters: list[str], combination_type: str, svd_rank: int | None) -> int:
    ranks = [
        max(c.r, *c.rank_pattern.values()) if c.rank_pattern else c.r
        for c in (model.peft_config[a] for a in adapters)
    ]
    if combination_type == "linear":
        if len(set(ranks)) != 1:
            raise InvalidConfig(
                f"combination_type 'linear' needs adapters of one rank, got ranks {ranks}; use 'cat' or 'svd'"
            )
        return ranks[0]
    if combination_type == "cat":
        return sum(ranks)
    return svd_rank or max(ranks)


def _union_targets(model: LoraModel, adapters: list[str]) -> list[str] | str:
    targets = [model.peft_config[a].target_modules for a in adapters]
    if all(isinstance(t, str) for t in targets):
        return "|".join(f"({t})" for t in targets)
    if any(isinstance(t, str) for t in targets):
        raise InvalidConfig("cannot combine adapters whose target_modules mix a regex and a list of names")
    return sorted(set().union(*targets))


def _check(model: LoraModel, adapters: list[str], weights: list[float], adapter_name: str, kind: str) -> None:
    if adapter_name in model.peft_config:
        raise AdapterExists(f"an adapter named {adapter_name!r} already exists; pick another name")
    missing = [a for a in adapters if a not in model.peft_config]
    if missing:
        raise AdapterNotFound(
            f"no adapter named {', '.join(map(repr, missing))}; loaded: {', '.join(model.peft_config)}"
        )
    if kind not in COMBINATIONS:
        raise InvalidConfig(f"combination_type must be one of {', '.join(COMBINATIONS)}, got {kind!r}")
    if not adapters or len(adapters) != len(weights):
        raise InvalidConfig(f"give one weight per adapter: {len(adapters)} adapters, {len(weights)} weights")
    if any(model.peft_config[a].target_parameters for a in adapters):
        raise UnsupportedFeature("add_weighted_adapter cannot combine adapters that use target_parameters")
    if any(model.peft_config[a].use_dora for a in adapters):
        raise InvalidConfig("add_weighted_adapter cannot combine DoRA adapters")
    # their updates are not B @ A: KaSA has a diagonal between, BD-LoRA stores blocks
    if any(model.peft_config[a].kasa_config or model.peft_config[a].use_bdlora for a in adapters):
        raise UnsupportedFeature("add_weighted_adapter cannot combine KaSA or BD-LoRA adapters")
    if any(isinstance(layer, Conv) and any(a in layer.r for a in adapters) for layer in model.lora_layers()):
        raise UnsupportedFeature("add_weighted_adapter cannot combine adapters on convolution layers")
    shared = [w for w in _wrappers(model) if sum(a in w.modules_to_save for a in adapters) > 1]
    if shared:
        raise InvalidConfig(
            "Cannot add weighted adapters if they target the same module with modules_to_save, but found "
            f"{len(shared)} such instance(s). Fully trained copies cannot be mixed: combine adapters of "
            "which at most one trains each module"
        )


def _wrappers(model: LoraModel) -> list[ModulesToSaveWrapper]:
    return [m for m in model.model.modules() if isinstance(m, ModulesToSaveWrapper)]


def _copy_modules_to_save(model: LoraModel, adapters: list[str], adapter_name: str) -> None:
    """The new adapter takes over the trained copies of the one adapter (at most, see _check) that
    has a modules_to_save copy of each module."""
    for wrapper in _wrappers(model):
        source = next((a for a in adapters if a in wrapper.modules_to_save), None)
        if source is not None:
            wrapper.modules_to_save[adapter_name] = copy.deepcopy(wrapper.modules_to_save[source])


def add_weighted_adapter(
    model: LoraModel,
    adapters: list[str],
    weights: list[float],
    adapter_name: str,
    combination_type: str = "svd",
    svd_rank: int | None = None,
) -> None:
    _check(model, adapters, weights, adapter_name, combination_type)
    kind = "linear" if len(adapters) == 1 else combination_type
    rank = _new_rank(model, adapters, kind, svd_rank)
    model.peft_config[adapter_name] = dataclasses.replace(
        model.peft_config[adapters[0]],
        r=rank,
        lora_alpha=rank,
        target_modules=_union_targets(model, adapters),
        rank_pattern={},
        alpha_pattern={},
        modules_to_save=list(
            dict.fromkeys(m for a in adapters for m in model.peft_config[a].modules_to_save or [])
        )
        or None,
    )
    model.inject_adapter(model.peft_config[adapter_name], adapter_name)
    for layer in model.lora_layers():
        if adapter_name in layer.r:
            a, b = _combine(
                layer, [(n, w) for n, w in zip(adapters, weights, strict=True) if n in layer.r], kind, rank
            )
            target_a, target_b = _factors(layer, adapter_name)
            target_a.copy_(a)
            target_b.copy_(b)
    _copy_modules_to_save(model, adapters, adapter_name)
    model.refresh_trainable()


def _factors(layer: LoraLayer, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of adapter ``name`` as (r, in) and (out, r) tensors, whatever the layer type."""
    if name in layer.lora_A:
        return layer.lora_A[name].weight, layer.lora_B[name].weight
    return layer.lora_embedding_A[name], layer.lora_embedding_B[name]


def _combine(
    layer: LoraLayer, parts: list[tuple[str, float]], kind: str, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if not parts:
        raise InvalidConfig("none of the adapters to combine covers this layer")
    if kind == "svd":
        delta = sum(w * layer.lora_weight(n) * layer.scaling[n] for n, w in parts)  # (out, in)
        u, s, vh = torch.linalg.svd(delta, full_matrices=True)
        return vh[:rank, :], u[:, :rank] @ torch.diag(s[:rank])
    if kind == "cat":
        a = torch.cat([_factors(layer, n)[0] * w * layer.scaling[n] for n, w in parts], dim=0)
        b = torch.cat([_factors(layer, n)[1] for n, _ in parts], dim=1)
        target_a, target_b = a.new_zeros(rank, a.shape[1]), b.new_zeros(b.shape[0], rank)
        target_a[: a.shape[0]] = a
        target_b[:, : b.shape[1]] = b
        return target_a, target_b
    a = sum(
        math.copysign(math.sqrt(abs(w * layer.scaling[n])), w * layer.scaling[n]) * _factors(layer, n)[0]
        for n, w in parts
    )
    b = sum(math.sqrt(abs(w * layer.scaling[n])) * _factors(layer, n)[1] for n, w in parts)
    return a, b
