"""BD-LoRA, block-diagonal LoRA (``use_bdlora=BdLoraConfig(...)``), for serving many adapters on a
model sharded over ``nblocks`` devices.

A sharded layer splits its input features (row-sharded: attention's output, the MLP's down
projection) or its output features (column-sharded: q/k/v, up/gate) over the devices. With A
block-diagonal on the first kind and B block-diagonal on the second, each device computes its own
slice of the LoRA path with no extra communication. A block-diagonal factor of shape (rows, cols)
stores only its ``nblocks`` diagonal blocks, stacked: a (rows, cols / nblocks) weight, block i its
rows [i * rows / nblocks, (i + 1) * rows / nblocks), applied to input slice i. That stacked weight
is what checkpoints hold under the usual ``lora_A.weight`` / ``lora_B.weight`` keys.

A block-diagonal A starts Kaiming-uniform (gain sqrt(2)) and a block-diagonal B at zero, whatever
``init_lora_weights`` says, as in Hugging Face PEFT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterlab.errors import InvalidConfig
from adapterlab.tuners.lora.layer import adapter_dtype
from adapterlab.tuners.lora.variant import LoraVariant, out_in, require_layer_type

if TYPE_CHECKING:
    from adapterlab.tuners.lora.config import LoraConfig
    from adapterlab.tuners.lora.layer import LoraLayer


def _require_blocks(fan_in: int, fan_out: int, nblocks: int, what: str) -> None:
    if fan_in % nblocks or fan_out % nblocks:
        raise InvalidConfig(
            f"BD-LoRA: {what} is {fan_out} x {fan_in}, not divisible by nblocks={nblocks} (into that many "
            "blocks); change r or nblocks"
        )


class BlockDiagonalLinear(nn.Module):
    """A bias-free linear map ``in_features -> out_features`` whose matrix is block-diagonal (Hugging Face
    PEFT's class and arguments). Its weight starts Kaiming-uniform with gain sqrt(2), or zero with
    ``init_zero``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        nblocks: int,
        init_zero: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        _require_blocks(in_features, out_features, nblocks, "a block-diagonal factor")
        self.in_features, self.out_features, self.nblocks = in_features, out_features, nblocks
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features // nblocks, device=device, dtype=dtype)
        )
        self.register_parameter("bias", None)
        with torch.no_grad():
            if init_zero:
                nn.init.zeros_(self.weight)
            else:
                nn.init.kaiming_uniform_(self.weight, a=0.0)  # not nn.Linear's a=sqrt(5): HF PEFT's choice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.weight.view(self.nblocks, self.out_features // self.nblocks, -1)  # (nb, out/nb, in/nb)
        x = x.unflatten(-1, (self.nblocks, -1))  # (..., nb, in/nb)
        return torch.einsum("...bi,boi->...bo", x, blocks).flatten(-2)  # (..., out)

    def weight_as_blockdiagonal_matrix(self) -> torch.Tensor:
        """The whole (out, in) matrix, zeros off the diagonal blocks."""
        return torch.block_diag(*self.weight.chunk(self.nblocks, dim=0))


def _dense(module: nn.Module) -> torch.Tensor:
    return (
        module.weight_as_blockdiagonal_matrix() if isinstance(module, BlockDiagonalLinear) else module.weight
    )


class BdLoraLinearVariant(LoraVariant):
    def weight(self, layer: LoraLayer, name: str) -> torch.Tensor:
        return _dense(layer.lora_B[name]) @ _dense(layer.lora_A[name])


def _block_diagonal_factor(config: LoraConfig, key: str) -> str | None:
    """Which factor of module ``key`` the patterns make block-diagonal: "A", "B" or None (neither)."""
    bd = config.use_bdlora
    on_a = any(pattern in key for pattern in bd.target_modules_bd_a or [])
    on_b = any(pattern in key for pattern in bd.target_modules_bd_b or [])
    if on_a and on_b:
        raise InvalidConfig(
            f"BD-LoRA: target {key!r} matches both A and B block-diagonal patterns; make the patterns of "
            "target_modules_bd_a and target_modules_bd_b distinct"
        )
    if not (on_a or on_b) and bd.match_strict:
        raise InvalidConfig(
            f"BD-LoRA: target {key!r} matches neither A nor B block-diagonal patterns; add it to one, or set "
            "match_strict=False in BdLoraConfig to keep plain LoRA there"
        )
    return "A" if on_a else "B" if on_b else None


def _factor_shape(factor: str, r: int, out_features: int, in_features: int) -> tuple[int, int]:
    """(in, out) of the factor as a linear map."""
    return (in_features, r) if factor == "A" else (r, out_features)


def check(base: nn.Module, r: int, config: LoraConfig, key: str) -> None:
    require_layer_type("BD-LoRA", base, key, (nn.Linear, Conv1D))
    factor = _block_diagonal_factor(config, key)
    nblocks = config.use_bdlora.nblocks
    if factor is not None:
        fan_in, fan_out = _factor_shape(factor, r, *out_in(base))
        _require_blocks(fan_in, fan_out, nblocks, f"the block-diagonal lora_{factor} of {key!r}")


def build(layer: LoraLayer, name: str, config: LoraConfig, key: str) -> BdLoraLinearVariant | None:
    """Make A or B of adapter ``name`` block-diagonal as the config's patterns say for module ``key``."""
    factor = _block_diagonal_factor(config, key)
    if factor is None:
        return None  # plain LoRA on this module (match_strict=False)
    fan_in, fan_out = _factor_shape(factor, layer.r[name], layer.out_features, layer.in_features)
    weight = layer.base_layer.weight
    dtype = adapter_dtype(weight.dtype)
    module = BlockDiagonalLinear(
        fan_in, fan_out, config.use_bdlora.nblocks, factor == "B", dtype, weight.device
    )
    (layer.lora_A if factor == "A" else layer.lora_B)[name] = module
    return BdLoraLinearVariant()
