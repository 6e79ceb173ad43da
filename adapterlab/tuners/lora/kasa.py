"""KaSA, knowledge-aware singular-value adaptation (Wang et al. 2024, https://arxiv.org/abs/2412.06071).

Two changes to LoRA on an ``nn.Linear`` with weight W (out, in), k = min(out, in):

1. When the adapter is added, W is replaced by its best rank-(k - r) approximation: its r smallest
   singular directions (the "noisy, long-tail knowledge") are dropped. This changes the base model
   for good: disabling or unloading the adapter does not bring them back, and a KaSA adapter cannot
   share a model with adapters that are not KaSA (they would see another base).
2. The update gets a learned diagonal ``lora_diag`` (r,) between A and B (section 3.2):
   ``delta W = scaling * B @ diag(lora_diag) @ A``. B starts at zero, so the update does too.

The paper's two regularizers (an L2 penalty on ``lora_diag``, an orthogonality penalty on A and B)
are :func:`regularization_loss`, which the training loop adds to its loss (``model._get_kasa_loss()``).
Checkpoints hold ``lora_diag`` next to ``lora_A.weight`` and ``lora_B.weight``; loading one on the
original base model truncates that base again, the same way, so the outputs match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from adapterlab.errors import InvalidConfig
from adapterlab.tuners.lora.variant import LoraVariant, require_layer_type

if TYPE_CHECKING:
    from adapterlab.tuners.lora.config import LoraConfig
    from adapterlab.tuners.lora.layer import LoraLayer


class KasaLinearVariant(LoraVariant):
    def update(self, layer: LoraLayer, name: str, x: torch.Tensor) -> torch.Tensor:
        hidden = layer.lora_A[name](x) * layer.lora_diag[name]  # (..., r): diag(lora_diag) @ A x
        return layer.lora_B[name](hidden) * layer.scaling[name]

    def weight(self, layer: LoraLayer, name: str) -> torch.Tensor:
        return (layer.lora_B[name].weight * layer.lora_diag[name]) @ layer.lora_A[name].weight

    def checkpoint_tensors(self, layer: LoraLayer, name: str) -> dict[str, torch.Tensor]:
        return {"lora_diag": layer.lora_diag[name]}


def check(base: nn.Module, r: int, config: LoraConfig, key: str) -> None:
    require_layer_type("KaSA", base, key, (nn.Linear,))  # as HF PEFT: not Conv1D, whose W is (in, out)
    k = min(base.weight.shape)
    if r >= k:
        raise InvalidConfig(
            f"KaSA requires `r` ({r}) to be smaller than min(in_features, out_features) ({k}) of {key!r}, so "
            "that some of the base weight survives the truncation; lower r or leave the module out"
        )


def build(layer: LoraLayer, name: str, config: LoraConfig, key: str) -> KasaLinearVariant:
    r = layer.r[name]
    if not hasattr(layer, "lora_diag"):
        layer.lora_diag = nn.ParameterDict()
        # a container of trained tensors like lora_A's: trainability, casts and deletion find it there
        layer.adapter_layer_names = (*layer.adapter_layer_names, "lora_diag")
    a = layer.lora_A[name].weight
    # any values do at the start: B is zero (random only with init_lora_weights=False, for tests)
    layer.lora_diag[name] = nn.Parameter(torch.randn(r, device=a.device, dtype=a.dtype))
    _truncate(layer.base_layer, r)
    return KasaLinearVariant()


@torch.no_grad()
def _truncate(base: nn.Linear, r: int) -> None:
    """Replace ``base.weight`` by its rank-(k - r) SVD approximation (drop the r smallest directions)."""
    weight = base.weight
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)  # float32: also for half bases on CPU
    keep = s.shape[0] - r
    weight.data = ((u[:, :keep] * s[:keep]) @ vh[:keep]).to(weight.dtype)


def regularization_loss(layer: LoraLayer, name: str, beta: float, gamma: float) -> torch.Tensor:
    """``beta * ||lora_diag||^2 + gamma * (||B^T B - I|| + ||A A^T - I||)`` for one adapter on one layer
    (paper eq. 9-11), in float32."""
    diag = layer.lora_diag[name].float()
    a = layer.lora_A[name].weight.float()  # (r, in)
    b = layer.lora_B[name].weight.float()  # (out, r)
    eye = torch.eye(diag.shape[0], device=diag.device)
    orthogonality = torch.linalg.norm(b.T @ b - eye) + torch.linalg.norm(a @ a.T - eye)
    return beta * (diag**2).sum() + gamma * orthogonality


def model_loss(model: nn.Module, configs: dict[str, LoraConfig], names: list[str]) -> torch.Tensor | float:
    """The regularizers summed over every KaSA layer of ``model`` for adapters ``names``; 0.0 if none."""
    total: torch.Tensor | float = 0.0
    for layer in model.modules():
        for name in names:
            if name in getattr(layer, "lora_diag", {}):
                kasa_config = configs[name].kasa_config
                total = total + regularization_loss(layer, name, kasa_config.beta, kasa_config.gamma)
    return total


def check_not_mixed(configs: dict[str, LoraConfig], config: LoraConfig) -> None:
    """KaSA changes the base weights, so an adapter that is not KaSA cannot share a model with one that is."""
    new_uses = config.kasa_config is not None
    for other_name, other in configs.items():
        if other is not config and (getattr(other, "kasa_config", None) is not None) != new_uses:
            raise InvalidConfig(
                "KaSA cannot be combined with adapters that don't use KaSA, since KaSA modifies the base "
                f"weights: the new adapter {'uses' if new_uses else 'does not use'} KaSA but adapter "
                f"{other_name!r} {'does not' if new_uses else 'does'}; load them on separate models"
            )
