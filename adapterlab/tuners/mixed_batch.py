"""Mixed-batch inference: each row of one batch runs through its own adapter.

``model(**batch, adapter_names=["a", "b", "__base__", ...])`` groups the rows by adapter once per
call; every adapter-aware layer then adds each group's update to that group's rows only.
``"__base__"`` rows get no adapter at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from adapterlab.errors import AdapterNotFound, InvalidConfig

BASE_ROW = "__base__"


Groups = tuple[tuple[str, torch.Tensor], ...]


@dataclass(frozen=True)
class BatchPlan:
    """Rows grouped by adapter, for each batch size the model may see.

    Generation may run the encoder on the batch and the decoder on the batch with every row
    repeated ``k`` times (beams, return sequences), so the plan holds the grouping for both.
    """

    by_batch_size: dict[int, Groups]

    def rows_for(self, names: Sequence[str] | dict, x: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        """The row groups of ``x``'s batch whose adapter is among ``names`` (those one layer holds)."""
        groups = self.by_batch_size.get(x.shape[0])
        if groups is None:
            sizes = ", ".join(map(str, self.by_batch_size))
            raise InvalidConfig(
                "Length of `adapter_names` should be the same as the number of inputs, but got "
                f"{sizes} names for a batch of {x.shape[0]} rows; give one name per row"
            )
        for name, rows in groups:
            if name in names:
                yield name, rows.to(x.device)


def _groups(adapter_names: Sequence[str]) -> Groups:
    return tuple(
        (name, torch.tensor([i for i, n in enumerate(adapter_names) if n == name], dtype=torch.long))
        for name in dict.fromkeys(adapter_names)
        if name != BASE_ROW
    )


def make_plan(adapter_names: Sequence[str], known: set[str], repeats: int = 1) -> BatchPlan:
    """Group rows by adapter; ``repeats`` > 1 also plans for every row repeated that many times."""
    if isinstance(adapter_names, str):
        raise InvalidConfig("adapter_names must be a list with one adapter name per row, not a string")
    unknown = sorted({n for n in adapter_names if n != BASE_ROW and n not in known})
    if unknown:
        raise AdapterNotFound(
            f"Trying to infer with non-existing adapter(s): {', '.join(unknown)}; "
            f"loaded: {', '.join(sorted(known))} (or {BASE_ROW!r} for none)"
        )
    plan = {len(adapter_names): _groups(adapter_names)}
    if repeats > 1:
        plan[len(adapter_names) * repeats] = _groups([n for n in adapter_names for _ in range(repeats)])
    return BatchPlan(by_batch_size=plan)


@contextmanager
def mixed_batch(layers: Sequence[nn.Module], plan: BatchPlan) -> Iterator[None]:
    """Hand ``plan`` to every adapter-aware layer for the duration of one call."""
    for layer in layers:
        layer.batch_plan = plan
    try:
        yield
    finally:
        for layer in layers:
            layer.batch_plan = None


@runtime_checkable
class AdapterLayer(Protocol):
    """A layer holding adapters by name: a LoRA layer, a ``modules_to_save`` copy, a trainable-token
    table. Mixed batches hand it a plan; the tuner switches it off. (HF's ``BaseTunerLayer`` base
    covers the LoRA layers only, as in HF PEFT, where the other two are not tuner layers.)"""

    batch_plan: BatchPlan | None  # set for the duration of one mixed-batch call
    disable_adapters: bool


def adapter_layers(root: nn.Module) -> list[nn.Module]:
    """Every layer under ``root`` that holds adapters."""
    return [m for m in root.modules() if isinstance(m, AdapterLayer)]
