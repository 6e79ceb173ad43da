"""VeLoRA, memory-efficient training by rank-1 sub-token projections (Miles et al. 2024,
https://arxiv.org/abs/2405.17991).

The forward is plain LoRA's. What changes is what ``lora_A`` keeps for its backward pass: instead of
its whole input x (T tokens x in), each token's features are cut into ``num_groups`` groups of
``group_dim = ceil(in / num_groups)`` (zero-padded at the end) and each group is kept as one number,
its projection on a unit vector ``v`` (group_dim,): (T, num_groups) numbers instead of (T, in).
The gradient of A is then computed from the rebuilt input ``scale * (x_g . v) v``, an approximation.

``v`` (``lora_velora_embed``, saved with the adapter) is the normalized mean of the training batch's
groups: recomputed at each training forward (``init_type="batch_average"``), computed once at the
first (``"batch_average_once"``), or a random unit vector (``"random"``). Outside training (or under
``torch.no_grad``) nothing is compressed. Merging is plain LoRA's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterlab.tuners.lora.variant import LoraVariant, require_layer_type

if TYPE_CHECKING:
    from adapterlab.tuners.lora.config import LoraConfig
    from adapterlab.tuners.lora.layer import LoraLayer


class BufferDict(nn.Module):
    """Tensors by adapter name, in the module's state dict but never trained (HF PEFT's ``BufferDict``)."""

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._buffers[key]

    def __setitem__(self, key: str, value: torch.Tensor) -> None:
        self.register_buffer(key, value, persistent=True)

    def __delitem__(self, key: str) -> None:
        del self._buffers[key]

    def __contains__(self, key: object) -> bool:
        return key in self._buffers

    def __iter__(self) -> Iterator[str]:
        return iter(self._buffers)

    def __len__(self) -> int:
        return len(self._buffers)


def _grouped(x: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(..., in) -> (T, num_groups, group_dim), zero-padding the last group."""
    group_dim = -(-x.shape[-1] // num_groups)
    x = F.pad(x, (0, num_groups * group_dim - x.shape[-1]))
    return x.reshape(-1, num_groups, group_dim)


def _unit(v: torch.Tensor) -> torch.Tensor:
    """``v / ||v||`` in float32; a zero vector becomes the normalized all-ones vector."""
    v = v.float()
    if not torch.any(v):
        v = torch.ones_like(v)
    return v / torch.linalg.vector_norm(v)


class _CompressedLinear(torch.autograd.Function):
    """``x @ W^T`` whose backward rebuilds x from its projections on ``v`` for W's gradient."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, v: torch.Tensor, num_groups: int, scale: float
    ):
        v = v.to(x.dtype)
        ctx.save_for_backward(_grouped(x, num_groups) @ v, weight, v)  # (T, num_groups)
        ctx.x_shape, ctx.scale = x.shape, scale
        return F.linear(x, weight)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):
        compressed, weight, v = ctx.saved_tensors
        grad_2d = grad_out.reshape(-1, grad_out.shape[-1])  # (T, r)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_2d @ weight.to(grad_2d.dtype)).reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            in_features = ctx.x_shape[-1]
            rebuilt = (compressed.unsqueeze(-1) * v).flatten(1)[:, :in_features] * ctx.scale  # (T, in)
            grad_w = (grad_2d.T @ rebuilt.to(grad_2d.dtype)).to(weight.dtype)
        return grad_x, grad_w, None, None, None


class VeloraLinearVariant(LoraVariant):
    def __init__(self, num_groups: int, scale: float, init_type: str, projection_set: bool) -> None:
        self.num_groups, self.scale, self.init_type = num_groups, scale, init_type
        self.projection_set = projection_set  # "batch_average_once": whether v was computed yet

    def update(self, layer: LoraLayer, name: str, x: torch.Tensor) -> torch.Tensor:
        lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
        if layer.training and torch.is_grad_enabled():
            self._refresh_projection(layer, name, x)
            v = layer.lora_velora_embed[name]
            hidden = _CompressedLinear.apply(x, lora_a.weight, v, self.num_groups, self.scale)
        else:
            hidden = lora_a(x)
        return lora_b(hidden) * layer.scaling[name]

    @torch.no_grad()
    def _refresh_projection(self, layer: LoraLayer, name: str, x: torch.Tensor) -> None:
        if self.init_type == "random" or (self.init_type == "batch_average_once" and self.projection_set):
            return
        groups = _grouped(x.detach(), self.num_groups)  # (T, num_groups, group_dim)
        layer.lora_velora_embed[name].copy_(_unit(groups.flatten(0, 1).mean(0)))
        self.projection_set = True

    def checkpoint_tensors(self, layer: LoraLayer, name: str) -> dict[str, torch.Tensor]:
        return {"lora_velora_embed": layer.lora_velora_embed[name]}


def check(base: nn.Module, r: int, config: LoraConfig, key: str) -> None:
    require_layer_type("VeLoRA", base, key, (nn.Linear, Conv1D))


def build(layer: LoraLayer, name: str, config: LoraConfig, key: str) -> VeloraLinearVariant:
    velora_config = config.velora_config
    if not hasattr(layer, "lora_velora_embed"):
        layer.lora_velora_embed = BufferDict()
        layer.other_param_names = (*layer.other_param_names, "lora_velora_embed")  # not trained, saved
    weight = layer.base_layer.weight
    group_dim = -(-layer.in_features // velora_config.num_groups)
    is_random = velora_config.init_type == "random"
    v = _unit(torch.randn(group_dim, device=weight.device)) if is_random else torch.zeros(group_dim)
    layer.lora_velora_embed[name] = v.to(weight.device, weight.dtype)
    return VeloraLinearVariant(
        velora_config.num_groups, velora_config.scale, velora_config.init_type, is_random
    )
