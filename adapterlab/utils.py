"""The names HF PEFT scripts import from ``peft.utils``, where adapterlab keeps them.

``from peft.utils import get_peft_model_state_dict`` becomes ``from adapterlab.utils import ...``;
each name lives in the module that owns it and is imported on first use.
"""

from __future__ import annotations

from adapterlab.lazy import lazy_exports

_LAZY_EXPORTS: dict[str, str] = {
    "CONFIG_NAME": "adapterlab.config",
    "PeftType": "adapterlab.config",
    "TaskType": "adapterlab.config",
    "SAFETENSORS_WEIGHTS_NAME": "adapterlab.checkpoint",
    "WEIGHTS_NAME": "adapterlab.checkpoint",
    "get_peft_model_state_dict": "adapterlab.checkpoint",
    "set_peft_model_state_dict": "adapterlab.checkpoint",
    "load_peft_weights": "adapterlab.checkpoint",
    "ModulesToSaveWrapper": "adapterlab.tuners.modules_to_save",
    "_get_submodules": "adapterlab.tuners.tuners_utils",
    "prepare_model_for_kbit_training": "adapterlab.prepare",
    "infer_device": "adapterlab.devices",
    "INCLUDE_LINEAR_LAYERS_SHORTHAND": "adapterlab.tuners.targeting",
    "MIN_TARGET_MODULES_FOR_OPTIMIZATION": "adapterlab.tuners.minimal_targets",
    "PeftWarning": "adapterlab.errors",
    "DUMMY_MODEL_CONFIG": "adapterlab.tuners.tuners_utils",
}

__all__ = list(_LAZY_EXPORTS)

__getattr__, __dir__ = lazy_exports("adapterlab.utils", _LAZY_EXPORTS, globals())
