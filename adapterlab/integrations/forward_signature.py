"""``PeftModel.forward`` shows the base model's parameters to code that reads its signature.

``PeftModel.forward`` takes ``*args, **kwargs`` and hands them to the base model, so a plain
signature says nothing. Libraries decide things from it: the transformers Trainer keeps only the
dataset columns that ``forward`` names (``remove_unused_columns``) and passes ``num_items_in_batch``
only to a ``forward`` with ``**kwargs``; users read it with ``help(model.forward)``. Once
:mod:`adapterlab.integrations.transformers_trainer` is installed the Trainer reads the base model
directly (as it does for HF PEFT); this covers every other reader.

``inspect.signature(peft_model.forward)`` gives the base model's ``forward`` parameters plus our
keyword-only ``adapter_names``. The signature depends on the instance (its base model), so
``forward`` is a descriptor returning a ``functools.partial`` that carries it; nothing is stored on
the instance, so ``copy.deepcopy`` and ``nn.DataParallel``'s replicas bind to themselves. Under
``torch.compile`` it is a plain bound method (the compiler traces it without a graph break).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch

ADAPTER_NAMES = inspect.Parameter("adapter_names", inspect.Parameter.KEYWORD_ONLY, default=None)


@functools.lru_cache(maxsize=64)
def signature_with_adapter_names(base_class: type) -> inspect.Signature | None:
    """``base_class.forward``'s signature without ``self``, with ``adapter_names`` (None: unreadable)."""
    try:
        signature = inspect.signature(base_class.forward)
    except (TypeError, ValueError):
        return None
    parameters = list(signature.parameters.values())[1:]  # drop self
    if ADAPTER_NAMES.name not in signature.parameters:
        kinds = [parameter.kind for parameter in parameters]
        at = kinds.index(inspect.Parameter.VAR_KEYWORD) if inspect.Parameter.VAR_KEYWORD in kinds else len(parameters)
        parameters.insert(at, ADAPTER_NAMES)
    try:
        return signature.replace(parameters=parameters)
    except ValueError:  # a parameter order we cannot extend (e.g. positional-only with defaults)
        return None


class shows_base_forward_signature:  # noqa: N801 -- used as a decorator, named like one
    """Decorator for ``PeftModel.forward``: on an instance, ``forward``'s signature is its base model's."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        functools.update_wrapper(self, function)

    def __get__(self, instance: Any, owner: type | None = None) -> Callable[..., Any]:
        if instance is None:
            return self.function
        bound = functools.partial(self.function, instance)
        if torch.compiler.is_compiling():  # torch.compile would break its graph to set the attributes below
            return bound
        # what a bound method has, for code that unwraps one (accelerate's mixed precision reads __func__)
        bound.__func__ = self.function  # type: ignore[attr-defined]
        bound.__self__ = instance  # type: ignore[attr-defined]
        bound.__doc__ = self.function.__doc__
        try:
            signature = signature_with_adapter_names(type(instance.get_base_model()))
        except (LookupError, AttributeError):  # no base model to read (no adapter left; being unpickled)
            signature = None
        if signature is not None:
            bound.__signature__ = signature  # type: ignore[attr-defined]
        return bound
