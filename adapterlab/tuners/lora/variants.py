"""LoRA's variants: how one adapter on a layer departs from plain LoRA, chosen by its ``LoraConfig``.

=========  ==============================  =====================================  ==================
variant    config                          what changes                           layers
=========  ==============================  =====================================  ==================
KaSA       ``kasa_config=KasaConfig()``    base truncated; diagonal between A, B  nn.Linear
MiCA       ``init_lora_weights="mica"``    B from W's minor directions, frozen    Linear, Embedding
VeLoRA     ``velora_config=VeloraConfig``  backward through compressed inputs     Linear, Conv1D
BD-LoRA    ``use_bdlora=BdLoraConfig()``   block-diagonal A or B                  Linear, Conv1D
=========  ==============================  =====================================  ==================

One adapter has at most one variant (DoRA, :mod:`~adapterlab.tuners.lora.dora`, counts as one).
Each variant's module sets the adapter up (:func:`attach`, after the layer made plain A and B) and,
where its forward or its update differs, leaves a :class:`LoraVariant` in ``layer.lora_variant``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from adapterlab.errors import UnsupportedFeature

if TYPE_CHECKING:
    from adapterlab.tuners.lora.config import LoraConfig
    from adapterlab.tuners.lora.layer import LoraLayer

# the config's name for each variant -> how errors name it
VARIANT_LABELS = {
    "kasa_config": "KaSA",
    "mica": "MiCA",
    "velora_config": "VeLoRA",
    "use_bdlora": "BD-LoRA",
}


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


def attach(layer: LoraLayer, name: str, config: LoraConfig, key: str) -> None:
    """Turn the plain adapter ``name`` just added to ``layer`` (module ``key``) into the config's variant."""
    # the variant modules subclass LoraVariant from this module, so they are imported here
    from adapterlab.tuners.lora import bdlora, kasa, mica, velora

    kind = config.variant
    if kind is None or kind == "use_dora":
        return
    module = {"kasa_config": kasa, "mica": mica, "velora_config": velora, "use_bdlora": bdlora}[kind]
    if not module.supports(layer):
        raise UnsupportedFeature(
            f"{VARIANT_LABELS[kind]} is not supported on {type(layer.base_layer).__name__} layers ({key!r}); "
            "leave this module out of target_modules"
        )
    variant = module.build(layer, name, config, key)
    if variant is not None:
        layer.lora_variant[name] = variant
