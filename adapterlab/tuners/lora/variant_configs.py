"""The sub-configs of LoRA's variants (``LoraConfig.kasa_config``, ``.velora_config``, ``.use_bdlora``),
with Hugging Face PEFT's fields and defaults. No torch here: configs are read where torch is absent.

In ``adapter_config.json`` each is a JSON object of its fields; :func:`as_subconfig` turns that back
into the dataclass when a config is loaded.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from adapterlab.errors import InvalidConfig, InvalidConfigType

VELORA_INIT_TYPES = ("batch_average_once", "batch_average", "random")  # in HF PEFT's message's order

T = TypeVar("T")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class KasaConfig:
    """KaSA (Wang et al. 2024, https://arxiv.org/abs/2412.06071): see adapterlab.tuners.lora.kasa.

    The two coefficients weigh the paper's regularizers, which only count when the training loop adds
    ``model._get_kasa_loss()`` to its loss."""

    # weight of the L2 penalty on the learned singular values, sum(lora_diag ** 2) (paper eq. 9-10)
    beta: float = 1e-4
    # weight of the orthogonality penalty ||B^T B - I|| + ||A A^T - I|| (paper eq. 11)
    gamma: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("beta", "gamma"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise InvalidConfig(f"KasaConfig: `{name}` must be non-negative, got {value!r}")


@dataclass
class VeloraConfig:
    """VeLoRA (Miles et al. 2024, https://arxiv.org/abs/2405.17991): see adapterlab.tuners.lora.velora."""

    # the input's features are split into this many groups, each compressed to one number for the backward
    num_groups: int = 64
    # factor on the activations rebuilt for the backward pass
    scale: float = 1.0
    # the projection each group is compressed along: "batch_average" (the normalized mean of the
    # training batch's groups, each forward), "batch_average_once" (of the first batch only), "random"
    init_type: Literal["batch_average", "batch_average_once", "random"] = "batch_average"

    def __post_init__(self) -> None:
        if isinstance(self.num_groups, bool) or not isinstance(self.num_groups, int) or self.num_groups <= 0:
            raise InvalidConfig(
                f"VeloraConfig: `num_groups` should be positive, got {self.num_groups!r}. Give the number of "
                "groups each input is split into, a positive integer"
            )
        if not _is_number(self.scale) or self.scale <= 0:
            raise InvalidConfig(f"VeloraConfig: `scale` should be positive, got {self.scale!r}.")
        if self.init_type not in VELORA_INIT_TYPES:
            *first, last = map(repr, VELORA_INIT_TYPES)
            raise InvalidConfig(
                f"VeloraConfig: Unsupported `init_type` {self.init_type!r}. Supported values are "
                f"{', '.join(first)}, and {last}."
            )


@dataclass
class BdLoraConfig:
    """BD-LoRA (block-diagonal LoRA): see adapterlab.tuners.lora.bdlora.

    A targeted module whose name contains a pattern of ``target_modules_bd_a`` gets a block-diagonal A
    (for row-sharded layers: attention's output, the MLP's down projection); one matching
    ``target_modules_bd_b`` a block-diagonal B (column-sharded: q/k/v, up and gate projections)."""

    # substrings of module names whose lora_A is block-diagonal
    target_modules_bd_a: list[str] | None = None
    # substrings of module names whose lora_B is block-diagonal
    target_modules_bd_b: list[str] | None = None
    # blocks per block-diagonal factor (the sharding degree at serving time)
    nblocks: int = 1
    # True: every targeted module must match one of the two lists
    match_strict: bool = True

    def __post_init__(self) -> None:
        for name in ("target_modules_bd_a", "target_modules_bd_b"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value)
            ):
                raise InvalidConfig(f"BdLoraConfig: `{name}` must be a list of module names, got {value!r}")
        overlap = set(self.target_modules_bd_a or []) & set(self.target_modules_bd_b or [])
        if overlap:
            raise InvalidConfig(
                f"BdLoraConfig: Found overlapping modules in target_modules_bd lists: {sorted(overlap)} are "
                "in both target_modules_bd_a and target_modules_bd_b; keep each in one"
            )
        if isinstance(self.nblocks, bool) or not isinstance(self.nblocks, int) or self.nblocks <= 0:
            raise InvalidConfig(f"BdLoraConfig: `nblocks` must be a positive integer, got {self.nblocks!r}")


def as_subconfig(value: Any, config_cls: type[T], field_name: str) -> T | None:
    """``value`` (None, a ``config_cls`` or the dict a saved config holds) as a ``config_cls`` or None."""
    if value is None or isinstance(value, config_cls):
        return value
    if isinstance(value, dict):
        names = {f.name for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
        unknown = sorted(set(value) - names)
        if unknown:  # written by a newer version: ignored, as PeftConfig ignores unknown fields
            warnings.warn(f"`{field_name}`: ignoring unknown keys {unknown}", stacklevel=3)
        return config_cls(**{k: v for k, v in value.items() if k in names})
    raise InvalidConfigType(
        f"`{field_name}` must be a `{config_cls.__name__}`, a dict, or None, got {type(value).__name__}"
    )
