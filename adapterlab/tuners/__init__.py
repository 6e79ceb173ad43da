"""The PEFT methods, one sub-package each. The names HF PEFT scripts import from ``peft.tuners``."""

from __future__ import annotations

from adapterlab.lazy import lazy_exports

_LAZY_EXPORTS: dict[str, str] = {
    "LoraConfig": "adapterlab.tuners.lora.config",
    "KasaConfig": "adapterlab.tuners.lora.variant_configs",
    "VeloraConfig": "adapterlab.tuners.lora.variant_configs",
    "BdLoraConfig": "adapterlab.tuners.lora.variant_configs",
    "LoraModel": "adapterlab.tuners.lora.model",
    "PromptTuningConfig": "adapterlab.tuners.prompt.config",
    "PromptEncoderConfig": "adapterlab.tuners.prompt.config",
    "PrefixTuningConfig": "adapterlab.tuners.prompt.config",
}

__all__ = list(_LAZY_EXPORTS)

__getattr__, __dir__ = lazy_exports("adapterlab.tuners", _LAZY_EXPORTS, globals())
