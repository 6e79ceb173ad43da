"""adapterlab: parameter-efficient fine-tuning with the API of Hugging Face PEFT.

The public names are resolved lazily (PEP 562) so that ``import adapterlab.registry`` and the
``adapters`` CLI start without importing torch or transformers; the first access to, say,
``adapterlab.LoraConfig`` imports the module that defines it.
"""

from __future__ import annotations

from adapterlab._version import __version__
from adapterlab.lazy import lazy_exports

# public name -> module that defines it
_LAZY_EXPORTS: dict[str, str] = {
    "PeftConfig": "adapterlab.config",
    "PeftType": "adapterlab.config",
    "TaskType": "adapterlab.config",
    "LoraConfig": "adapterlab.tuners.lora.config",
    "KasaConfig": "adapterlab.tuners.lora.variant_configs",
    "VeloraConfig": "adapterlab.tuners.lora.variant_configs",
    "BdLoraConfig": "adapterlab.tuners.lora.variant_configs",
    "LoraModel": "adapterlab.tuners.lora.model",
    "PromptTuningConfig": "adapterlab.tuners.prompt.config",
    "PromptTuningInit": "adapterlab.tuners.prompt.config",
    "PromptEncoderConfig": "adapterlab.tuners.prompt.config",
    "PromptEncoderReparameterizationType": "adapterlab.tuners.prompt.config",
    "PromptEncoder": "adapterlab.tuners.prompt.encoders",
    "PrefixTuningConfig": "adapterlab.tuners.prompt.config",
    "get_peft_config": "adapterlab.config",
    "get_peft_model": "adapterlab.mapping",
    "load_peft_weights": "adapterlab.checkpoint",
    "prepare_model_for_kbit_training": "adapterlab.prepare",
    "AutoPeftModel": "adapterlab.auto",
    "AutoPeftModelForCausalLM": "adapterlab.auto",
    "AutoPeftModelForSeq2SeqLM": "adapterlab.auto",
    "AutoPeftModelForSequenceClassification": "adapterlab.auto",
    "AutoPeftModelForTokenClassification": "adapterlab.auto",
    "AutoPeftModelForQuestionAnswering": "adapterlab.auto",
    "AutoPeftModelForFeatureExtraction": "adapterlab.auto",
    "get_peft_model_state_dict": "adapterlab.checkpoint",
    "set_peft_model_state_dict": "adapterlab.checkpoint",
    "PeftModel": "adapterlab.peft_model",
    "PeftModelForSequenceClassification": "adapterlab.peft_model",
    "PeftModelForSeq2SeqLM": "adapterlab.peft_model",
    "PeftModelForCausalLM": "adapterlab.peft_model",
    "PeftModelForTokenClassification": "adapterlab.peft_model",
    "PeftModelForQuestionAnswering": "adapterlab.peft_model",
    "PeftModelForFeatureExtraction": "adapterlab.peft_model",
    "inject_adapter_in_model": "adapterlab.mapping",
    "get_base_model_state_dict": "adapterlab.base_weights",
    "set_base_model_state_dict": "adapterlab.base_weights",
    "get_layer_status": "adapterlab.status",
    "get_model_status": "adapterlab.status",
    "PromptLearningConfig": "adapterlab.tuners.prompt.config",
    "PeftWarning": "adapterlab.errors",
    "PeftError": "adapterlab.errors",
    "NoMatchingPeftModuleError": "adapterlab.errors",
}

__all__ = ["__version__", *_LAZY_EXPORTS]

__getattr__, __dir__ = lazy_exports("adapterlab", _LAZY_EXPORTS, globals())

# The transformers Trainer learns about adapterlab's PeftModel when (and if) it is imported; this
# line itself imports nothing heavy. See adapterlab/integrations/transformers_trainer.py.
from adapterlab.integrations.transformers_trainer import enable as _enable_trainer_integration  # noqa: E402

_enable_trainer_integration()
