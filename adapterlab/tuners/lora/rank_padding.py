"""Zero-padding LoRA ranks, so that adapters of different ranks fit the same tensors (compiled hotswap).

Padding A (r x in) with zero rows and B (out x r) with zero columns leaves ``B @ A`` unchanged, so
the output is the same while every adapter up to the padded rank can be copied into the tensors in
place, without the shape changes that make ``torch.compile`` recompile. On a grouped convolution B
is grouped (shape (out, r / g, ...)): group j of B reads A's channels ``[j r/g, (j+1) r/g)``, so A is
padded block by block, each group's rows followed by its zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from adapterlab.errors import InvalidConfig
from adapterlab.tuners.lora.layer import LoraLayer

# the tensors whose rank dimension padding grows: A's rank is dim 0, B's dim 1
RANK_ROLES = {"lora_A": "A", "lora_embedding_A": "A", "lora_B": "B", "lora_embedding_B": "B"}


def groups_of(layer: LoraLayer) -> int:
    """The base layer's convolution groups (1 for every other layer)."""
    return getattr(layer.base_layer, "groups", 1)


def rank_of(tensor: torch.Tensor, role: str, groups: int) -> int:
    """The (possibly padded) rank a LoRA A or B tensor holds."""
    return tensor.shape[0] if role == "A" else tensor.shape[1] * groups


def pad_rank(tensor: torch.Tensor, role: str, target: int, groups: int = 1) -> torch.Tensor:
    """``tensor`` (a LoRA A or B weight) with its rank zero-padded to ``target`` (see the module doc)."""
    dim, blocks = (0, groups) if role == "A" else (1, 1)
    old, new = tensor.shape[dim] // blocks, target // groups  # per block (B: its one block is r / g wide)
    shape = list(tensor.shape)
    shape[dim] = new * blocks
    padded = tensor.new_zeros(shape)
    for block in range(blocks):
        padded.narrow(dim, block * new, old).copy_(tensor.narrow(dim, block * old, old))
    return padded


def check_target_rank(layer: LoraLayer, path: str, target_rank: int) -> None:
    """Raise InvalidConfig when ``layer``'s adapters cannot be padded to ``target_rank``."""
    groups = groups_of(layer)
    if target_rank % groups:
        raise InvalidConfig(
            f"Trying to pad a Conv2d LoRA adapter with groups={groups} to target rank {target_rank}, but the "
            f"target rank is not divisible by {groups}. Please choose a target rank that is divisible by "
            f"{groups}. (layer {path})"
        )
    for name in layer.adapter_names:
        held = rank_tensors(layer, name)["lora_A"]
        rank = rank_of(held, "A", groups)
        if rank > target_rank:
            raise InvalidConfig(
                f"Trying to pad the adapter to the target rank {target_rank}, but the original rank is "
                f"larger ({rank}) (adapter {name!r} on {path}); choose a target_rank of at least the "
                "largest rank"
            )


def rank_tensors(layer: LoraLayer, name: str) -> dict[str, torch.Tensor]:
    """Adapter ``name``'s A and B tensors in ``layer`` (keys "lora_A", "lora_B")."""
    if name in layer.lora_A:
        return {"lora_A": layer.lora_A[name].weight, "lora_B": layer.lora_B[name].weight}
    return {"lora_A": layer.lora_embedding_A[name], "lora_B": layer.lora_embedding_B[name]}


@torch.no_grad()
def pad_layer(layer: LoraLayer, target_rank: int) -> None:
    """Zero-pad every adapter of ``layer`` to ``target_rank`` (checked by :func:`check_target_rank`)."""
    groups = groups_of(layer)
    for name in layer.adapter_names:
        for key, old in rank_tensors(layer, name).items():
            role = RANK_ROLES[key]
            new = nn.Parameter(pad_rank(old, role, target_rank, groups), requires_grad=old.requires_grad)
            if name in layer.lora_A:
                module = (layer.lora_A if role == "A" else layer.lora_B)[name]
                module.weight = new
                _resize_attributes(module, role, target_rank)
            else:
                (layer.lora_embedding_A if role == "A" else layer.lora_embedding_B)[name] = new


def _resize_attributes(module: nn.Module, role: str, rank: int) -> None:
    """Keep ``module``'s size attributes (shown by repr, read by some tools) true to its padded weight."""
    if isinstance(module, nn.Linear):
        setattr(module, "out_features" if role == "A" else "in_features", rank)
    else:
        setattr(module, "out_channels" if role == "A" else "in_channels", rank)
