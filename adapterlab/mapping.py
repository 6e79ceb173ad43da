"""``get_peft_model``: wrap a transformers model with a fresh adapter, picking the class by task type."""

from __future__ import annotations

import warnings

from torch import nn

from adapterlab.config import PeftConfig
from adapterlab.errors import InvalidConfig
from adapterlab.peft_model import MODEL_TYPE_TO_PEFT_MODEL_MAPPING, PeftModel

__all__ = ["MODEL_TYPE_TO_PEFT_MODEL_MAPPING", "get_peft_model"]


def get_peft_model(model: nn.Module, peft_config: PeftConfig, adapter_name: str = "default", mixed: bool = False,
                   autocast_adapter_dtype: bool = True, revision: str | None = None,
                   low_cpu_mem_usage: bool = False) -> PeftModel:
    """Add a new adapter to ``model`` (modified in place) and return the PEFT model around it.

    HF PEFT's parameters: ``revision`` is the base model's, recorded in the adapter config;
    ``autocast_adapter_dtype`` and ``low_cpu_mem_usage`` as in :meth:`PeftModel.add_adapter`.
    """
    if not isinstance(peft_config, PeftConfig):
        raise TypeError(f"peft_config must be a PeftConfig (e.g. LoraConfig), got {type(peft_config).__name__}")
    if mixed:
        raise InvalidConfig(
            "mixed=True (HF PEFT's PeftMixedModel, several adapter types at once) is not supported; "
            "use one adapter type per model"
        )
    if peft_config.base_model_name_or_path is None:
        name = getattr(getattr(model, "config", None), "name_or_path", None)
        peft_config.base_model_name_or_path = name or None
    if revision is not None:
        if peft_config.revision not in (None, revision):
            warnings.warn(
                f"the config's revision {peft_config.revision!r} is replaced by revision={revision!r}", stacklevel=2
            )
        peft_config.revision = revision
    model_cls = MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(peft_config.task_type, PeftModel)
    return model_cls(model, peft_config, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype)
