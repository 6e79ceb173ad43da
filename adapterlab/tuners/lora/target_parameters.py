"""Which parameters ``LoraConfig.target_parameters`` names, and the ParamWrapper layers that adapt them.

The matching is Hugging Face PEFT's, so one ``adapter_config.json`` adapts the same weights in both
libraries: a parameter's name is its module's path (read without the ``base_layer`` steps that
adapter layers insert) and its own name, ``model.layers.0.mlp.experts.gate_up_proj``; an entry
matches a name it equals or ends (after a dot). Parameters of the top-level module cannot be
adapted (the wrapper has to replace the module that holds them), nor those of a module that
``target_modules`` adapts. All adapters of a model that use ``target_parameters`` name the same
ones: where a weight sits in the nesting of wrappers decides its checkpoint key.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.nn.utils import parametrize

from adapterlab.errors import InvalidConfig, TargetModuleNotFound, UnsupportedFeature
from adapterlab.tuners.lora.layer import LoraLayer
from adapterlab.tuners.lora.param_wrapper import ParamWrapper, check_shape

WRAPPED = ".base_layer"


@dataclass(frozen=True)
class ParameterTarget:
    place: str  # where the module (or its outermost wrapper) sits in the model
    parameter: str  # the parameter's name on the module
    key: str  # the full name matched (and looked up in rank_pattern / alpha_pattern)


def _unwrapped(path: str) -> str:
    return ".".join(part for part in path.split(".") if part != "base_layer")


def _parameter_names(module: nn.Module) -> list[str]:
    """The module's own parameters in registration order, then those under a parametrization."""
    names = [name for name, _ in module.named_parameters(recurse=False)]
    if parametrize.is_parametrized(module):
        names += list(module.parametrizations)
    return names


def _matches(entries: list[str], key: str) -> bool:
    return key in entries or any(key.endswith(f".{entry}") for entry in entries)


def parameter_targets(
    model: nn.Module, config: Any, adapter_name: str, peft_config: dict[str, Any], module_targets: list[str]
) -> list[ParameterTarget]:
    """The parameters adapter ``adapter_name`` (``config``) adapts, all checked before anything changes;
    ``module_targets`` are the modules it adapts through ``target_modules``."""
    if not config.target_parameters:
        return []
    _check_same_parameters(config, adapter_name, peft_config)
    return find_parameter_targets(model, config.target_parameters, module_targets)


def parameters_settle_targets(
    config: Any, targets: list[str] | str, module_keys: list[str], found: list[ParameterTarget]
) -> bool:
    """HF PEFT's rules when ``target_parameters`` is set: an adapter that adapts something only warns
    about the half (modules or parameters) that matched nothing; one that adapts nothing is refused.
    True when the parameters found make the module check (check_all_targets_found) moot."""
    if not config.target_parameters:
        return False
    if not found:
        if not targets:
            raise TargetModuleNotFound(
                "No `target_modules` passed but also no `target_parameters` found. Please check the values "
                f"for these arguments. target_parameters {config.target_parameters} match no parameter of "
                "the base model; name parameters as '<module path or its end>.<parameter>', e.g. "
                "'experts.gate_up_proj'"
            )
        if module_keys:
            warnings.warn(
                f"target_parameters={config.target_parameters} were set but no parameter was matched.",
                RuntimeWarning,
                stacklevel=4,
            )
        return False
    if targets and not module_keys:
        shown = set(targets) if isinstance(targets, list) else targets  # HF PEFT's config holds a set
        warnings.warn(
            f"target_modules={shown} were set but no module was matched.", RuntimeWarning, stacklevel=4
        )
        return True
    return False


def _check_same_parameters(config: Any, adapter_name: str, peft_config: dict[str, Any]) -> None:
    for other_name, other in peft_config.items():
        theirs = getattr(other, "target_parameters", None)
        if other_name != adapter_name and theirs and set(theirs) != set(config.target_parameters):
            raise InvalidConfig(
                "all adapters must target the same set of parameters (target_parameters): the new adapter "
                f"names {sorted(config.target_parameters)}, adapter {other_name!r} names {sorted(theirs)}; "
                "give both the same list"
            )


def find_parameter_targets(
    model: nn.Module, entries: list[str], module_targets: list[str]
) -> list[ParameterTarget]:
    """Every parameter of ``model`` that ``entries`` name, each checked (see _check_wrappable)."""
    layers = [path for path, module in model.named_modules() if isinstance(module, LoraLayer)]
    found = []
    for path, module in model.named_modules():
        if isinstance(module, LoraLayer) or _inside_adapter(path, layers):
            continue
        plain = _unwrapped(path)
        for name in _parameter_names(module):
            key = f"{plain}.{name}" if plain else name
            if _matches(entries, key):
                place = path  # the module's own path, less the wrappers' steps at its end
                while place.endswith(WRAPPED):
                    place = place.removesuffix(WRAPPED)
                _check_wrappable(model, place, key, module_targets)
                check_shape(key, getattr(module, name).shape)
                found.append(ParameterTarget(place, name, key))
    return found


def _inside_adapter(path: str, layers: list[str]) -> bool:
    """Whether ``path`` is one of an adapter layer's own modules (lora_A, ...), not what it wraps."""
    return any(path.startswith(f"{layer}.") and not path.startswith(f"{layer}{WRAPPED}") for layer in layers)


def _check_wrappable(model: nn.Module, place: str, key: str, module_targets: list[str]) -> None:
    if not place:
        raise UnsupportedFeature(
            f"Targeting an nn.Parameter on the top-level module is not supported (parameter {key!r}); "
            "put the parameter in a submodule or remove it from target_parameters"
        )
    holder = model.get_submodule(place)
    while isinstance(holder, ParamWrapper):
        holder = holder.base_layer
    if place in module_targets or isinstance(holder, LoraLayer):
        layer = _unwrapped(place)
        raise InvalidConfig(
            f"Trying to wrap an `nn.Parameter` of layer {layer!r} of type {type(holder).__name__}, which is "
            f"not a valid target. target_parameters names {key!r}, a parameter of {layer!r}, which "
            "target_modules adapts too; remove that module from target_modules (target_modules=[] adapts "
            "none)"
        )


def wrap_parameters(model: nn.Module, targets: list[ParameterTarget]) -> list[tuple[str, ParamWrapper]]:
    """(key, the ParamWrapper adapting it) for each target, wrapping parameters not wrapped yet.

    A module's later parameters are wrapped outside its earlier ones (the nesting HF PEFT writes), and
    inner modules before outer ones, so no wrapping moves a module that is still to be wrapped."""
    places = list(dict.fromkeys(target.place for target in targets))
    layers = []
    for place in reversed(places):
        for target in (t for t in targets if t.place == place):
            layers.append((target.key, _wrapper(model, place, target.parameter)))
    return layers


def _wrapper(model: nn.Module, place: str, parameter: str) -> ParamWrapper:
    outermost = model.get_submodule(place)
    layer = outermost
    while isinstance(layer, ParamWrapper):
        if layer.parameter_name == parameter:
            return layer  # an earlier adapter wrapped it: the new one joins
        layer = layer.base_layer
    wrapper = ParamWrapper(outermost, parameter)
    parent, _, child = place.rpartition(".")
    setattr(model.get_submodule(parent), child, wrapper)
    return wrapper
