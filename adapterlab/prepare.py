"""``prepare_model_for_kbit_training``: ready a (usually quantized) base model for adapter training.

The recipe of QLoRA-style training, with HF PEFT's name and parameters:

1. freeze every base parameter (the adapter added next is what trains);
2. keep the trainable path numerically stable: float16/bfloat16 parameters (norms, embeddings,
   the head) become float32. Quantized weights stay as they are: bitsandbytes' 4-bit tensors, and
   every parameter of GPTQ, AQLM, EETQ, HQQ and torchao models, whose kernels need their dtype;
3. for quantized models, gradient checkpointing. With the default (reentrant) checkpointing the
   inputs of a checkpointed block must require grad, or the frozen blocks would pass no gradient
   to the adapters; ``enable_input_require_grads`` does that.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# quantization methods whose parameters must all keep their dtype
_KEEP_DTYPE_METHODS = ("gptq", "aqlm", "eetq", "hqq", "torchao")


def prepare_model_for_kbit_training(
    model: nn.Module,
    use_gradient_checkpointing: bool = True,
    gradient_checkpointing_kwargs: dict[str, Any] | None = None,
    auto_clear_cache: bool = True,
) -> nn.Module:
    """Freeze ``model``, upcast its half-precision parameters, and (quantized models) turn on
    gradient checkpointing; returns ``model``."""
    method = getattr(model, "quantization_method", None)
    keeps_dtype = method in _KEEP_DTYPE_METHODS or bool(getattr(model, "hqq_quantized", False))
    bits_and_bytes = bool(
        getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False)
    )
    model.requires_grad_(False)
    if not keeps_dtype:
        for param in model.parameters():
            if param.dtype in (torch.float16, torch.bfloat16) and type(param).__name__ != "Params4bit":
                param.data = param.data.float()
        if auto_clear_cache and torch.cuda.is_available():
            torch.cuda.empty_cache()  # the half-precision copies are garbage now
    if (bits_and_bytes or keeps_dtype) and use_gradient_checkpointing:
        kwargs = {"use_reentrant": True, **(gradient_checkpointing_kwargs or {})}  # torch's old default, said
        if kwargs["use_reentrant"]:
            model.enable_input_require_grads()
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers' newer name
        if enable is not None:
            enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return model
