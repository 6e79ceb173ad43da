"""What a LoRA module's A and B shapes say: its rank and the shape of the update ``B @ A``.

The update has the shape of the weight it is added to, read per layer kind from the factors alone:

- ``nn.Linear`` / GPT-2 ``Conv1D`` / embeddings / ``nn.MultiheadAttention``'s in-projection:
  A (r, in), B (out, r), update (out, in) (an embedding's and a ``Conv1D``'s weight is its transpose);
- convolutions: A (r, in, *kernel), B (out, r / groups, 1, ...): the base kernel is
  (out, in / groups, *kernel), with ``groups`` = r / B's second dimension;
- BD-LoRA (``use_bdlora``): a block-diagonal A stores (r, in / nblocks), a block-diagonal B
  (out, r / nblocks), in modules whose path contains a pattern of ``target_modules_bd_a`` / ``_b``;
- a parameter (``target_parameters``, e.g. a MoE block's (experts, out, in) weight): A (experts * r,
  in), B (out, experts * r), checked against the parameter's last two dimensions.

Wrappers insert ``base_layer`` into paths (``attn.base_layer.out_proj``: LoRA on the out-projection
of an ``nn.MultiheadAttention`` that LoRA also wraps; ``experts.base_layer``: a second parameter of
one module); :func:`base_path` removes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Shape = tuple[int, ...]
WRAPPER = ".base_layer"


@dataclass(frozen=True)
class LoraShape:
    rank: int
    update: Shape  # (out, in, *kernel) of the dense update, in the base weight's layout for convolutions
    kind: str  # "matrix", "conv", "blocks": how far lora_deltas can form B @ A


def base_path(module: str) -> str:
    """The module's path in the base model, wrapper segments removed."""
    return module.replace(WRAPPER, "")


def targeted_path(module: str) -> str:
    """The path ``target_modules`` matched: the outermost wrapped module."""
    return module.split(WRAPPER, 1)[0]


def lora_shape(module: str, a: Shape, b: Shape, config: dict[str, Any]) -> LoraShape | None:
    """The rank and update of factors ``a`` and ``b`` of ``module``; None when they do not agree."""
    if len(a) == len(b) == 2:
        a_blocks, b_blocks = _blocks(module, config)
        if a[0] != b[1] * b_blocks:
            return None
        return LoraShape(a[0], (b[0], a[1] * a_blocks), "blocks" if a_blocks * b_blocks > 1 else "matrix")
    if len(a) == len(b) >= 3 and all(size == 1 for size in b[2:]) and b[1] > 0 and a[0] % b[1] == 0:
        groups = a[0] // b[1]
        if a[1] % groups:
            return None
        return LoraShape(a[0], (b[0], a[1] // groups, *a[2:]), "conv" if groups == 1 else "blocks")
    return None


def _blocks(module: str, config: dict[str, Any]) -> tuple[int, int]:
    """How many diagonal blocks A and B of ``module`` store (1: a full matrix)."""
    bd = config.get("use_bdlora")
    if not isinstance(bd, dict):
        return 1, 1
    nblocks = bd.get("nblocks") if isinstance(bd.get("nblocks"), int) else 1

    def matches(field: str) -> bool:
        patterns = bd.get(field) or []
        return isinstance(patterns, list) and any(isinstance(p, str) and p in module for p in patterns)

    return (nblocks if matches("target_modules_bd_a") else 1), (
        nblocks if matches("target_modules_bd_b") else 1
    )


def parameter_fits(update: Shape, rank: int, parameter: Shape) -> bool:
    """A LoRA on a 3-D parameter (experts, out, in) or (experts, in, out): one r per expert."""
    experts, matrix = parameter[0], parameter[1:]
    return len(parameter) == 3 and rank % experts == 0 and update in (matrix, matrix[::-1])
