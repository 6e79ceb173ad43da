"""LoRA layers (Hu et al. 2021, https://arxiv.org/abs/2106.09685, section 4.1).

::

    x ──► base_layer (frozen W) ───────────────────────────► (+) ──► y
    └───► dropout ──► lora_A (r x in) ──► lora_B (out x r) ──┘ × alpha / r

Each layer keeps the module it replaces as ``base_layer`` and holds any number of adapters in
``ModuleDict``/``ParameterDict`` entries keyed by adapter name. ``forward`` is the base output,
returned as is when the adapters are merged or disabled, plus each active adapter's scaled
low-rank path, ``lora_B(lora_A(dropout(x))) * scaling`` (scaling alpha / r, or alpha / sqrt(r) with
rsLoRA: :func:`lora_scaling`, the one place it is computed). On CPU that sum may run as the fused
update of :mod:`adapterlab.tuners.cpu_fast_paths`, with equal results. Merging adds
``B @ A * scaling`` to the base weight, so merged inference costs what the base costs.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterlab.errors import InvalidConfig, MergeImpossible, PeftWarning, UnsupportedFeature
from adapterlab.tuners import cpu_fast_paths
from adapterlab.tuners.lora import dora, init
from adapterlab.tuners.tuners_utils import BaseTunerLayer

if TYPE_CHECKING:
    from adapterlab.tuners.lora.variant import LoraVariant


def lora_scaling(alpha: float, r: int, use_rslora: bool) -> float:
    """The factor on ``B @ A``: alpha / r, or alpha / sqrt(r) for rsLoRA (Kalajdzievski 2023)."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


class LoraLayer(nn.Module, BaseTunerLayer):
    """Bookkeeping shared by every LoRA layer: adapters by name, which are active, which merged."""

    adapter_layer_names = (
        "lora_A",
        "lora_B",
        "lora_embedding_A",
        "lora_embedding_B",
        "lora_magnitude_vector",
    )
    other_param_names = ("r", "lora_alpha", "scaling", "lora_dropout")

    def __init__(self, base_layer: nn.Module, in_features: int, out_features: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features = in_features
        self.out_features = out_features
        self.fan_in_fan_out = False
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.lora_embedding_A = nn.ParameterDict()
        self.lora_embedding_B = nn.ParameterDict()
        self.lora_magnitude_vector = nn.ParameterDict()
        self.r: dict[str, int] = {}
        self.lora_alpha: dict[str, float] = {}
        self.scaling: dict[str, float] = {}
        self.use_rslora: dict[str, bool] = {}
        self.lora_bias: dict[str, bool] = {}
        self.use_dora: dict[str, bool] = {}
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.disable_adapters = False
        self.batch_plan = None  # a mixed_batch.BatchPlan while a mixed batch runs
        self._merged_norms: dict[str, torch.Tensor] = {}  # DoRA: norms at merge time, to unmerge exactly
        # adapters of a LoRA variant (KaSA, VeLoRA, BD-LoRA): their forward and update (lora.variants)
        self.lora_variant: dict[str, LoraVariant] = {}
        # per adapter, the containers (of adapter_layer_names) whose tensor never trains (MiCA's lora_B)
        self.frozen_peft_weight_names: dict[str, tuple[str, ...]] = {}

    @property
    def layer_kind(self) -> str:
        return f"lora.{type(self).__name__}"

    def _get_name(self) -> str:
        return self.layer_kind  # print(model) names adapter layers as HF PEFT does: lora.Linear(...)

    @property
    def adapter_names(self) -> list[str]:
        return list(self.r)

    def add_adapter(
        self, name: str, r: int, alpha: float, dropout: float, use_rslora: bool, **kw: Any
    ) -> None:
        self.r[name] = r
        self.lora_alpha[name] = alpha
        self.use_rslora[name] = use_rslora
        self.scaling[name] = lora_scaling(alpha, r, use_rslora)
        self.lora_dropout[name] = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_bias[name] = bool(kw.get("lora_bias", False))
        if self.lora_bias[name] and getattr(self.base_layer, "bias", None) is None:
            warnings.warn(
                "`lora_bias=True` was passed but the targeted layer of type "
                f"{type(self.base_layer).__name__} has no bias: adapter {name!r} will train, but merging "
                "it will be refused",
                PeftWarning,
                stacklevel=3,
            )
        self.use_dora[name] = False

    def set_scale(self, name: str, scale: float) -> None:
        """Multiply an adapter's scaling (alpha / r, or alpha / sqrt(r) for rsLoRA) by ``scale``."""
        self.scaling[name] = scale * lora_scaling(self.lora_alpha[name], self.r[name], self.use_rslora[name])

    def cast_adapter(self, name: str, dtype: torch.dtype) -> None:
        """Store adapter ``name``'s tensors in ``dtype``."""
        self._move_adapter(name, dtype)

    def release_to_meta(self, name: str) -> None:
        """Put adapter ``name``'s tensors on the meta device (shapes kept, no memory), for a load to
        fill with ``load_state_dict(..., assign=True)``: HF PEFT's ``low_cpu_mem_usage``."""
        self._move_adapter(name, "meta")

    def _move_adapter(self, name: str, to: torch.dtype | str) -> None:
        for container in self._containers():  # every ModuleDict/ParameterDict of adapter_layer_names
            if name not in container:
                continue
            if isinstance(container, nn.ModuleDict):
                container[name].to(to)
            else:
                old = container[name]
                container[name] = nn.Parameter(old.detach().to(to), requires_grad=old.requires_grad)

    def delete_adapter(self, name: str) -> None:
        # per-adapter state: the tensor containers, the variants' own (KaSA's lora_diag, in
        # adapter_layer_names; VeLoRA's projections, in other_param_names) and the plain tables
        for attr in (
            *self.adapter_layer_names,
            *self.other_param_names,
            "use_rslora",
            "lora_bias",
            "use_dora",
            "lora_variant",
            "frozen_peft_weight_names",
        ):
            container = getattr(self, attr)
            if name in container:
                del container[name]
        self.active_adapters = [a for a in self.active_adapters if a != name]

    def adapted_weight(self) -> torch.Tensor:
        """The base parameter that merging writes into."""
        return self.base_layer.weight

    def base_weight_out_in(self) -> torch.Tensor:
        """The base weight as (out, in), whatever way the base layer stores it."""
        weight = self.base_layer.weight
        return weight.T if self.fan_in_fan_out else weight

    def lora_weight(self, name: str) -> torch.Tensor:
        """``B @ A`` as (out, in), unscaled."""
        if name in self.lora_variant:
            return self.lora_variant[name].weight(self, name)
        if name in self.lora_A:
            return self.lora_B[name].weight @ self.lora_A[name].weight
        return self.lora_embedding_B[name] @ self.lora_embedding_A[name]

    def get_delta_weight(self, name: str) -> torch.Tensor:
        """What merging adds to ``base_layer.weight``, in the base weight's own layout."""
        delta = self.lora_weight(name) * self.scaling[name]
        return delta.T if self.fan_in_fan_out else delta

    def check_mergeable(self, names: list[str]) -> None:
        """Raise (an InvalidConfig) if any of adapters ``names`` held here cannot be merged into the base."""
        for name in names:
            if self.lora_bias.get(name) and getattr(self.base_layer, "bias", None) is None:
                raise MergeImpossible(
                    "Impossible to merge LoRA with `lora_bias=True` because the base layer has no bias: "
                    f"adapter {name!r} on {type(self.base_layer).__name__} has no bias to merge it into; "
                    "keep it unmerged"
                )

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        names = self.active_adapters if adapter_names is None else adapter_names
        weight = self.adapted_weight()
        self.check_mergeable(names)
        for name in names:
            if name not in self.r or name in self.merged_adapters:
                continue
            delta = self.get_delta_weight(name).to(weight.dtype)
            if self.use_dora[name]:
                new_weight, norm = dora.merged_weight(self, name, weight.data, delta)
                new_weight = new_weight.to(
                    weight.dtype
                )  # the magnitude may be float32 on a half-precision base
                self._merged_norms[name] = norm
            else:
                new_weight = weight.data + delta
            if safe_merge and not torch.isfinite(new_weight).all():
                raise InvalidConfig(
                    f"merging adapter {name!r} gives NaN or inf weights; the adapter is broken"
                )
            weight.data = new_weight
            self._shift_bias(name, +1)
            self.merged_adapters.append(name)

    def unmerge(self, keep: int = 0) -> None:
        """Take merged adapters back out of the base weight, newest first, until ``keep`` remain."""
        weight = self.adapted_weight()
        while len(self.merged_adapters) > keep:
            name = self.merged_adapters.pop()
            delta = self.get_delta_weight(name).to(weight.dtype)
            if self.use_dora[name]:
                weight.data = dora.unmerged_weight(
                    self, name, weight.data, delta, self._merged_norms.pop(name)
                ).to(weight.dtype)
            else:
                weight.data = weight.data - delta
            self._shift_bias(name, -1)

    def unloaded(self, merge: bool, safe_merge: bool, adapter_names: list[str] | None) -> nn.Module:
        """Merge the adapters (``merge``) or take any merged ones out, and return the module to put back
        in this layer's place."""
        if merge:
            self.merge(safe_merge=safe_merge, adapter_names=adapter_names)
        else:
            self.unmerge()
        return self.base_layer

    def _shift_bias(self, name: str, sign: int) -> None:
        """lora_bias: add (sign +1) or take out (-1) lora_B's scaled bias from the base layer's bias."""
        if not self.lora_bias.get(name):
            return
        bias = self.base_layer.bias
        bias.data = bias.data + sign * (self.lora_B[name].bias * self.scaling[name]).to(bias.dtype)

    def _forward_base(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor | None:
        """The base output when no adapter path applies, else None."""
        if self.disable_adapters:
            if self.merged_adapters:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if self.merged_adapters:
            return self.base_layer(x, *args, **kwargs)
        return None

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = self._forward_base(x, *args, **kwargs)
        if result is not None:
            return result
        result = self.base_layer(x, *args, **kwargs)
        if self.batch_plan is not None:
            return mixed_batch_forward(self, x, result, self.held_adapters)
        for name in self.active_adapters:
            if name in self.held_adapters:  # adapters with other targets have no entry here
                result = self.lora_delta(x, result, name)
        return result


class Linear(LoraLayer):
    """LoRA around ``nn.Linear`` or transformers' ``Conv1D`` (GPT-2, weight stored as (in, out))."""

    def __init__(self, base_layer: nn.Module) -> None:
        fan_in_fan_out = isinstance(base_layer, Conv1D)
        in_features, out_features = (
            base_layer.weight.shape[::-1] if not fan_in_fan_out else base_layer.weight.shape
        )
        super().__init__(base_layer, in_features, out_features)
        self.fan_in_fan_out = fan_in_fan_out

    def add_adapter(
        self, name: str, r: int, alpha: float, dropout: float, use_rslora: bool, **kw: Any
    ) -> None:
        super().add_adapter(name, r, alpha, dropout, use_rslora, **kw)
        weight = self.base_layer.weight
        dtype = adapter_dtype(weight.dtype)
        self.lora_A[name] = nn.Linear(self.in_features, r, bias=False, device=weight.device, dtype=dtype)
        self.lora_B[name] = nn.Linear(
            r, self.out_features, bias=self.lora_bias[name], device=weight.device, dtype=dtype
        )
        init.initialize(self, name, kw.get("init_lora_weights", True))
        if kw.get("use_dora"):
            self.use_dora[name] = True
            self.lora_magnitude_vector[name] = nn.Parameter(dora.weight_norm(self, name, self.scaling[name]))

    def lora_delta(self, x: torch.Tensor, result: torch.Tensor, name: str) -> torch.Tensor:
        """``result`` plus adapter ``name``'s path for input ``x``."""
        return low_rank_path(self, x, result, name)

    @property
    def held_adapters(self) -> nn.ModuleDict:
        return self.lora_A


def low_rank_path(layer: LoraLayer, x: torch.Tensor, result: torch.Tensor, name: str) -> torch.Tensor:
    """``result + lora_B(lora_A(dropout(x))) * scaling``: LoRA's forward (DoRA's, if the adapter is one).

    On CPU the same sum may be computed by :mod:`adapterlab.tuners.cpu_fast_paths` (equal results)."""
    lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
    dropout, scaling = layer.lora_dropout[name], layer.scaling[name]
    x = x.to(lora_a.weight.dtype)  # half-precision bases keep float32 adapters
    if layer.use_dora[name]:
        return result + dora.forward_delta(layer, name, dropout(x), result, dropout).to(result.dtype)
    if name in layer.lora_variant:
        return result + layer.lora_variant[name].update(layer, name, dropout(x)).to(result.dtype)
    if cpu_fast_paths.takes_lora_linear(x, result, dropout, lora_a, lora_b):
        return cpu_fast_paths.lora_linear_update(result, x, dropout, lora_a.weight, lora_b.weight, scaling)
    return result + (lora_b(lora_a(dropout(x))) * scaling).to(result.dtype)


class Embedding(LoraLayer):
    """LoRA around ``nn.Embedding``: A is a (r x vocab) lookup table, B maps r to the embedding size."""

    def __init__(self, base_layer: nn.Embedding) -> None:
        super().__init__(base_layer, base_layer.num_embeddings, base_layer.embedding_dim)

    def add_adapter(
        self, name: str, r: int, alpha: float, dropout: float, use_rslora: bool, **kw: Any
    ) -> None:
        if kw.get("lora_bias"):
            raise UnsupportedFeature(
                "lora_bias=True is not supported for Embedding layers; exclude embeddings "
                "from target_modules or set lora_bias=False"
            )
        super().add_adapter(name, r, alpha, dropout, use_rslora, **kw)
        weight = self.base_layer.weight
        dtype = adapter_dtype(weight.dtype)
        a = torch.randn((r, self.in_features), device=weight.device, dtype=dtype)
        b = torch.randn((self.out_features, r), device=weight.device, dtype=dtype)
        if kw.get("init_lora_weights", True) is not False:
            nn.init.zeros_(a)  # zero A (not B) here: a lookup of zeros keeps the update at 0
            nn.init.normal_(b)
        self.lora_embedding_A[name] = nn.Parameter(a)
        self.lora_embedding_B[name] = nn.Parameter(b)
        if kw.get("use_dora"):
            self.use_dora[name] = True
            self.lora_magnitude_vector[name] = nn.Parameter(dora.weight_norm(self, name, self.scaling[name]))

    def get_delta_weight(self, name: str) -> torch.Tensor:
        return (self.lora_weight(name) * self.scaling[name]).T  # (vocab, dim), like the embedding table

    def base_weight_out_in(self) -> torch.Tensor:
        return self.base_layer.weight.T

    def lora_delta(self, x: torch.Tensor, result: torch.Tensor, name: str) -> torch.Tensor:
        base = self.base_layer
        hidden = F.embedding(
            x,
            self.lora_embedding_A[name].T,
            base.padding_idx,
            base.max_norm,
            base.norm_type,
            base.scale_grad_by_freq,
            base.sparse,
        )  # (..., r)
        update = F.linear(hidden, self.lora_embedding_B[name]) * self.scaling[name]  # (..., dim)
        if self.use_dora[name]:
            return dora.embedding_output(self, name, result, update)
        return result + update.to(result.dtype)

    @property
    def held_adapters(self) -> nn.ParameterDict:
        return self.lora_embedding_A


def mixed_batch_forward(layer: LoraLayer, x: torch.Tensor, result: torch.Tensor, held: Any) -> torch.Tensor:
    """Add each row group's own adapter to its rows (see adapterlab.tuners.mixed_batch)."""
    for name, rows in layer.batch_plan.rows_for(held, x):
        updated = layer.lora_delta(x.index_select(0, rows), result.index_select(0, rows), name)
        result = result.index_copy(0, rows, updated)
    return result


def adapter_dtype(base_dtype: torch.dtype) -> torch.dtype:
    """Adapters train in float32 when the base is half precision (HF PEFT's autocast_adapter_dtype)."""
    if base_dtype in (torch.float16, torch.bfloat16) or not base_dtype.is_floating_point:
        return torch.float32
    return base_dtype


# HF PEFT's names for the layers it keeps in peft.tuners.lora.layer, defined in their own modules here
_ELSEWHERE = {
    "ParamWrapper": "adapterlab.tuners.lora.param_wrapper",
    "MultiheadAttention": "adapterlab.tuners.lora.mha",
}


def __getattr__(name: str) -> Any:
    if name not in _ELSEWHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_ELSEWHERE[name]), name)
