"""``get_layer_status`` / ``get_model_status``: what every adapter layer of a model is doing, for debugging.

A model whose layers disagree (one adapter active here, another there; some merged, some not)
behaves in surprising ways; these reports show it, with HF PEFT's fields, where a field that
differs between layers reads ``"irregular"``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from adapterlab.errors import InvalidConfig
from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper
from adapterlab.tuners.tuners_utils import BaseTunerLayer

Irregular = Literal["irregular"]


@dataclass
class TunerLayerStatus:
    name: str
    module_type: str
    enabled: bool
    active_adapters: list[str]
    merged_adapters: list[str]
    requires_grad: dict[str, bool | Irregular]
    available_adapters: list[str]
    devices: dict[str, list[str]]
    # HF PEFT's: the library that quantizes the base layer (bitsandbytes, ...); adapterlab adapts only
    # unquantized layers, so None unless a layer carries one
    quantization_backend: Any = None


@dataclass
class TunerModelStatus:
    base_model_type: str
    adapter_model_type: str
    peft_types: dict[str, str]
    trainable_params: int
    total_params: int
    num_adapter_layers: int
    enabled: bool | Irregular
    active_adapters: list[str] | Irregular
    merged_adapters: list[str] | Irregular
    requires_grad: dict[str, bool | Irregular]
    available_adapters: list[str]
    devices: dict[str, list[str]]
    quantization_backend: Any = None  # the layers' one, or "irregular" when they differ


def _agree(values: list[Any]) -> Any:
    """The one value all entries share, else "irregular"."""
    distinct = {repr(v): v for v in values}
    return next(iter(distinct.values())) if len(distinct) == 1 else "irregular"


def _per_adapter(layer: nn.Module) -> tuple[dict[str, list[bool]], dict[str, set[str]]]:
    grads: dict[str, list[bool]] = collections.defaultdict(list)
    devices: dict[str, set[str]] = collections.defaultdict(set)
    containers = [layer.modules_to_save] if isinstance(layer, ModulesToSaveWrapper) else layer._containers()
    for container in containers:
        for adapter, part in container.items():
            params = [part] if isinstance(part, nn.Parameter) else list(part.parameters())
            grads[adapter].extend(p.requires_grad for p in params)
            devices[adapter].update(p.device.type for p in params)
    return grads, devices


def get_layer_status(model: nn.Module) -> list[TunerLayerStatus]:
    """One entry per adapter layer of ``model`` (a PeftModel or a model with adapters injected)."""
    statuses = []
    # names relative to the tuner (``model.lin0``), as HF PEFT reports them
    root = model.base_model if _is_peft_model(model) else model
    for name, module in root.named_modules():
        # modules_to_save copies are part of the adapter too (HF PEFT lists them)
        if not isinstance(module, (BaseTunerLayer, ModulesToSaveWrapper)):
            continue
        grads, devices = _per_adapter(module)
        statuses.append(
            TunerLayerStatus(
                name=name,
                module_type=getattr(module, "layer_kind", type(module).__name__),
                enabled=not module.disable_adapters,
                active_adapters=list(module.active_adapters),
                merged_adapters=list(getattr(module, "merged_adapters", [])),
                requires_grad={a: _agree(v) if v else False for a, v in grads.items()},
                available_adapters=sorted(grads),
                devices={a: sorted(d) for a, d in devices.items()},
                quantization_backend=getattr(module, "quantization_backend", None),
            )
        )
    if not statuses:
        raise InvalidConfig(
            "No adapter layers found in the model; pass a PeftModel or a model with adapters injected"
        )
    return statuses


def _is_peft_model(model: nn.Module) -> bool:
    """A PeftModel, told by its class: this module sits below peft_model.py, which imports it."""
    return callable(getattr(type(model), "_is_tuner", None))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, all) parameters of ``model``, each shared tensor counted once."""
    trainable = total = 0
    for _, param in model.named_parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total


def get_model_status(model: nn.Module) -> TunerModelStatus:
    """The layers' statuses folded into one; a field on which layers disagree reads "irregular"."""
    if _is_peft_model(model):
        if not model._is_tuner():
            raise TypeError("get_model_status() needs adapter layers; prompt-learning methods have none")
        base_model_type = type(model.get_base_model()).__name__
        adapter_model_type = type(model.base_model).__name__
        peft_types = {name: str(config.peft_type) for name, config in model.peft_config.items()}
    else:
        base_model_type = type(model).__name__ if hasattr(model, "config") else "other"
        adapter_model_type, peft_types = "None", {}
    trainable, total = count_parameters(model)
    layers = get_layer_status(model)
    merged_anywhere = sorted({a for s in layers for a in s.merged_adapters})
    # an adapter merged in one layer and held unmerged in another leaves the model half-merged
    half_merged = any(
        set(merged_anywhere) & (set(s.available_adapters) - set(s.merged_adapters)) for s in layers
    )
    grads: dict[str, list[Any]] = collections.defaultdict(list)
    devices: dict[str, set[str]] = collections.defaultdict(set)
    for status in layers:
        for adapter, value in status.requires_grad.items():
            grads[adapter].append(value)
        for adapter, kinds in status.devices.items():
            devices[adapter].update(kinds)
    return TunerModelStatus(
        base_model_type=base_model_type,
        adapter_model_type=adapter_model_type,
        peft_types=peft_types,
        trainable_params=trainable,
        total_params=total,
        num_adapter_layers=len(layers),
        enabled=_agree([s.enabled for s in layers]),
        active_adapters=_agree([s.active_adapters for s in layers]),
        merged_adapters="irregular" if half_merged else merged_anywhere,
        requires_grad={a: _agree(v) for a, v in grads.items()},
        available_adapters=sorted({a for s in layers for a in s.available_adapters}),
        devices={a: sorted(d) for a, d in devices.items()},
        quantization_backend=_agree([s.quantization_backend for s in layers]),
    )
