"""What a LoRA variant (adapterlab.tuners.lora.variants) can change about one adapter on one layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterlab.errors import UnsupportedFeature

if TYPE_CHECKING:
    from adapterlab.tuners.lora.layer import LoraLayer


class LoraVariant:
    """Plain LoRA's forward and update; a variant overrides what it changes."""

    def update(self, layer: LoraLayer, name: str, x: torch.Tensor) -> torch.Tensor:
        """What adapter ``name`` adds to the base output for its (dropped-out) input ``x``."""
        return layer.lora_B[name](layer.lora_A[name](x)) * layer.scaling[name]

    def weight(self, layer: LoraLayer, name: str) -> torch.Tensor:
        """The unscaled update as an (out, in) matrix: what merging adds, times the scaling."""
        return layer.lora_B[name].weight @ layer.lora_A[name].weight

    def checkpoint_tensors(self, layer: LoraLayer, name: str) -> dict[str, torch.Tensor]:
        """Tensors saved with the adapter besides A and B, by checkpoint key suffix."""
        return {}


def out_in(base: nn.Module) -> tuple[int, int]:
    """(out, in) of a linear base (nn.Linear, or Conv1D whose weight is stored (in, out)); an
    embedding's (dim, vocab), the way LoRA reads its table."""
    rows, cols = base.weight.shape
    return (cols, rows) if isinstance(base, (Conv1D, nn.Embedding)) else (rows, cols)


def require_layer_type(label: str, base: nn.Module, key: str, types: tuple[type, ...]) -> None:
    """Refuse a variant on module ``key`` unless its base module is one of ``types``."""
    if not isinstance(base, types):
        raise UnsupportedFeature(
            f"{label} is not supported on {type(base).__name__} layers ({key!r}); leave this module out of "
            "target_modules"
        )
