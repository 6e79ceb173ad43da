"""DoRA (Liu et al. 2024, https://arxiv.org/abs/2402.09353): weight-decomposed LoRA.

The adapted weight is split into a magnitude per output row, ``m`` (the trainable
``lora_magnitude_vector``, shape (out,)), and a direction ``(W + s * B @ A) / ||W + s * B @ A||``.
As in section 4.3 of the paper, the norm is treated as a constant (detached) in the backward pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from adapterlab.tuners.lora.layer import LoraLayer


def weight_norm(layer: LoraLayer, name: str, scaling: float) -> torch.Tensor:
    """Row norms of ``W + scaling * B @ A`` (out,): the magnitude DoRA starts from."""
    weight = layer.base_weight_out_in()
    lora_weight = layer.lora_weight(name).to(weight.dtype)
    return torch.linalg.norm(weight + scaling * lora_weight, dim=1).to(weight.dtype).detach()


def forward_delta(
    layer: LoraLayer, name: str, x: torch.Tensor, result: torch.Tensor, dropout: nn.Module
) -> torch.Tensor:
    """What DoRA adds to the base output ``result`` for the (dropped-out) input ``x``."""
    scaling = layer.scaling[name]
    weight = layer.base_weight_out_in().to(x.dtype)
    lora_weight = layer.lora_weight(name).to(x.dtype)
    norm = torch.linalg.norm(weight + scaling * lora_weight.detach(), dim=1).to(weight.dtype).detach()
    mag_norm_scale = (layer.lora_magnitude_vector[name] / norm).view(1, -1)  # (1, out)
    lora_result = layer.lora_B[name](layer.lora_A[name](x))
    if isinstance(dropout, nn.Identity) or not layer.training:
        # x is the input the base saw: reuse its output, without the bias
        bias = layer.base_layer.bias
        base_result = result if bias is None else result - bias
    else:
        base_result = F.linear(x, weight)
    return (mag_norm_scale - 1) * base_result + mag_norm_scale * lora_result * scaling


def embedding_output(layer: LoraLayer, name: str, result: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """DoRA on an embedding: ``m / ||W + s * B @ A|| * (base lookup + update)``, norms per embedding
    dimension (the table's columns), ``update`` being the scaled low-rank lookup (..., dim)."""
    weight = layer.base_weight_out_in()  # (dim, vocab)
    lora_weight = layer.lora_weight(name).detach().to(weight.dtype)
    norm = torch.linalg.norm(weight + layer.scaling[name] * lora_weight, dim=1).detach()  # (dim,)
    mag_norm_scale = layer.lora_magnitude_vector[name] / norm
    return (mag_norm_scale * (result + update)).to(result.dtype)


def _stored_in_out(layer: LoraLayer) -> bool:
    """Whether the base weight is stored (in, out): Conv1D (fan_in_fan_out) and embedding tables."""
    return layer.fan_in_fan_out or isinstance(layer.base_layer, nn.Embedding)


def merged_weight(
    layer: LoraLayer, name: str, weight: torch.Tensor, delta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The base weight with DoRA merged in (same layout as ``weight``), and the norm used."""
    transpose = _stored_in_out(layer)
    combined = weight + delta
    norm = torch.linalg.norm(combined.T if transpose else combined, dim=1).detach()
    factor = (layer.lora_magnitude_vector[name] / norm).view(-1, 1)  # (out, 1)
    return (factor.T if transpose else factor) * combined, norm


def unmerged_weight(
    layer: LoraLayer, name: str, weight: torch.Tensor, delta: torch.Tensor, norm: torch.Tensor
) -> torch.Tensor:
    """Undo :func:`merged_weight` with the norm it returned."""
    factor = (layer.lora_magnitude_vector[name] / norm).view(-1, 1)
    return weight / (factor.T if _stored_in_out(layer) else factor) - delta
