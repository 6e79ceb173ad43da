"""Which LoRA layer wraps which module type; the one place that says what LoRA can adapt."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterlab.errors import UnsupportedModule
from adapterlab.tuners.lora.conv import CONV_TYPES, Conv
from adapterlab.tuners.lora.layer import Embedding, Linear, LoraLayer
from adapterlab.tuners.lora.mha import MultiheadAttention, check_options, check_packed


def check_adaptable(name: str, module: nn.Module, options: dict[str, Any] | None = None) -> None:
    """Raise UnsupportedModule unless LoRA can wrap ``module`` (found at ``name``), and UnsupportedFeature
    if it cannot take an adapter with ``options`` (``add_adapter``'s keywords), before anything changes."""
    if isinstance(module, nn.MultiheadAttention):
        check_packed(name, module)
    if isinstance(module, (nn.MultiheadAttention, MultiheadAttention)):  # the latter: adapted already
        check_options(name, options or {})
        return
    if isinstance(module, (LoraLayer, nn.Linear, Conv1D, nn.Embedding, *CONV_TYPES)):
        return
    raise UnsupportedModule(
        f"LoRA cannot adapt module {name!r} of type {type(module).__name__}; supported types: "
        f"nn.Linear, transformers Conv1D, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, "
        f"nn.MultiheadAttention (other weights: name them in target_parameters)"
    )


def make_lora_layer(name: str, module: nn.Module) -> LoraLayer:
    """Wrap ``module`` (found at ``name``) in the LoRA layer for its type."""
    check_adaptable(name, module)
    if isinstance(module, nn.Embedding):
        return Embedding(module)
    if isinstance(module, CONV_TYPES):
        return Conv(module)
    if isinstance(module, nn.MultiheadAttention):
        return MultiheadAttention(module)
    return Linear(module)
