"""LoRA layers whose update goes into the base module's weights for each call, not onto its output.

Some modules read raw parameters instead of calling a layer LoRA could wrap: ``nn.MultiheadAttention``
(its packed ``in_proj_weight``, and its ``out_proj.weight`` without calling ``out_proj``), or a
mixture-of-experts block indexing its 3-D expert weights. For them the layer runs the base module
with those parameters read as ``W + scaling * B @ A``; the stored parameters are never written (so
gradients reach A and B, and nothing is left behind if the call fails).

Two ways, chosen per parameter: a plain parameter (or the plain tensor FSDP puts in its place) is
swapped for the sum during the call, as ``torch.func.functional_call`` swaps tensors; a parameter
that already has a ``torch.nn.utils.parametrize`` entry gets one more, adding the delta to what the
others compute (as Hugging Face PEFT does), removed after the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from adapterlab.errors import UnsupportedFeature
from adapterlab.tuners.lora.layer import LoraLayer, adapter_dtype

# (path of a parameter inside the layer's base_layer, the delta to add to it for the call)
Shift = tuple[str, torch.Tensor]


class _AddDelta(nn.Module):
    """A parametrization: the value its earlier entries compute, plus ``delta``."""

    def __init__(self, delta: torch.Tensor) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta.to(weight.dtype)


@contextmanager
def _parametrized_shifts(shifts: list[tuple[nn.Module, str, torch.Tensor]]) -> Iterator[None]:
    with ExitStack() as stack:
        for module, name, delta in shifts:
            entry = _AddDelta(delta)
            parametrize.register_parametrization(module, name, entry, unsafe=True)  # unsafe: no trial run
            stack.callback(_remove_entry, module, name, entry)
        with parametrize.cached():  # a module reading the weight many times computes the sum once
            yield


def _remove_entry(module: nn.Module, name: str, entry: _AddDelta) -> None:
    entries = module.parametrizations[name]
    if len(entries) == 1:
        parametrize.remove_parametrizations(module, name, leave_parametrized=False)
    else:  # the module's own parametrizations stay
        del entries[next(i for i, e in enumerate(entries) if e is entry)]


@contextmanager
def _swapped(module: nn.Module, name: str, value: torch.Tensor) -> Iterator[None]:
    """Within the block, ``module.<name>`` reads ``value``."""
    # where the live tensor sits: the instance's own attributes (FSDP with use_orig_params puts it
    # there for the forward), else the module's table of parameters or of buffers
    tables = [t for t in (module.__dict__, module._parameters, module._buffers) if name in t]
    if not tables:
        raise UnsupportedFeature(
            f"{type(module).__name__}.{name} is neither a parameter nor a buffer; LoRA cannot adapt it"
        )
    original = tables[0][name]
    tables[0][name] = value
    try:
        yield
    finally:
        tables[0][name] = original


def call_shifted(root: nn.Module, shifts: list[Shift], args: tuple, kwargs: dict[str, Any]) -> Any:
    """``root(*args, **kwargs)`` with each parameter named in ``shifts`` read as its value plus its delta."""
    with ExitStack() as stack:
        stacked = []
        for path, delta in shifts:
            owner, _, name = path.rpartition(".")
            module = root.get_submodule(owner)
            if parametrize.is_parametrized(module, name):
                stacked.append((module, name, delta))
            else:
                weight = getattr(module, name)
                stack.enter_context(_swapped(module, name, weight + delta.to(weight.dtype)))
        stack.enter_context(_parametrized_shifts(stacked))
        return root(*args, **kwargs)


class WeightSpaceLayer(LoraLayer):
    """A LoRA layer that runs its base module on shifted weights; a subclass says which parameters get
    which deltas in :meth:`shifts`."""

    def shifts(self, names: list[str]) -> list[Shift]:
        """(parameter path inside base_layer, summed delta of adapters ``names``) per adapted weight."""
        raise NotImplementedError

    def add_factors(self, name: str, rank: int, like: torch.Tensor) -> None:
        """Create adapter ``name``'s A (rank, in) and B (out, rank) next to the base tensor ``like``."""
        options = {"device": like.device, "dtype": adapter_dtype(like.dtype)}
        self.lora_A[name] = nn.Linear(self.in_features, rank, bias=False, **options)
        self.lora_B[name] = nn.Linear(rank, self.out_features, bias=False, **options)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.batch_plan is not None:
            raise UnsupportedFeature(
                f"{self.layer_kind} does not support mixed adapter batches (adapter_names=...); "
                "run one adapter per batch"
            )
        if self.disable_adapters and self.merged_adapters:
            self.unmerge()
        names = [n for n in self.active_adapters if n in self.lora_A]
        if self.disable_adapters or self.merged_adapters or not names:
            return self.base_layer(*args, **kwargs)
        return call_shifted(self.base_layer, self.shifts(names), args, kwargs)
