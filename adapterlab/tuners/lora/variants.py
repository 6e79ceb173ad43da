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

from types import ModuleType
from typing import TYPE_CHECKING

from torch import nn

from adapterlab.tuners.lora import bdlora, kasa, mica, velora
from adapterlab.tuners.lora.bdlora import BdLoraLinearVariant, BlockDiagonalLinear
from adapterlab.tuners.lora.kasa import KasaLinearVariant
from adapterlab.tuners.lora.variant import LoraVariant
from adapterlab.tuners.lora.velora import VeloraLinearVariant
from adapterlab.tuners.tuners_utils import BaseTunerLayer

if TYPE_CHECKING:
    from adapterlab.tuners.lora.config import LoraConfig
    from adapterlab.tuners.lora.layer import LoraLayer

# the classes under the names and in the module where HF PEFT has them
__all__ = [
    "VARIANTS",
    "BdLoraLinearVariant",
    "BlockDiagonalLinear",
    "KasaLinearVariant",
    "LoraVariant",
    "VeloraLinearVariant",
    "attach",
    "check",
]

# LoraConfig.variant -> the module implementing it: check(base, r, config, key), build(layer, ...)
VARIANTS: dict[str, ModuleType] = {
    "kasa_config": kasa,
    "mica": mica,
    "velora_config": velora,
    "use_bdlora": bdlora,
}


def check(config: LoraConfig, key: str, module: nn.Module, r: int) -> None:
    """Raise if the config's variant cannot go on module ``key`` with rank ``r``: called for every target
    before the first one changes, so a refused adapter leaves the model as it was."""
    if config.variant in VARIANTS:
        base = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
        VARIANTS[config.variant].check(base, r, config, key)


def attach(layer: LoraLayer, name: str, config: LoraConfig, key: str) -> None:
    """Turn the plain adapter ``name`` just added to ``layer`` (module ``key``) into the config's variant."""
    if config.variant not in VARIANTS:
        return  # plain LoRA, or DoRA (which the layer runs itself)
    variant = VARIANTS[config.variant].build(layer, name, config, key)
    if variant is not None:
        layer.lora_variant[name] = variant
