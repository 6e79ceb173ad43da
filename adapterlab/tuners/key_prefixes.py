"""Which state-dict keys belong to the adapters, found from the model's structure, not from key names.

Everything an adapter layer holds besides the layer it wraps (``base_layer``) is the adapter's:
``lora_A``, ``lora_B``, ``lora_dropout``, the DoRA magnitudes. Collecting those attribute paths as
prefixes and keeping the keys that lie under one (at a ``.`` boundary) selects the adapter's entries
of ``model.state_dict()``, and never a base module that merely has ``lora_`` in its name. HF PEFT
names these helpers ``_get_tuner_state_dict_key_prefixes`` / ``_filter_state_dict_by_key_prefixes``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from adapterlab.tuners.tuners_utils import BaseTuner, BaseTunerLayer

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
    from adapterlab.tuners.lora.trainable_tokens import TrainableTokensWrapper
    from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper

    prefixes: set[str] = set()
    auxiliary: set[str] = set()
    for name, module in model.named_modules():  # parents come before their children
        if isinstance(module, (ModulesToSaveWrapper, TrainableTokensWrapper)):
            auxiliary.add(name)
        elif isinstance(module, BaseTuner) or (
            isinstance(module, BaseTunerLayer) and not key_under_prefixes(name, auxiliary)
        ):
            prefixes |= _own_attribute_prefixes(module, name, adapter_name)
    return prefixes


def key_under_prefixes(key: str, prefixes: set[str]) -> bool:
    """Whether ``key`` equals one of ``prefixes`` or lies under one: ``a.b`` covers ``a.b.c``, not ``a.bc``."""
    while True:
        if key in prefixes:
            return True
        key, dot, _ = key.rpartition(".")
        if not dot:
            return False


def filter_state_dict_by_key_prefixes(state_dict: dict[str, Any], prefixes: set[str]) -> dict[str, Any]:
    """The entries of ``state_dict`` under one of ``prefixes``."""
    return {key: value for key, value in state_dict.items() if key_under_prefixes(key, prefixes)}
