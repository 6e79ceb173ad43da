"""LoRA around ``nn.Conv1d``/``Conv2d``/``Conv3d``.

A is a convolution with the base's kernel, stride, padding and dilation from ``in_channels`` to
``r`` channels; B is a 1x1 (1x1x1) convolution from ``r`` to ``out_channels``. Convolving with A
and then with the pointwise B equals one convolution with the kernel ``B @ A`` (B mixes A's output
channels at each position), so the update merges into the base kernel exactly:

    delta[o, i, *k] = scaling * sum_r B[o, r] * A[r, i, *k]       # (out, in, *kernel)

A also takes the base's dilation and padding mode, which Hugging Face PEFT's A leaves out: for a
dilated base its merged and unmerged outputs differ, and so would checkpoints read across. Shapes
and keys are the same as in Hugging Face PEFT's checkpoints: ``lora_A.weight`` (r, in, *kernel),
``lora_B.weight`` (out, r, 1, ...). DoRA (:mod:`~adapterlab.tuners.lora.dora`) works per output channel.

On a grouped convolution (``groups`` = g > 1) A stays a full convolution and B is grouped (each of
its g groups maps r / g of A's channels to out / g outputs), as in Hugging Face PEFT. That update is
a dense kernel (out, in, *kernel), not a grouped one, so it cannot be merged into the base weights:
merging is refused. DoRA works: its norms are those of the dense kernel the layer computes (the base
kernel spread over its groups plus the update). Hugging Face PEFT instead takes the norms of B @ A
reshaped to the base's grouped shape, so a grouped-DoRA checkpoint trained there gives other outputs
here once its magnitudes have moved away from their initial norms.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from adapterlab.errors import InvalidConfig, UnsupportedFeature
from adapterlab.tuners.lora import dora, init
from adapterlab.tuners.lora.layer import LoraLayer, adapter_dtype, low_rank_path

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Conv(LoraLayer):
    """LoRA around an ``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d``."""

    def __init__(self, base_layer: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> None:
        super().__init__(base_layer, base_layer.in_channels, base_layer.out_channels)

    @property
    def layer_kind(self) -> str:
        return f"lora.{type(self.base_layer).__name__}"  # HF PEFT has one class per dimension: lora.Conv2d

    def add_adapter(
        self, name: str, r: int, alpha: float, dropout: float, use_rslora: bool, **kw: Any
    ) -> None:
        base = self.base_layer
        kind = type(base).__name__
        if base.groups > 1:
            if r % base.groups:
                raise InvalidConfig(
                    f"Targeting a {kind} with groups={base.groups} and rank {r}. Currently, support is "
                    "limited to conv layers where the rank is divisible by groups. Either choose a different "
                    "rank or do not target this specific layer."
                )
            warnings.warn(
                f"LoRA on a {kind} with groups={base.groups} cannot be merged into the base weights; "
                f"keep the adapter unmerged",
                UserWarning,
                stacklevel=2,
            )
        super().add_adapter(name, r, alpha, dropout, use_rslora, **kw)
        conv_type = (
            type(base) if type(base) in CONV_TYPES else next(t for t in CONV_TYPES if isinstance(base, t))
        )
        options = {"device": base.weight.device, "dtype": adapter_dtype(base.weight.dtype)}
        self.lora_A[name] = conv_type(
            self.in_features,
            r,
            base.kernel_size,
            base.stride,
            base.padding,
            base.dilation,
            bias=False,
            padding_mode=base.padding_mode,
            **options,
        )
        pointwise = (1,) * (base.weight.dim() - 2)
        self.lora_B[name] = conv_type(
            r,
            self.out_features,
            pointwise,
            pointwise,
            groups=base.groups,
            bias=self.lora_bias[name],
            **options,
        )
        init.initialize(self, name, kw.get("init_lora_weights", True))
        if kw.get("use_dora"):
            self.use_dora[name] = True
            self.lora_magnitude_vector[name] = nn.Parameter(dora.weight_norm(self, name, self.scaling[name]))

    def check_mergeable(self, names: list[str]) -> None:
        if any(name in self.r for name in names):
            self._refuse_grouped()
        super().check_mergeable(names)

    def _refuse_grouped(self) -> None:
        if self.base_layer.groups > 1:
            raise UnsupportedFeature(
                f"merging LoRA into a {type(self.base_layer).__name__} with groups="
                f"{self.base_layer.groups} is not supported; keep the adapter unmerged"
            )

    def lora_weight(self, name: str) -> torch.Tensor:
        """``B @ A`` as a dense kernel (out, in, *kernel), unscaled. With g groups, output channel o of
        group j = o // (out / g) mixes only A's channels of group j."""
        groups = self.base_layer.groups
        a = self.lora_A[name].weight  # (r, in, *kernel)
        b = self.lora_B[name].weight.flatten(1)  # (out, r / g)
        out, r = b.shape[0], a.shape[0]
        per_group = torch.bmm(b.view(groups, out // groups, -1), a.reshape(groups, r // groups, -1))
        return per_group.view(out, *a.shape[1:])  # (g, out / g, in * kernel) -> (out, in, *kernel)

    def get_delta_weight(self, name: str) -> torch.Tensor:
        self._refuse_grouped()  # the dense update does not fit a grouped kernel
        return self.lora_weight(name) * self.scaling[name]

    def lora_delta(self, x: torch.Tensor, result: torch.Tensor, name: str) -> torch.Tensor:
        return low_rank_path(self, x, result, name)

    @property
    def held_adapters(self) -> nn.ModuleDict:
        return self.lora_A
