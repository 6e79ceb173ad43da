"""``get_peft_model``: wrap a transformers model with a fresh adapter, picking the class by task type.

``inject_adapter_in_model`` is the low-level variant HF PEFT offers for libraries that manage
adapters themselves: the adapter layers go into the model, and no ``PeftModel`` wraps it.
"""

from __future__ import annotations

import warnings

from torch import nn

from adapterlab.config import PeftConfig
from adapterlab.errors import InvalidConfig
from adapterlab.methods import get_method, method_prefixes
from adapterlab.peft_model import MODEL_TYPE_TO_PEFT_MODEL_MAPPING, PeftModel
from adapterlab.tuners.tuners_utils import BaseTunerLayer

__all__ = ["MODEL_TYPE_TO_PEFT_MODEL_MAPPING", "PEFT_TYPE_TO_PREFIX_MAPPING", "get_peft_model"]

# HF PEFT's table of tensor-name prefixes (lora_A -> "lora_"), read by scripts that pick keys by prefix
PEFT_TYPE_TO_PREFIX_MAPPING = method_prefixes()


def get_peft_model(
    model: nn.Module,
    peft_config: PeftConfig,
    adapter_name: str = "default",
    mixed: bool = False,
    autocast_adapter_dtype: bool = True,
    revision: str | None = None,
    low_cpu_mem_usage: bool = False,
) -> PeftModel:
    """Add a new adapter to ``model`` (modified in place) and return the PEFT model around it.

    HF PEFT's parameters: ``revision`` is the base model's, recorded in the adapter config;
    ``autocast_adapter_dtype`` and ``low_cpu_mem_usage`` as in :meth:`PeftModel.add_adapter`.
    """
    if not isinstance(peft_config, PeftConfig):
        raise TypeError(
            f"peft_config must be a PeftConfig (e.g. LoraConfig), got {type(peft_config).__name__}"
        )
    if mixed:
        raise InvalidConfig(
            "mixed=True (HF PEFT's PeftMixedModel, several adapter types at once) is not supported; "
            "use one adapter type per model"
        )
    if any(isinstance(module, BaseTunerLayer) for module in model.modules()):
        # the new adapter lands next to the old layers, which keep their effect: rarely what was meant
        warnings.warn(
            "You are trying to modify a model with PEFT for a second time: it already holds adapter layers. "
            "To start over with another config, call `.unload()` first; to add an adapter, use add_adapter",
            UserWarning,
            stacklevel=2,
        )
    _record_base_model_name(model, peft_config)
    if revision is not None:
        if peft_config.revision not in (None, revision):
            warnings.warn(
                f"the config's revision {peft_config.revision!r} is replaced by revision={revision!r}",
                stacklevel=2,
            )
        peft_config.revision = revision
    model_cls = MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(peft_config.task_type, PeftModel)
    return model_cls(model, peft_config, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype)


def _record_base_model_name(model: nn.Module, peft_config: PeftConfig) -> None:
    """The config names the model the adapter is added to, when that model has a name; a different name
    the config already held is replaced, with HF PEFT's warning."""
    name = model.__dict__.get("name_or_path") or getattr(getattr(model, "config", None), "name_or_path", None)
    if not name:
        return  # a model without a name: keep whatever the user recorded
    old = peft_config.base_model_name_or_path
    if old is not None and old != name:
        warnings.warn(
            f"The PEFT config's `base_model_name_or_path` was renamed from '{old}' to '{name}', the model "
            "the adapter is added to. Please ensure that the correct base model is loaded when loading this "
            "checkpoint.",
            UserWarning,
            stacklevel=3,
        )
    peft_config.base_model_name_or_path = name


def inject_adapter_in_model(
    peft_config: PeftConfig,
    model: nn.Module,
    adapter_name: str = "default",
    low_cpu_mem_usage: bool = False,
    state_dict: dict | None = None,
) -> nn.Module:
    """Put the adapter layers of ``peft_config`` into ``model`` (in place) and return it, unwrapped.

    The base weights are frozen and the new adapter (with its ``modules_to_save`` copies) trains.
    Only injection methods (LoRA) have layers to inject. HF PEFT's parameters: with
    ``low_cpu_mem_usage`` the LoRA tensors are left on the meta device (shapes only, no memory), to be
    filled from a checkpoint with ``model.load_state_dict(state_dict, strict=False, assign=True)``.
    """
    from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper, attach_modules_to_save

    if not isinstance(peft_config, PeftConfig):
        raise TypeError(
            f"peft_config must be a PeftConfig (e.g. LoraConfig), got {type(peft_config).__name__}"
        )
    method = get_method(peft_config.peft_type)
    if method.is_prompt_learning:
        raise InvalidConfig(
            f"{peft_config.peft_type} adds virtual tokens, not layers: there is nothing to inject; use "
            "get_peft_model"
        )
    if state_dict is not None:
        raise InvalidConfig(
            "state_dict (HF PEFT's way to pick targets from a checkpoint's keys) is not supported; set "
            "target_modules in the config and load the weights with set_peft_model_state_dict afterwards"
        )
    tuner = method.wrap_base_model(model, {adapter_name: peft_config})
    tuner.inject_adapter(peft_config, adapter_name, low_cpu_mem_usage=low_cpu_mem_usage)
    tuner.set_adapter(adapter_name)
    attach_modules_to_save(model, getattr(peft_config, "modules_to_save", None), adapter_name)
    # as in HF PEFT, the model keeps its configs, so get_peft_model_state_dict(model) works on it
    model.peft_config = {**getattr(model, "peft_config", {}), adapter_name: peft_config}
    for module in model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            module.set_adapter(adapter_name, not peft_config.inference_mode)
    return model
