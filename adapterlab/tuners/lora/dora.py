"""DoRA (Liu et al. 2024, https://arxiv.org/abs/2402.09353): weight-decomposed LoRA.

The adapted weight is split into a magnitude per output row, ``m`` (the trainable
``lora_magnitude_vector``, shape (out,)), and a direction ``(W + s * B @ A) / ||W + s * B @ A||``.
As in section 4.3 of the paper, the norm is treated as a constant (detached) in the backward pass.
On a convolution a "row" is one output channel's whole kernel (in, *kernel), and ``m`` is stored
as (1, out, 1, ...), the shape Hugging Face PEFT's checkpoints hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from adapterlab.tuners.lora.layer import LoraLayer


def _row_norms(weight: torch.Tensor) -> torch.Tensor:
    """Norm of each output row (out,) of an (out, in) matrix or an (out, in, *kernel) kernel."""
    return torch.linalg.norm(weight.flatten(1), dim=1)


def _per_output(weight: torch.Tensor) -> tuple[int, ...]:
    """The shape that broadcasts one value per output over a layer's output: (1, out) for a linear
    layer's (..., out); (1, out, 1, ...) for a convolution's (batch, out, *spatial)."""
    return (1, -1, *([1] * (weight.dim() - 2)))


def _dense(weight: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A grouped convolution's kernel (out, in / g, *kernel) as the dense kernel it acts as, shaped like
    ``like`` (out, in, *kernel): each output channel's weights sit on its group's inputs, zeros
    elsewhere. Any other weight is returned as is."""
    groups = like.shape[1] // weight.shape[1] if weight.dim() > 2 else 1
    if groups == 1:
        return weight
    out = weight.shape[0]
    channel = torch.arange(out, device=weight.device)
    dense = weight.new_zeros(out, groups, *weight.shape[1:])  # (out, g, in / g, *kernel)
    dense[channel, channel // (out // groups)] = weight
    return dense.view(like.shape)


def weight_norm(layer: LoraLayer, name: str, scaling: float) -> torch.Tensor:
    """Row norms of ``W + scaling * B @ A``: the magnitude DoRA starts from ((out,); convolutions
    (1, out, 1, ...))."""
    lora_weight = layer.lora_weight(name)
    # in the adapter's dtype (float32 on a half-precision base, unless autocasting is off), as lora_A/B
    weight = layer.base_weight_out_in().to(lora_weight.dtype)
    norm = _row_norms(_dense(weight, lora_weight) + scaling * lora_weight).detach()
    return norm.view(_per_output(weight)) if weight.dim() > 2 else norm


def _base_without_bias(layer: LoraLayer, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    base = layer.base_layer
    if isinstance(base, nn.modules.conv._ConvNd):
        return base._conv_forward(x, weight, None)  # the base's own padding mode, stride, dilation
    return F.linear(x, weight)


def forward_delta(
    layer: LoraLayer, name: str, x: torch.Tensor, result: torch.Tensor, dropout: nn.Module
) -> torch.Tensor:
    """What DoRA adds to the base output ``result`` for the (dropped-out) input ``x``."""
    scaling = layer.scaling[name]
    weight = layer.base_weight_out_in().to(x.dtype)
    lora_weight = layer.lora_weight(name).to(x.dtype)
    norm = _row_norms(_dense(weight, lora_weight) + scaling * lora_weight.detach()).to(weight.dtype).detach()
    per_output = _per_output(weight)
    mag_norm_scale = (layer.lora_magnitude_vector[name].flatten() / norm).view(per_output)  # (1, out[, 1...])
    lora_result = layer.lora_B[name](layer.lora_A[name](x))
    if isinstance(dropout, nn.Identity) or not layer.training:
        # x is the input the base saw: reuse its output, without the bias
        bias = layer.base_layer.bias
        base_result = result if bias is None else result - bias.view(per_output)
    else:
        base_result = _base_without_bias(layer, x, weight)
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
    norm = _row_norms(combined.T if transpose else combined).detach()
    factor = _merge_factor(layer, name, norm, weight)
    return (factor.T if transpose else factor) * combined, norm


def _merge_factor(layer: LoraLayer, name: str, norm: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``m / norm`` shaped to scale each output row of the weight: (out, 1[, 1...])."""
    return (layer.lora_magnitude_vector[name].flatten() / norm).view(-1, *([1] * (weight.dim() - 1)))


def unmerged_weight(
    layer: LoraLayer, name: str, weight: torch.Tensor, delta: torch.Tensor, norm: torch.Tensor
) -> torch.Tensor:
    """Undo :func:`merged_weight` with the norm it returned."""
    factor = _merge_factor(layer, name, norm, weight)
    return weight / (factor.T if _stored_in_out(layer) else factor) - delta
