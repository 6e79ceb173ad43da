"""LoRA (Hu et al. 2021). The names HF PEFT scripts import from ``peft.tuners.lora``."""

from __future__ import annotations

from adapterlab.lazy import lazy_exports

_LAZY_EXPORTS: dict[str, str] = {
    "LoraConfig": "adapterlab.tuners.lora.config",
    "KasaConfig": "adapterlab.tuners.lora.variant_configs",
    "VeloraConfig": "adapterlab.tuners.lora.variant_configs",
    "BdLoraConfig": "adapterlab.tuners.lora.variant_configs",
    "LoraLayer": "adapterlab.tuners.lora.layer",
    "LoraModel": "adapterlab.tuners.lora.model",
    "ParamWrapper": "adapterlab.tuners.lora.param_wrapper",
}

__all__ = list(_LAZY_EXPORTS)

__getattr__, __dir__ = lazy_exports("adapterlab.tuners.lora", _LAZY_EXPORTS, globals())
