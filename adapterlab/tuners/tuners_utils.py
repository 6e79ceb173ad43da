"""What every adapter layer shares, under the names HF PEFT's users import from ``peft.tuners.tuners_utils``.

:class:`BaseTunerLayer` is the common base of the layers that hold adapters inside a base model
(every LoRA layer): scripts and libraries find them with ``isinstance(module, BaseTunerLayer)``
and then read which adapters are active or merged, switch them on and off, or reach the layer
they wrap. Method-specific work (the forward, merging) stays in each method's own layer class.
A layer declares its adapter tensors in ``adapter_layer_names`` (containers keyed by adapter
name), so trainability is decided by structure, never by matching parameter names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

# HF PEFT's private name for it, which its tests and some libraries import from here
from adapterlab.tuners.minimal_targets import find_minimal_target_modules as _find_minimal_target_modules
from adapterlab.tuners.mixed_batch import AdapterLayer

# what get_model_config reports for a model without a config (HF PEFT's value)
DUMMY_MODEL_CONFIG: dict[str, Any] = {"model_type": "custom"}

__all__ = [
    "DUMMY_MODEL_CONFIG",
    "BaseTuner",
    "BaseTunerLayer",
    "_find_minimal_target_modules",
    "_get_submodules",
    "check_target_module_exists",
]


class BaseTunerLayer:
    """Mixin of every adapter-holding layer; the layer keeps the module it adapts as ``base_layer``.

    The layer class sets ``active_adapters`` (a list), ``merged_adapters`` (a list) and
    ``disable_adapters`` (a bool) in its ``__init__``.
    """

    # names of the ModuleDict/ParameterDict attributes that hold trainable adapter tensors by adapter name
    adapter_layer_names: tuple[str, ...] = ()
    # names of the other per-adapter attributes (dicts keyed by adapter name: rank, scaling, ...)
    other_param_names: tuple[str, ...] = ()
    # per adapter, names of adapter_layer_names containers whose tensor never trains (HF PEFT's name)
    frozen_peft_weight_names: Mapping[str, tuple[str, ...]] = MappingProxyType({})
    # HF PEFT's storage, which its tests and some scripts set directly: a name or a list of names
    _active_adapter: str | list[str]
    merged_adapters: list[str]
    disable_adapters: bool

    @property
    def layer_kind(self) -> str:
        """HF PEFT's name for the kind of layer, ``"<method>.<class>"`` (``"lora.Linear"``), as
        ``get_layer_status`` reports it."""
        return type(self).__name__

    def get_base_layer(self) -> nn.Module:
        """The module this layer adapts (through any nesting of adapter layers)."""
        base: Any = self
        while hasattr(base, "base_layer"):
            base = base.base_layer
        return base

    @property
    def weight(self) -> torch.Tensor:
        return self.get_base_layer().weight

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.get_base_layer(), "bias", None)

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    @property
    def active_adapters(self) -> list[str]:
        """The names of this layer's active adapters."""
        active = self._active_adapter
        return [active] if isinstance(active, str) else active

    @active_adapters.setter
    def active_adapters(self, names: list[str]) -> None:
        self._active_adapter = list(names)

    @property
    def active_adapter(self) -> str | list[str]:
        """The active adapter's name; a list when several are active (HF PEFT's convention)."""
        return self.active_adapters[0] if len(self.active_adapters) == 1 else list(self.active_adapters)

    def enable_adapters(self, enabled: bool) -> None:
        """Switch this layer's adapters on or off; off also stops their training."""
        self.disable_adapters = not enabled
        if enabled:
            self.set_requires_grad(self.active_adapters, True)
        else:
            for name in self._adapter_names():
                self.set_requires_grad([name], False)

    def set_adapter(self, adapter_names: str | list[str]) -> None:
        """Make ``adapter_names`` this layer's active adapters; only they train."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        for name in self._adapter_names():
            self.set_requires_grad([name], name in names)
        self.active_adapters = names

    def set_requires_grad(self, adapter_names: str | list[str], requires_grad: bool = True) -> None:
        """Turn training of the named adapters' tensors in this layer on or off."""
        names = [adapter_names] if isinstance(adapter_names, str) else adapter_names
        for attr in self.adapter_layer_names:
            container = getattr(self, attr, {})
            for name in names:
                if name in container:  # a tensor the adapter's method keeps frozen stays so (MiCA's B)
                    frozen = attr in self.frozen_peft_weight_names.get(name, ())
                    container[name].requires_grad_(requires_grad and not frozen)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """Every adapter tensor this layer holds, of every adapter."""
        params: list[nn.Parameter] = []
        for container in self._containers():
            for part in container.values():
                params.extend([part] if isinstance(part, nn.Parameter) else part.parameters())
        return params

    def _containers(self) -> list[Any]:
        return [getattr(self, name) for name in self.adapter_layer_names if hasattr(self, name)]

    def _all_available_adapter_names(self) -> list[str]:
        """Every adapter this layer holds (HF PEFT's name)."""
        return self._adapter_names()

    def _adapter_names(self) -> list[str]:
        return list(dict.fromkeys(name for container in self._containers() for name in container))


def _get_submodules(model: nn.Module, key: str) -> tuple[nn.Module, nn.Module, str]:
    """HF PEFT's helper: ``(parent, module, child name)`` of the module at dotted path ``key``."""
    parent_name, _, target_name = key.rpartition(".")
    return model.get_submodule(parent_name), model.get_submodule(key), target_name


class BaseTuner:
    """Mixin of the models that put adapter layers into a base model (``LoraModel``), HF PEFT's ``BaseTuner``.

    List it before ``nn.Module`` in the bases. The tuner keeps the transformers model as ``model`` and
    the active adapters' names as ``active_adapters``; a name the tuner lacks is looked up on ``model``
    (``tuner.lin0``, ``tuner.config``), as in HF PEFT.
    """

    model: nn.Module
    active_adapters: list[str]

    @staticmethod
    def get_model_config(model: nn.Module) -> dict[str, Any]:
        """HF PEFT's helper: ``model.config`` as a dict (from ``to_dict()``, a dataclass or a dict), or
        ``DUMMY_MODEL_CONFIG`` for a model without one (a plain ``nn.Module``)."""
        config = getattr(model, "config", None)
        if config is None:
            return dict(DUMMY_MODEL_CONFIG)
        if hasattr(config, "to_dict"):
            return config.to_dict()
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            return dataclasses.asdict(config)
        return config

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # type: ignore[misc]  # nn.Module's: parameters, submodules
        except AttributeError:
            if name.startswith("__") or name == "model" or "_modules" not in self.__dict__:
                raise
            return getattr(self.model, name)

    @property
    def active_adapters(self) -> list[str]:
        """The names of this layer's active adapters."""
        active = self._active_adapter
        return [active] if isinstance(active, str) else active

    @active_adapters.setter
    def active_adapters(self, names: list[str]) -> None:
        self._active_adapter = list(names)

    @property
    def active_adapter(self) -> str | list[str]:
        """The active adapter's name; a list when several are active (HF PEFT's convention)."""
        return self.active_adapters[0] if len(self.active_adapters) == 1 else list(self.active_adapters)

    def adapter_holding_layers(self) -> list[nn.Module]:
        """Every layer of the model that holds adapters: tuner layers and ``modules_to_save`` wrappers."""
        from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper

        return [m for m in self.model.modules() if isinstance(m, (BaseTunerLayer, ModulesToSaveWrapper))]

    def enable_adapter_layers(self) -> None:
        """Switch every adapter layer back on (after ``disable_adapter_layers``)."""
        self._set_layers_enabled(True)

    def disable_adapter_layers(self) -> None:
        """Switch every adapter layer off until ``enable_adapter_layers``: the model runs as the base
        model."""
        self._set_layers_enabled(False)

    def _set_layers_enabled(self, enabled: bool) -> None:
        for layer in self.adapter_holding_layers():
            if isinstance(layer, BaseTunerLayer):
                layer.enable_adapters(enabled)
            else:  # a modules_to_save wrapper: its active copy trains only while enabled, as LoRA's tensors
                layer.disable_adapters = not enabled
                if layer.active_adapter is not None:
                    layer.modules_to_save[layer.active_adapter].requires_grad_(enabled)


def check_target_module_exists(config: Any, key: str) -> bool:
    """HF PEFT's helper: whether ``config`` (its ``target_modules``, ``layers_to_transform``,
    ``exclude_modules``) adapts the module named ``key``."""
    from adapterlab.tuners.targeting import is_target

    return config.target_modules is not None and is_target(config, config.target_modules, key)


# -- which state-dict keys belong to the adapters, found from the model's structure ---------------
# Everything an adapter layer holds besides the layer it wraps (``base_layer``) is the adapter's:
# ``lora_A``, ``lora_B``, ``lora_dropout``, the DoRA magnitudes. Collecting those attribute paths as
# prefixes and keeping the keys under one (at a ``.`` boundary) selects the adapter's entries of
# ``model.state_dict()``, and never a base module that merely has ``lora_`` in its name.

# the wrapped module: on an adapter layer its base layer, on a tuner the whole base model
_WRAPPED = ("base_layer", "model")


def _own_attribute_prefixes(module: nn.Module, module_name: str, adapter_name: str | None) -> set[str]:
    names = [n for n, _ in module.named_children()]
    names += [n for n, _ in module.named_parameters(recurse=False)]
    names += [n for n, _ in module.named_buffers(recurse=False)]
    prefixes = set()
    for name in names:
        if name in _WRAPPED:
            continue
        prefix = f"{module_name}.{name}" if module_name else name
        child = getattr(module, name)
        if adapter_name is not None and isinstance(child, (nn.ModuleDict, nn.ParameterDict)):
            if adapter_name in child:  # a container keyed by adapter name: only that adapter's entry
                prefixes.add(f"{prefix}.{adapter_name}")
        else:
            prefixes.add(prefix)
    return prefixes


def tuner_state_dict_key_prefixes(model: nn.Module, adapter_name: str | None = None) -> set[str]:
    """The key prefixes of everything the adapter layers (and the tuner) hold in ``model`` (a PeftModel
    or a model with adapters injected); with ``adapter_name``, only that adapter's entries. The
    ``modules_to_save`` and trainable-token wrappers are left out: they are saved their own way."""
    prefixes: set[str] = set()
    auxiliary: set[str] = set()
    for name, module in model.named_modules():  # parents come before their children
        if isinstance(module, AdapterLayer) and not isinstance(module, BaseTunerLayer):  # those wrappers
            auxiliary.add(name)
        elif isinstance(module, BaseTuner) or (
            isinstance(module, BaseTunerLayer) and not key_under_prefixes(name, auxiliary)
        ):
            prefixes |= _own_attribute_prefixes(module, name, adapter_name)
    return prefixes


def key_under_prefixes(key: str, prefixes: set[str]) -> bool:
    """Whether ``key`` equals one of ``prefixes`` or lies under one: ``a.b`` covers ``a.b.c``, not
    ``a.bc``."""
    while True:
        if key in prefixes:
            return True
        key, dot, _ = key.rpartition(".")
        if not dot:
            return False


def filter_state_dict_by_key_prefixes(state_dict: dict[str, Any], prefixes: set[str]) -> dict[str, Any]:
    """The entries of ``state_dict`` under one of ``prefixes``."""
    return {key: value for key, value in state_dict.items() if key_under_prefixes(key, prefixes)}


# HF PEFT's (private) names for the two helpers, which its tests and some scripts import from here
_get_tuner_state_dict_key_prefixes = tuner_state_dict_key_prefixes
_filter_state_dict_by_key_prefixes = filter_state_dict_by_key_prefixes
