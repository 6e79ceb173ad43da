"""The method table: the one place where each PEFT method plugs into the core.

``PeftModel``, checkpointing and ``PeftConfig.from_pretrained`` know no method by name; they look
the method up here by ``peft_type`` and call the hooks of :class:`PeftMethod`. Adding a method
means writing its folder under ``adapterlab/tuners/`` (with a ``PeftMethod`` subclass instance)
and adding one line to ``_METHODS`` below.

How a method plugs in (``peft_model`` is the :class:`adapterlab.peft_model.PeftModel`):

- ``wrap_base_model(model, peft_config)`` returns what ``peft_model.base_model`` becomes. Injection methods
  (LoRA) wrap the transformers model in a tuner (``base_model.model`` is then the original), so
  checkpoint keys start with ``base_model.model.``. Prompt-learning methods return the model
  itself: keys start with ``base_model.``. ``peft_config`` is the PeftModel's dict of adapter
  name -> config (shared, so a tuner can read it).
- ``add_adapter(peft_model, config, adapter_name)`` creates one adapter (the first one too). A
  prompt method registers its modules on ``peft_model`` (e.g. ``peft_model.prompt_encoder``, a
  ``ModuleDict`` keyed by adapter name) so that ``named_parameters()`` -- and with it
  ``print_trainable_parameters`` -- sees them. It must leave the base model frozen.
  ``modules_to_save`` (task heads) is handled by the core after this hook, for every method.
- ``forward(peft_model, *args, **kwargs)`` / ``generate(peft_model, *args, **kwargs)`` run the
  model. The default calls ``peft_model.base_model`` unchanged; prompt methods override them to
  prepend virtual tokens to ``inputs_embeds`` (or pass ``past_key_values``) according to
  ``peft_model.active_peft_config.task_type``. Inside ``with peft_model.disable_adapter():`` the
  core calls this base class's ``forward``/``generate`` instead, for every method, so the base
  model runs as is; methods need not handle that case.
- ``adapter_state_dict(peft_model, adapter_name)`` returns the adapter's tensors under the
  checkpoint keys (adapter name removed), e.g. ``{"prompt_embeddings": ...}``;
  ``load_adapter_state_dict(peft_model, state_dict, adapter_name)`` takes such a dict (core keys
  already removed) and loads it, raising ``ShapeMismatch`` / ``CheckpointError`` on misfit. The
  core adds and strips the ``modules_to_save`` entries itself.
- ``set_adapter(peft_model, adapter_name)`` / ``delete_adapter(peft_model, adapter_name)`` switch
  or drop an adapter in the method's own modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from adapterlab.errors import InvalidConfig
from adapterlab.hf_format import PeftType
from adapterlab.validation import coerce_enum

if TYPE_CHECKING:
    import torch
    from torch import nn

    from adapterlab.config import PeftConfig
    from adapterlab.peft_model import PeftModel


class PeftMethod:
    """The hooks one PEFT method gives the core. Subclass it in the method's folder."""

    peft_type: PeftType
    config_class: type[PeftConfig]
    # True for methods that leave the base model untouched and feed it virtual tokens
    is_prompt_learning: bool = False
    # injection methods: the prefix of their tensors' names in the model (LoRA's lora_A, lora_B: "lora_")
    prefix: str | None = None

    def wrap_base_model(self, model: nn.Module, peft_config: dict[str, PeftConfig]) -> nn.Module:
        return model

    def add_adapter(self, peft_model: PeftModel, config: PeftConfig, adapter_name: str) -> None:
        raise NotImplementedError

    def keep_base_dtype(self, peft_model: PeftModel, adapter_name: str) -> None:
        """Store the adapter in the base layers' dtype (``autocast_adapter_dtype=False``). Prompt
        encoders stay float32 whatever the base, as in HF PEFT, so the default does nothing."""

    def set_adapter(self, peft_model: PeftModel, adapter_name: str) -> None:
        """Make ``adapter_name`` the one used by forward; the default has nothing to switch."""

    def delete_adapter(self, peft_model: PeftModel, adapter_name: str) -> None:
        raise NotImplementedError

    def forward(self, peft_model: PeftModel, *args: Any, **kwargs: Any) -> Any:
        return peft_model.base_model(*args, **kwargs)

    def generate(self, peft_model: PeftModel, *args: Any, **kwargs: Any) -> Any:
        return peft_model.get_base_model().generate(*args, **kwargs)

    def adapter_state_dict(self, peft_model: PeftModel, adapter_name: str) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_adapter_state_dict(
        self, peft_model: PeftModel, state_dict: dict[str, torch.Tensor], adapter_name: str
    ) -> None:
        raise NotImplementedError


# peft_type -> "module:attribute" of the method's PeftMethod instance (imported on first use)
_METHODS: dict[PeftType, str] = {
    PeftType.LORA: "adapterlab.tuners.lora.method:LORA",
    PeftType.PROMPT_TUNING: "adapterlab.tuners.prompt.method:PROMPT_TUNING",
    PeftType.P_TUNING: "adapterlab.tuners.prompt.method:P_TUNING",
    PeftType.PREFIX_TUNING: "adapterlab.tuners.prompt.method:PREFIX_TUNING",
}


_loaded: dict[PeftType, PeftMethod] = {}


def method_prefixes() -> dict[PeftType, str]:
    """HF PEFT's ``PEFT_TYPE_TO_PREFIX_MAPPING``: peft_type -> tensor-name prefix, for the methods
    that have one."""
    return {peft_type: get_method(peft_type).prefix for peft_type in _METHODS if get_method(peft_type).prefix}


def get_method(peft_type: PeftType | str) -> PeftMethod:
    """The registered method for ``peft_type``; InvalidConfig names the ones available."""
    key = coerce_enum(PeftType, peft_type, "peft_type")
    method = _loaded.get(key)
    if method is None:
        spec = _METHODS.get(key)
        if spec is None:
            known = ", ".join(str(t) for t in _METHODS)
            raise InvalidConfig(f"PEFT method {peft_type} is not available; adapterlab supports: {known}")
        module_name, attribute = spec.split(":")
        method = _loaded[key] = getattr(importlib.import_module(module_name), attribute)
    return method
