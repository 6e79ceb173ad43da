"""How a new LoRA adapter's A and B start (``LoraConfig.init_lora_weights``), for layers holding
``lora_A``/``lora_B`` modules (linear and convolution layers).

- ``True`` (the paper's choice): A Kaiming-uniform as ``nn.Linear`` draws it, B zero, so the
  adapted model starts equal to the base.
- ``"gaussian"``: A normal with std 1/r, B zero.
- ``False``: A and B keep their modules' random init (the update is not 0: for tests).
- ``"orthogonal"``: A and B built from disjoint rows of one random orthogonal r x r matrix, so
  ``B @ A = 0`` while both are nonzero (needs an even r).
- ``"pissa"`` (Meng et al. 2024, https://arxiv.org/abs/2404.02948): A and B from the top r singular
  triplets of W, ``B @ A * scaling = U_r S_r V_r^T``; the base keeps the residual W - that, so the
  model starts equal to the base. ``"pissa_niter_K"``: the same by a randomized SVD with K
  subspace iterations (``torch.svd_lowrank``), much faster on big layers.
- ``"olora"`` (Büyükakyüz 2024, https://arxiv.org/abs/2406.01775): W = QR; B = Q[:, :r],
  A = R[:r]; the base keeps W - scaling * B @ A.

PiSSA and OLoRA change the base weights: save the adapter with the base it was made from.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from adapterlab.errors import InvalidConfig, UnsupportedFeature
from adapterlab.tuners.lora.config import PISSA_NITER

if TYPE_CHECKING:
    from adapterlab.tuners.lora.layer import LoraLayer


@torch.no_grad()
def initialize(layer: LoraLayer, name: str, init: bool | str) -> None:
    """Set adapter ``name``'s A and B (and lora_B's bias, zero) on ``layer`` as ``init`` says."""
    a, b = layer.lora_A[name], layer.lora_B[name]
    if init is False or init == "mica":  # MiCA's factors are set by adapterlab.tuners.lora.mica
        return
    if b.bias is not None:
        nn.init.zeros_(b.bias)
    if init is True or init == "gaussian":
        if init is True:
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))  # nn.Linear's own init
        else:
            nn.init.normal_(a.weight, std=1 / layer.r[name])
        nn.init.zeros_(b.weight)  # so the update starts at exactly 0
        return
    if not isinstance(a, nn.Linear):
        raise UnsupportedFeature(
            f"init_lora_weights={init!r} is supported on linear layers only, not on "
            f"{type(layer.base_layer).__name__}; use True or 'gaussian'"
        )
    if init == "orthogonal":
        _orthogonal(layer, name)
    elif init == "olora":
        _olora(layer, name)
    else:
        _pissa(layer, name, init)


def _orthogonal(layer: LoraLayer, name: str) -> None:
    r = layer.r[name]
    if r % 2:
        raise InvalidConfig(
            f"Orthogonal initialization requires the LoRA rank to be even, got {r} instead. "
            "Choose an even r (or rank_pattern entry)"
        )
    q, _ = torch.linalg.qr(torch.randn(r, r))  # (r, r), orthonormal rows
    # A's rows span the odd rows of q, B's columns the even ones: q_even @ q_odd.T = 0, so B @ A = 0
    a = (torch.randn(layer.in_features, r // 2) @ q[0::2]).T / 10  # (r, in)
    b = torch.randn(r // 2, layer.out_features).T @ q[1::2] / 10  # (out, r); HF PEFT's order of draws
    _set_factors(layer, name, a, b)


def _olora(layer: LoraLayer, name: str) -> None:
    r, scaling = layer.r[name], layer.scaling[name]
    weight = layer.base_weight_out_in().float()  # (out, in)
    q, upper = torch.linalg.qr(weight)  # (out, k), (k, in)
    a, b = upper[:r], q[:, :r]
    _set_factors(layer, name, a, b)
    _set_base_weight(layer, weight - scaling * b @ a)


def _pissa(layer: LoraLayer, name: str, init: str) -> None:
    r, scaling = layer.r[name], layer.scaling[name]
    weight = layer.base_weight_out_in().float()  # (out, in)
    niter = PISSA_NITER.fullmatch(init)
    if niter is None:
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        u, s, vh = u[:, :r], s[:r], vh[:r]
    else:
        u, s, v = torch.svd_lowrank(weight, q=r, niter=int(niter.group(1)))
        vh = v.T
    root = torch.diag(torch.sqrt(s / scaling))  # (r, r): B @ A * scaling = U_r S_r V_r^T
    a, b = root @ vh, u @ root
    _set_factors(layer, name, a, b)
    _set_base_weight(layer, weight - scaling * b @ a)


def _set_factors(layer: LoraLayer, name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    for module, value in ((layer.lora_A[name], a), (layer.lora_B[name], b)):
        module.weight.copy_(value.to(module.weight.dtype).contiguous())


def _set_base_weight(layer: LoraLayer, weight_out_in: torch.Tensor) -> None:
    base = layer.base_layer.weight
    base.data = (weight_out_in.T if layer.fan_in_fan_out else weight_out_in).to(base.dtype).contiguous()
