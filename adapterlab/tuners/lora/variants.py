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

from adapterlab.errors import UnsupportedFeature
from adapterlab.tuners.lora import bdlora, kasa, mica, velora

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


def attach(layer: LoraLayer, name: str, config: LoraConfig, key: str) -> None:
    """Turn the plain adapter ``name`` just added to ``layer`` (module ``key``) into the config's variant."""
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
