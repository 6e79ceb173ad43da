"""What a LoRA variant (adapterlab.tuners.lora.variants) can change about one adapter on one layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

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
