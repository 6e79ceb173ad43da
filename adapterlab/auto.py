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

import adapterlab.hub as hub
from adapterlab.config import PeftConfig
from adapterlab.errors import InvalidConfig, summarize
from adapterlab.hf_format import TASKS, TaskType
from adapterlab.peft_model import MODEL_TYPE_TO_PEFT_MODEL_MAPPING, PeftModel

# PeftModel.from_pretrained's options: for the adapter only, or (HF's low_cpu_mem_usage) for both
_ADAPTER_OPTIONS = ("autocast_adapter_dtype", "ephemeral_gpu_offload", "key_mapping", "torch_device")
_SHARED_OPTIONS = ("low_cpu_mem_usage",)


class AutoPeftModel:
    """Base of the ``AutoPeftModelFor...`` classes; use the one for the adapter's task."""

    # the adapter task a subclass loads; the transformers auto class that loads its base (by
    # name: transformers is imported on first use) and the PeftModel class follow from the task
    task: ClassVar[TaskType | None] = None

    def __init__(self) -> None:
        raise TypeError(
            f"{type(self).__name__} is not built directly; call {type(self).__name__}.from_pretrained(...)"
        )

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        adapter_name: str = "default",
        is_trainable: bool = False,
        config: PeftConfig | None = None,
        revision: str | None = None,
        import_allowlist: list[str] | None = None,
        **kwargs: Any,
    ) -> PeftModel:
        """The base model named by the adapter's config, with the adapter loaded onto it.

        ``import_allowlist`` limits what HF PEFT may import for a config's custom ``auto_mapping``;
        adapterlab imports nothing a config names, so every allowlist is already met.
        """
        hub_kwargs = {k: kwargs.pop(k) for k in hub.OPTION_NAMES & kwargs.keys()}
        if revision is not None:  # the adapter's revision; the base's is in the adapter config
            hub_kwargs["revision"] = revision
        subfolder = kwargs.pop("subfolder", None)
        adapter_kwargs = {k: kwargs.pop(k) for k in _ADAPTER_OPTIONS if k in kwargs}
        adapter_kwargs.update({k: kwargs[k] for k in _SHARED_OPTIONS if k in kwargs})
        peft_config = config or PeftConfig.from_pretrained(
            pretrained_model_name_or_path, subfolder, **hub_kwargs
        )
        base = cls._load_base(peft_config, {k: v for k, v in hub_kwargs.items() if k != "revision"}, kwargs)
        return MODEL_TYPE_TO_PEFT_MODEL_MAPPING[cls.task].from_pretrained(
            base,
            pretrained_model_name_or_path,
            adapter_name,
            is_trainable,
            peft_config,
            subfolder=subfolder,
            **adapter_kwargs,
            **hub_kwargs,
        )

    @classmethod
    def _load_base(
        cls, peft_config: PeftConfig, hub_kwargs: dict[str, Any], base_kwargs: dict[str, Any]
    ) -> nn.Module:
        task = TaskType(peft_config.task_type) if peft_config.task_type is not None else None
        if cls.task is None:
            raise InvalidConfig(
                f"AutoPeftModel cannot tell which transformers class to load; use the AutoPeftModelFor... "
                f"class of the adapter's task ({task or 'task_type is unset'})"
            )
        if task is not None and task != cls.task:
            right = next(auto for auto in AutoPeftModel.__subclasses__() if auto.task == task)
            raise InvalidConfig(
                f"the adapter is for task_type {task}; load it with {right.__name__}, not {cls.__name__}"
            )
        base_name = peft_config.base_model_name_or_path
        if not base_name:
            raise InvalidConfig(
                "the adapter config has no base_model_name_or_path; load the base model yourself and call "
                "PeftModel.from_pretrained(base, adapter)"
            )
        import transformers

        auto = getattr(transformers, TASKS[cls.task].auto_class)
        try:
            return auto.from_pretrained(base_name, revision=peft_config.revision, **hub_kwargs, **base_kwargs)
        except OSError as exc:  # transformers' error for a missing folder, repo or file
            raise InvalidConfig(
                f"cannot load the base model {base_name!r} named in the adapter config "
                f"({summarize(exc, first_line=True, limit=None)}); make it available (download it, or fix "
                "base_model_name_or_path)"
            ) from None


class AutoPeftModelForCausalLM(AutoPeftModel):
    task = TaskType.CAUSAL_LM


class AutoPeftModelForSeq2SeqLM(AutoPeftModel):
    task = TaskType.SEQ_2_SEQ_LM


class AutoPeftModelForSequenceClassification(AutoPeftModel):
    task = TaskType.SEQ_CLS


class AutoPeftModelForTokenClassification(AutoPeftModel):
    task = TaskType.TOKEN_CLS


class AutoPeftModelForQuestionAnswering(AutoPeftModel):
    task = TaskType.QUESTION_ANS


class AutoPeftModelForFeatureExtraction(AutoPeftModel):
    task = TaskType.FEATURE_EXTRACTION
