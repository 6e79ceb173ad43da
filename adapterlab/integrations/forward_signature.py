"""``PeftModel.forward`` shows the task's parameters to code that reads its signature.

``PeftModel.forward`` takes ``*args, **kwargs`` and hands them to the base model, so a plain
signature says nothing. Libraries decide things from it, the transformers Trainer first:

- on the class: transformers 4.50 sets ``label_names`` from ``find_labels(type(model))`` (the
  parameters of the class's ``forward`` that name labels) and ``can_return_loss`` likewise. Each task
  class shows the parameters HF PEFT's same-named class shows (``labels``; ``start_positions`` /
  ``end_positions`` for question answering), less HF's ``task_ids`` (no multitask prompt tuning
  here).
- on an instance: the base model's ``forward`` parameters plus our keyword-only ``adapter_names``,
  for code that keeps the dataset columns ``forward`` names or checks for ``**kwargs`` (and for
  ``help(model.forward)``). Once :mod:`adapterlab.integrations.transformers_trainer` is installed
  the Trainer itself reads the base model, as it does for HF PEFT.

The instance signature depends on the base model, so ``forward`` is a descriptor returning a
``functools.partial`` that carries it; nothing is stored on the instance, so ``copy.deepcopy`` and
``nn.DataParallel``'s replicas bind to themselves. Under ``torch.compile`` it is a bare partial
(the compiler traces it without a graph break).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch

ADAPTER_NAMES = inspect.Parameter("adapter_names", inspect.Parameter.KEYWORD_ONLY, default=None)
_OUTPUTS = ("output_attentions", "output_hidden_states", "return_dict")
# task type -> the parameters its PeftModel class's forward shows (HF PEFT's names, in its order)
TASK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "SEQ_CLS": ("input_ids", "attention_mask", "inputs_embeds", "labels", *_OUTPUTS),
    "TOKEN_CLS": ("input_ids", "attention_mask", "inputs_embeds", "labels", *_OUTPUTS),
    "CAUSAL_LM": ("input_ids", "attention_mask", "inputs_embeds", "labels", *_OUTPUTS),
    "SEQ_2_SEQ_LM": (
        "input_ids",
        "attention_mask",
        "inputs_embeds",
        "decoder_input_ids",
        "decoder_attention_mask",
        "decoder_inputs_embeds",
        "labels",
        *_OUTPUTS,
    ),
    "QUESTION_ANS": (
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "position_ids",
        "inputs_embeds",
        "start_positions",
        "end_positions",
        *_OUTPUTS,
    ),
    "FEATURE_EXTRACTION": ("input_ids", "attention_mask", "inputs_embeds", *_OUTPUTS),
}


def _with_adapter_names(parameters: list[inspect.Parameter]) -> list[inspect.Parameter]:
    if any(parameter.name == ADAPTER_NAMES.name for parameter in parameters):
        return parameters
    kinds = [parameter.kind for parameter in parameters]
    at = (
        kinds.index(inspect.Parameter.VAR_KEYWORD)
        if inspect.Parameter.VAR_KEYWORD in kinds
        else len(parameters)
    )
    return [*parameters[:at], ADAPTER_NAMES, *parameters[at:]]


@functools.lru_cache(maxsize=64)
def instance_signature(base_class: type) -> inspect.Signature | None:
    """``base_class.forward``'s signature without ``self``, with ``adapter_names`` (None: unreadable)."""
    try:
        signature = inspect.signature(base_class.forward)
    except (TypeError, ValueError):
        return None
    try:
        return signature.replace(parameters=_with_adapter_names(list(signature.parameters.values())[1:]))
    except ValueError:  # a parameter order we cannot extend (e.g. positional-only with defaults)
        return None


def _task_of(peft_model_class: type) -> str | None:
    task = getattr(peft_model_class, "class_task", None)  # set by each PeftModelFor... class
    return None if task is None else str(task.value)


def class_signature(peft_model_class: type) -> inspect.Signature | None:
    """``(self, *args, <the task's parameters>=None, adapter_names=None, **kwargs)``; None for no task."""
    task = _task_of(peft_model_class)
    if task is None:
        return None
    keyword = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
        for name in TASK_PARAMETERS[task]
    ]
    return inspect.Signature(
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
            *keyword,
            ADAPTER_NAMES,
            inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
        ]
    )


class shows_base_forward_signature:  # noqa: N801 -- used as a decorator, named like one
    """Decorator for ``PeftModel.forward``: the task's parameters on the class, the base model's on an
    instance."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        functools.update_wrapper(self, function)
        self._on_class: dict[type, Callable[..., Any]] = {}

    def __get__(self, instance: Any, owner: type | None = None) -> Callable[..., Any]:
        if instance is None:
            return self._for_class(owner) if owner is not None else self.function
        bound = functools.partial(self.function, instance)
        if torch.compiler.is_compiling():  # torch.compile would break its graph to set the attributes below
            return bound
        # what a bound method has, for code that unwraps one (accelerate's mixed precision reads __func__)
        bound.__func__ = self.function  # type: ignore[attr-defined]
        bound.__self__ = instance  # type: ignore[attr-defined]
        bound.__doc__ = self.function.__doc__
        try:
            signature = instance_signature(type(instance.get_base_model()))
        except (LookupError, AttributeError):  # no base model to read (no adapter left; being unpickled)
            signature = None
        if signature is not None:
            bound.__signature__ = signature  # type: ignore[attr-defined]
        return bound

    def _for_class(self, owner: type) -> Callable[..., Any]:
        if owner not in self._on_class:
            signature = class_signature(owner)
            if signature is None:
                self._on_class[owner] = self.function
            else:
                function = self.function

                @functools.wraps(function)
                def forward(model: Any, *args: Any, **kwargs: Any) -> Any:
                    return function(model, *args, **kwargs)

                forward.__signature__ = signature  # type: ignore[attr-defined]
                self._on_class[owner] = forward
        return self._on_class[owner]
