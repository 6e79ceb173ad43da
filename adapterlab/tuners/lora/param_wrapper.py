"""LoRA on a named ``nn.Parameter`` (``LoraConfig.target_parameters``), e.g. MoE expert weights.

Some weights are not held by an ``nn.Linear``: a mixture-of-experts layer keeps all its experts in
one 3-D parameter (``experts.gate_up_proj``, (experts, out, in)) that its forward indexes itself.
:class:`ParamWrapper` replaces the module holding such a parameter, and while the module runs, the
parameter reads as ``W + scaling * B @ A`` (see :mod:`~adapterlab.tuners.lora.weight_space`), so the
module's own code runs unchanged on the adapted weight.

Shapes (Hugging Face PEFT's, so checkpoints are read across): a 2-D parameter (out, in) gets A (r, in)
and B (out, r). A 3-D parameter of E experts gets one rank-r update per expert, packed as
A (E * r, in), rows grouped by expert, and B (out, r * E), columns interleaved (column ``j * E + e``
is expert e's j-th). It is stored (E, out, in), or (E, in, out) when the module says
``is_transposed``. Each wrapper adapts one parameter; two parameters of one module get two nested
wrappers, the later-registered parameter outside (keys ``experts.lora_A.weight`` and
``experts.base_layer.lora_A.weight``).

Dropout is refused (it cannot act on the input of the low-rank path, which never sees the input),
and so are DoRA and lora_bias (see ``LoraConfig``), and mixed batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from adapterlab.errors import InvalidConfig, UnsupportedFeature
from adapterlab.tuners.lora import init
from adapterlab.tuners.lora.weight_space import Shift, WeightSpaceLayer


def check_shape(key: str, shape: torch.Size) -> None:
    """Raise UnsupportedFeature unless a parameter of ``shape`` (named ``key``) is one LoRA can adapt."""
    if len(shape) not in (2, 3):
        raise UnsupportedFeature(
            f"target_parameters: {key!r} has {len(shape)} dimensions; LoRA adapts 2-D weights and 3-D "
            "stacks of expert weights only"
        )


class ParamWrapper(WeightSpaceLayer):
    """LoRA on the parameter ``parameter_name`` of the module it wraps (possibly through other
    ParamWrappers, one per adapted parameter of that module)."""

    def __init__(self, base_layer: nn.Module, parameter_name: str) -> None:
        module = base_layer
        while isinstance(module, ParamWrapper):
            module = module.base_layer
        shape = getattr(module, parameter_name).shape
        check_shape(parameter_name, shape)
        if len(shape) == 2:
            experts, (out_features, in_features) = 1, shape
        else:
            experts, rows, cols = shape
            # (E, in, out) when the module says so, else (E, out, in) as nn.Linear stores weights
            in_features, out_features = (rows, cols) if self._transposed(module) else (cols, rows)
        super().__init__(base_layer, in_features, out_features)
        self.parameter_name = parameter_name
        self.num_experts = experts
        self._ndim = len(shape)

    @staticmethod
    def _transposed(module: nn.Module) -> bool:
        return bool(getattr(module, "is_transposed", False))

    def extra_repr(self) -> str:
        return f"parameter_name={self.parameter_name!r}"

    def adapted_weight(self) -> torch.Tensor:
        return getattr(self.get_base_layer(), self.parameter_name)

    def add_adapter(
        self, name: str, r: int, alpha: float, dropout: float, use_rslora: bool, **kw: Any
    ) -> None:
        if dropout:  # LoraConfig refuses these for target_parameters; a direct call is checked here
            raise InvalidConfig("lora_dropout must be 0 for target_parameters (LoRA on nn.Parameter)")
        super().add_adapter(name, r, alpha, dropout, use_rslora, **kw)
        self.add_factors(name, r * self.num_experts, self.adapted_weight())
        init.initialize(self, name, kw.get("init_lora_weights", True))

    def get_delta_weight(self, name: str) -> torch.Tensor:
        """What the adapter adds to the parameter, in the parameter's own layout."""
        a, b = self.lora_A[name].weight, self.lora_B[name].weight  # (E * r, in), (out, r * E)
        scaling = self.scaling[name]
        if self._ndim == 2:
            return b @ a * scaling  # (out, in)
        experts = self.num_experts
        a = a.view(experts, -1, a.shape[-1])  # (E, r, in)
        b = b.view(b.shape[0], -1, experts).permute(2, 0, 1)  # (E, out, r)
        delta = b @ a * scaling  # (E, out, in)
        return delta.transpose(1, 2) if self._transposed(self.get_base_layer()) else delta

    def check_mergeable(self, names: list[str]) -> None:
        module = self.get_base_layer()
        if any(name in self.r for name in names) and parametrize.is_parametrized(module, self.parameter_name):
            raise UnsupportedFeature(
                f"merging LoRA into {self.parameter_name!r}, which has its own parametrization, is not "
                "supported; keep the adapter unmerged"
            )
        super().check_mergeable(names)

    def unloaded(self, merge: bool, safe_merge: bool, adapter_names: list[str] | None) -> nn.Module:
        inner = super().unloaded(merge, safe_merge, adapter_names)
        if isinstance(inner, ParamWrapper):  # the module's other adapted parameters
            return inner.unloaded(merge, safe_merge, adapter_names)
        return inner

    def shifts(self, names: list[str]) -> list[Shift]:
        path, inner = self.parameter_name, self.base_layer
        while isinstance(inner, ParamWrapper):  # the module's other adapted parameters, wrapped inside
            path, inner = f"base_layer.{path}", inner.base_layer
        return [(path, sum(self.get_delta_weight(n) for n in names))]
