"""``AutoPeftModelFor...``: load an adapter together with the base model its config names.

``AutoPeftModelForCausalLM.from_pretrained("org/adapter")`` reads ``adapter_config.json``, loads
``base_model_name_or_path`` (at the config's ``revision``) with the matching transformers auto
class, then the adapter onto it, as HF PEFT does. Keyword arguments that are Hub options
(``token``, ``cache_dir``, ...) go to both downloads; every other one (``torch_dtype``,
``device_map``, ``num_labels``, ...) goes to the base model's ``from_pretrained``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from torch import nn

from adapterlab import hub
from adapterlab.config import PeftConfig, TaskType
from adapterlab.errors import InvalidConfig
from adapterlab.mapping import MODEL_TYPE_TO_PEFT_MODEL_MAPPING
from adapterlab.peft_model import (
    PeftModel,
    PeftModelForCausalLM,
    PeftModelForFeatureExtraction,
    PeftModelForQuestionAnswering,
    PeftModelForSeq2SeqLM,
    PeftModelForSequenceClassification,
    PeftModelForTokenClassification,
)

# PeftModel.from_pretrained's options: for the adapter only, or (HF's low_cpu_mem_usage) for both
_ADAPTER_OPTIONS = ("autocast_adapter_dtype", "ephemeral_gpu_offload", "key_mapping", "torch_device")
_SHARED_OPTIONS = ("low_cpu_mem_usage",)


class AutoPeftModel:
    """Base of the ``AutoPeftModelFor...`` classes; use the one for the adapter's task."""

    # the transformers auto class (by name: transformers is imported on first use) and our class
    auto_class: ClassVar[str | None] = None
    peft_class: ClassVar[type[PeftModel]] = PeftModel

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} is not built directly; call {type(self).__name__}.from_pretrained(...)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], adapter_name: str = "default",
                        is_trainable: bool = False, config: PeftConfig | None = None,
                        revision: str | None = None, import_allowlist: list[str] | None = None,
                        **kwargs: Any) -> PeftModel:
        """The base model named by the adapter's config, with the adapter loaded onto it.

        ``import_allowlist`` limits what HF PEFT may import for a config's custom ``auto_mapping``;
        adapterlab imports nothing a config names, so every allowlist is already met.
        """
        options, base_kwargs = hub.split_options({**kwargs, "revision": revision})
        subfolder = base_kwargs.pop("subfolder", None)
        adapter_kwargs = {k: base_kwargs.pop(k) for k in _ADAPTER_OPTIONS if k in base_kwargs}
        adapter_kwargs.update({k: base_kwargs[k] for k in _SHARED_OPTIONS if k in base_kwargs})
        peft_config = config or PeftConfig.from_pretrained(
            pretrained_model_name_or_path, subfolder, **_as_kwargs(options)
        )
        base = cls._load_base(peft_config, base_kwargs, options)
        return cls.peft_class.from_pretrained(
            base, pretrained_model_name_or_path, adapter_name, is_trainable, peft_config,
            subfolder=subfolder, **adapter_kwargs, **_as_kwargs(options),
        )  # fmt: skip

    @classmethod
    def _load_base(cls, peft_config: PeftConfig, base_kwargs: dict[str, Any], options: hub.HubOptions) -> nn.Module:
        task = TaskType(peft_config.task_type) if peft_config.task_type is not None else None
        if cls.auto_class is None:
            raise InvalidConfig(
                f"AutoPeftModel cannot tell which transformers class to load; use the AutoPeftModelFor... "
                f"class of the adapter's task ({task or 'task_type is unset'})"
            )
        expected = MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(task) if task is not None else None
        if expected is not None and expected is not cls.peft_class:
            raise InvalidConfig(
                f"the adapter is for task_type {task}; load it with "
                f"AutoPeftModel{expected.__name__.removeprefix('PeftModel')}, not {cls.__name__}"
            )
        base_name = peft_config.base_model_name_or_path
        if not base_name:
            raise InvalidConfig(
                "the adapter config has no base_model_name_or_path; load the base model yourself and call "
                "PeftModel.from_pretrained(base, adapter)"
            )
        import transformers

        auto = getattr(transformers, cls.auto_class)
        shared = {k: v for k, v in _as_kwargs(options).items() if k != "revision"}
        try:
            return auto.from_pretrained(base_name, revision=peft_config.revision, **shared, **base_kwargs)
        except OSError as exc:  # transformers' error for a missing folder, repo or file
            raise InvalidConfig(
                f"cannot load the base model {base_name!r} named in the adapter config "
                f"({str(exc).splitlines()[0]}); make it available (download it, or fix base_model_name_or_path)"
            ) from None


def _as_kwargs(options: hub.HubOptions) -> dict[str, Any]:
    return {k: v for k, v in vars(options).items() if v not in (None, False)}


class AutoPeftModelForCausalLM(AutoPeftModel):
    auto_class = "AutoModelForCausalLM"
    peft_class = PeftModelForCausalLM


class AutoPeftModelForSeq2SeqLM(AutoPeftModel):
    auto_class = "AutoModelForSeq2SeqLM"
    peft_class = PeftModelForSeq2SeqLM


class AutoPeftModelForSequenceClassification(AutoPeftModel):
    auto_class = "AutoModelForSequenceClassification"
    peft_class = PeftModelForSequenceClassification


class AutoPeftModelForTokenClassification(AutoPeftModel):
    auto_class = "AutoModelForTokenClassification"
    peft_class = PeftModelForTokenClassification


class AutoPeftModelForQuestionAnswering(AutoPeftModel):
    auto_class = "AutoModelForQuestionAnswering"
    peft_class = PeftModelForQuestionAnswering


class AutoPeftModelForFeatureExtraction(AutoPeftModel):
    auto_class = "AutoModel"
    peft_class = PeftModelForFeatureExtraction

