"""MiCA, minor component adaptation (https://arxiv.org/abs/2604.01694): ``init_lora_weights="mica"``.

W = U S V^T (W as (out, in); an embedding's table read as (dim, vocab)). B (out, r) is set to the
left singular vectors of the r *smallest* singular values, U[:, -r:], and frozen; A starts at zero
and is the only factor that trains. So the update starts at 0 (the base is left alone) and learns in
the directions the pretrained weight uses least. Forward, merging and checkpoints are plain LoRA's:
loading a MiCA adapter sets B from the file like any other tensor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterlab.errors import InvalidConfig, InvalidConfigType
from adapterlab.tuners.lora.layer import Embedding
from adapterlab.tuners.lora.variant import require_layer_type

if TYPE_CHECKING:
    from adapterlab.tuners.lora.config import LoraConfig
    from adapterlab.tuners.lora.layer import LoraLayer

SVD_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check(base: nn.Module, r: int, config: LoraConfig, key: str) -> None:
    require_layer_type("MiCA", base, key, (nn.Linear, Conv1D, nn.Embedding))
    if base.weight.dtype not in SVD_DTYPES:
        raise InvalidConfigType(
            f"MiCA initializes from the base weight's SVD, which needs float32, float16 or bfloat16; {key!r} "
            f"is {base.weight.dtype}"
        )
    if r > min(base.weight.shape):
        raise InvalidConfig(
            f"MiCA requires `r` <= min(in_features, out_features) but got r={r} for {key!r} with weight "
            f"shape {tuple(base.weight.shape)}; lower r or leave the module out"
        )


@torch.no_grad()
def build(layer: LoraLayer, name: str, config: LoraConfig, key: str) -> None:
    weight = layer.base_weight_out_in()  # (out, in); an embedding's (dim, vocab)
    r = layer.r[name]
    u, _, _ = torch.linalg.svd(weight.float(), full_matrices=False)  # singular values descending
    a, b = _factors(layer, name)
    b.copy_(u[:, -r:])
    a.zero_()
    frozen = "lora_embedding_B" if isinstance(layer, Embedding) else "lora_B"
    layer.frozen_peft_weight_names[name] = (frozen,)
    b.requires_grad_(False)


def _factors(layer: LoraLayer, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if name in layer.lora_A:
        return layer.lora_A[name].weight, layer.lora_B[name].weight
    return layer.lora_embedding_A[name], layer.lora_embedding_B[name]
