"""LoRA layers (Hu et al. 2021, https://arxiv.org/abs/2106.09685, section 4.1).

::

    x ──► base_layer (frozen W) ───────────────────────────► (+) ──► y
    └───► dropout ──► lora_A (r x in) ──► lora_B (out x r) ──┘ × alpha / r

Each layer keeps the module it replaces as ``base_layer`` and holds any number of adapters in
``ModuleDict``/``ParameterDict`` entries keyed by adapter name. ``forward`` is the base output,
returned as is when the adapters are merged or disabled, plus each active adapter's scaled
low-rank path. Merging adds ``B @ A * scaling`` to the base weight, so merged inference costs what
the base costs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterlab.errors import InvalidConfig, UnsupportedModule
from adapterlab.tuners.lora import dora
from adapterlab.tuners.lora.low_rank import low_rank_update
from adapterlab.tuners.tuners_utils import BaseTunerLayer


def random_int16(n: int) -> torch.Tensor:
    """``n`` uniform int16 values on CPU, from torch's default generator.

    One 64-bit draw from torch seeds NumPy's PCG64, which fills the bits about 1.7x faster than
    torch's Mersenne Twister; so ``torch.manual_seed`` still decides every mask.
    """
    seed = int(torch.empty((), dtype=torch.int64).random_(-(2**63), None)) & (2**64 - 1)
    bits = np.random.PCG64(seed).random_raw((n + 3) // 4)
    return torch.from_numpy(bits.view(np.int16)[:n])


class LoraDropout(nn.Module):
    """Dropout on the input of the low-rank path (nn.Dropout's semantics).

    On CPU, ``nn.Dropout`` spends most of its time drawing one random number per element
    (``bernoulli_``); here each 64-bit draw yields four 16-bit uniforms (``random_int16``), about
    8x faster. ``p`` is thereby rounded to a multiple of 1/65536 and the kept values are scaled by
    the exact 1 / (1 - rounded p), so the output stays unbiased. Other devices use the fused
    ``F.dropout``.

    ``keep_mask`` hands the LoRA layer a 0/1 mask and that scale apart: the layer folds the scale
    into the tiny B matrix instead of spending a pass over the activations on it.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        dropped = round(p * 65536)
        self.threshold = dropped - 32768  # int16 values below this are dropped
        self.cpu_scale = 65536 / (65536 - dropped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        mask, scale = self.keep_mask(x)
        return x * mask * scale

    def keep_mask(self, x: torch.Tensor) -> tuple[torch.Tensor | None, float]:
        """``(mask, scale)``: forward is ``x * mask * scale``, mask 0 or 1 per element of ``x``
        (uint8 on CPU, ``x``'s dtype elsewhere). ``(None, 1.0)`` when not training."""
        if not self.training:
            return None, 1.0
        if x.device.type != "cpu":
            return torch.empty_like(x).bernoulli_(1 - self.p), 1 / (1 - self.p)
        uniform16 = random_int16(x.numel()).view(x.shape)
        # a uint8 mask, compared straight into: a quarter of a float mask's memory traffic in the
        # three passes that touch it, and multiplying by it is as fast (a bool mask is not)
        mask = torch.empty(x.shape, dtype=torch.uint8)
        return torch.ge(uniform16, self.threshold, out=mask), self.cpu_scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LoraLayer(nn.Module, BaseTunerLayer):
    """Bookkeeping shared by every LoRA layer: adapters by name, which are active, which merged."""

    adapter_layer_names = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
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
        self.use_dora: dict[str, bool] = {}
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.disable_adapters = False
        self.batch_plan = None  # a mixed_batch.BatchPlan while a mixed batch runs
        self._merged_norms: dict[str, torch.Tensor] = {}  # DoRA: norms at merge time, to unmerge exactly

    @property
    def adapter_names(self) -> list[str]:
        return list(self.r)

    def add_adapter(self, name: str, r: int, alpha: float, dropout: float, use_rslora: bool, **kw: Any) -> None:
        self.r[name] = r
        self.lora_alpha[name] = alpha
        self.scaling[name] = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.lora_dropout[name] = LoraDropout(dropout) if dropout > 0 else nn.Identity()
        self.use_dora[name] = False

    def set_scale(self, name: str, scale: float) -> None:
        """Multiply an adapter's alpha / r scaling by ``scale`` (e.g. 0.5 for half strength)."""
        self.scaling[name] = scale * self.lora_alpha[name] / self.r[name]

    def cast_adapter(self, name: str, dtype: torch.dtype) -> None:
        """Store adapter ``name``'s tensors in ``dtype``."""
        for modules in (self.lora_A, self.lora_B):
            if name in modules:
                modules[name].to(dtype)
        for params in (self.lora_embedding_A, self.lora_embedding_B, self.lora_magnitude_vector):
            if name in params:
                old = params[name]
                params[name] = nn.Parameter(old.detach().to(dtype), requires_grad=old.requires_grad)

    def delete_adapter(self, name: str) -> None:
        for container in (self.lora_A, self.lora_B, self.lora_dropout, self.lora_embedding_A,
                          self.lora_embedding_B, self.lora_magnitude_vector):
            if name in container:
                del container[name]
        for table in (self.r, self.lora_alpha, self.scaling, self.use_dora):
            table.pop(name, None)
        self.active_adapters = [a for a in self.active_adapters if a != name]

    def base_weight_out_in(self) -> torch.Tensor:
        """The base weight as (out, in), whatever way the base layer stores it."""
        weight = self.base_layer.weight
        return weight.T if self.fan_in_fan_out else weight

    def lora_weight(self, name: str) -> torch.Tensor:
        """``B @ A`` as (out, in), unscaled."""
        if name in self.lora_A:
            return self.lora_B[name].weight @ self.lora_A[name].weight
        return self.lora_embedding_B[name] @ self.lora_embedding_A[name]

    def get_delta_weight(self, name: str) -> torch.Tensor:
        """What merging adds to ``base_layer.weight``, in the base weight's own layout."""
        delta = self.lora_weight(name) * self.scaling[name]
        return delta.T if self.fan_in_fan_out else delta

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        names = self.active_adapters if adapter_names is None else adapter_names
        weight = self.base_layer.weight
        for name in names:
            if name not in self.r or name in self.merged_adapters:
                continue
            delta = self.get_delta_weight(name).to(weight.dtype)
            if self.use_dora[name]:
                new_weight, norm = dora.merged_weight(self, name, weight.data, delta)
                self._merged_norms[name] = norm
            else:
                new_weight = weight.data + delta
            if safe_merge and not torch.isfinite(new_weight).all():
                raise InvalidConfig(f"merging adapter {name!r} gives NaN or inf weights; the adapter is broken")
            weight.data = new_weight
            self.merged_adapters.append(name)

    def unmerge(self, keep: int = 0) -> None:
        """Take merged adapters back out of the base weight, newest first, until ``keep`` remain."""
        weight = self.base_layer.weight
        while len(self.merged_adapters) > keep:
            name = self.merged_adapters.pop()
            delta = self.get_delta_weight(name).to(weight.dtype)
            if self.use_dora[name]:
                weight.data = dora.unmerged_weight(self, name, weight.data, delta, self._merged_norms.pop(name))
            else:
                weight.data = weight.data - delta

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
        in_features, out_features = base_layer.weight.shape[::-1] if not fan_in_fan_out else base_layer.weight.shape
        super().__init__(base_layer, in_features, out_features)
        self.fan_in_fan_out = fan_in_fan_out

    def add_adapter(self, name: str, r: int, alpha: float, dropout: float, use_rslora: bool, **kw: Any) -> None:
        super().add_adapter(name, r, alpha, dropout, use_rslora)
        weight = self.base_layer.weight
        dtype = adapter_dtype(weight.dtype)
        self.lora_A[name] = nn.Linear(self.in_features, r, bias=False, device=weight.device, dtype=dtype)
        self.lora_B[name] = nn.Linear(r, self.out_features, bias=False, device=weight.device, dtype=dtype)
        init = kw.get("init_lora_weights", True)
        if init is True:
            nn.init.kaiming_uniform_(self.lora_A[name].weight, a=math.sqrt(5))  # nn.Linear's own init
            nn.init.zeros_(self.lora_B[name].weight)  # so the update starts at exactly 0
        elif init == "gaussian":
            nn.init.normal_(self.lora_A[name].weight, std=1 / r)
            nn.init.zeros_(self.lora_B[name].weight)
        if kw.get("use_dora"):
            self.use_dora[name] = True
            self.lora_magnitude_vector[name] = nn.Parameter(dora.weight_norm(self, name, self.scaling[name]))

    def lora_delta(self, x: torch.Tensor, result: torch.Tensor, name: str) -> torch.Tensor:
        """``result`` plus adapter ``name``'s path for input ``x``."""
        lora_a = self.lora_A[name]
        if x.dtype != lora_a.weight.dtype:
            x = x.to(lora_a.weight.dtype)
        dropout = self.lora_dropout[name]
        if self.use_dora[name]:
            return result + dora.forward_delta(self, name, dropout(x), result, dropout).to(result.dtype)
        if result.dtype != x.dtype:
            scaled_b = self.lora_B[name].weight * self.scaling[name]
            return result + F.linear(lora_a(dropout(x)), scaled_b).to(result.dtype)
        mask, keep_scale = dropout.keep_mask(x) if isinstance(dropout, LoraDropout) else (None, 1.0)
        # scaling and dropout's 1 / (1 - p) folded into the tiny B (out x r) instead of passes
        # over the (..., in) input or the (..., out) output
        scaled_b = self.lora_B[name].weight * (self.scaling[name] * keep_scale)
        return low_rank_update(result, x, mask, lora_a.weight, scaled_b)

    @property
    def held_adapters(self) -> nn.ModuleDict:
        return self.lora_A


class Embedding(LoraLayer):
    """LoRA around ``nn.Embedding``: A is a (r x vocab) lookup table, B maps r to the embedding size."""

    def __init__(self, base_layer: nn.Embedding) -> None:
        super().__init__(base_layer, base_layer.num_embeddings, base_layer.embedding_dim)

    def add_adapter(self, name: str, r: int, alpha: float, dropout: float, use_rslora: bool, **kw: Any) -> None:
        if kw.get("use_dora"):
            raise UnsupportedModule("DoRA is not supported on nn.Embedding layers; exclude embeddings from targets")
        super().add_adapter(name, r, alpha, dropout, use_rslora)
        weight = self.base_layer.weight
        dtype = adapter_dtype(weight.dtype)
        a = torch.randn((r, self.in_features), device=weight.device, dtype=dtype)
        b = torch.randn((self.out_features, r), device=weight.device, dtype=dtype)
        if kw.get("init_lora_weights", True) is not False:
            nn.init.zeros_(a)  # zero A (not B) here: a lookup of zeros keeps the update at 0
            nn.init.normal_(b)
        self.lora_embedding_A[name] = nn.Parameter(a)
        self.lora_embedding_B[name] = nn.Parameter(b)

    def get_delta_weight(self, name: str) -> torch.Tensor:
        return (self.lora_weight(name) * self.scaling[name]).T  # (vocab, dim), like the embedding table

    def base_weight_out_in(self) -> torch.Tensor:
        return self.base_layer.weight.T

    def lora_delta(self, x: torch.Tensor, result: torch.Tensor, name: str) -> torch.Tensor:
        base = self.base_layer
        hidden = F.embedding(
            x, self.lora_embedding_A[name].T, base.padding_idx, base.max_norm,
            base.norm_type, base.scale_grad_by_freq, base.sparse,
        )  # (..., r)
        update = F.linear(hidden, self.lora_embedding_B[name] * self.scaling[name])
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


def check_adaptable(name: str, module: nn.Module) -> None:
    """Raise UnsupportedModule unless LoRA can wrap ``module`` (found at ``name``)."""
    if isinstance(module, (LoraLayer, nn.Linear, Conv1D, nn.Embedding)):
        return
    raise UnsupportedModule(
        f"LoRA cannot adapt module {name!r} of type {type(module).__name__}; "
        f"supported types: nn.Linear, transformers Conv1D, nn.Embedding"
    )


def make_lora_layer(name: str, module: nn.Module) -> LoraLayer:
    """Wrap ``module`` (found at ``name``) in the LoRA layer for its type."""
    check_adaptable(name, module)
    return Embedding(module) if isinstance(module, nn.Embedding) else Linear(module)
