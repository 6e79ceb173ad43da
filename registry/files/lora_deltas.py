"""Per-module LoRA weight deltas, ``delta = B @ A * scaling``, compared without forming them.

For A (r x in) and B (out x r) the Frobenius inner product of two deltas is
``<B1 A1, B2 A2> = trace((B1^T B2)(A2 A1^T))``: only r x r products, so comparing adapters of
a large model stays cheap. Tensors are read from safetensors files with numpy (no torch).

A convolution's A (r, in, *kernel) is flattened to (r, in * kernel), its B (out, r, 1, ...) to (out, r):
the same inner products as the kernels'. KaSA's ``lora_diag`` is folded into A (``B diag(d) A``).
Updates that are not one ``B @ A`` are left out, by name (:class:`Deltas`): grouped convolutions,
BD-LoRA's block-diagonal factors and LoRA on parameters (``target_parameters``, one pair per expert).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterlab.hf_format import LORA_A, LORA_B, LORA_EMBEDDING_A, LORA_EMBEDDING_B
from adapterlab.registry.files.adapter_layout import PREFIX, is_parameter_target, lora_modules
from adapterlab.registry.files.checkpoint_files import TensorEntry
from adapterlab.registry.files.lora_shapes import lora_shape

KASA_DIAG = "lora_diag"


@dataclass(frozen=True)
class LowRankDelta:
    a: Any  # numpy (r, in), float64
    b: Any  # numpy (out, r), float64
    scaling: float


@dataclass(frozen=True)
class ModuleComparison:
    module: str
    norm_a: float | None  # Frobenius norm of the first adapter's delta (None: module absent)
    norm_b: float | None
    cosine: float | None  # of the two deltas (None unless both have the module)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_array(entry: TensorEntry):
    """A tensor as a float64 numpy array (bf16 widened by hand: numpy has no bf16)."""
    import numpy as np

    if entry.buffer is not None:
        raw = np.frombuffer(entry.buffer, dtype=np.uint8)
    else:
        raw = np.fromfile(entry.path, dtype=np.uint8, count=entry.length, offset=entry.offset)
    if entry.dtype == "BF16":
        widened = raw.view("<u2").astype(np.uint32) << 16
        return widened.view("<f4").astype(np.float64).reshape(entry.shape)
    numpy_types = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}
    return raw.view(numpy_types[entry.dtype]).astype(np.float64).reshape(entry.shape)


@dataclass(frozen=True)
class Deltas:
    by_module: dict[str, LowRankDelta]
    skipped: tuple[str, ...]  # modules whose update is not one B @ A


def lora_deltas(config: dict[str, Any], tensors: list[TensorEntry]) -> Deltas:
    """module path -> its low-rank delta, for every LoRA module of an adapter whose update is B @ A."""
    by_name = {entry.name: entry for entry in tensors}
    deltas, skipped = {}, []
    for module, parts in lora_modules({name: entry.shape for name, entry in by_name.items()})[0].items():
        a_name, b_name = (LORA_A, LORA_B) if LORA_A in parts else (LORA_EMBEDDING_A, LORA_EMBEDDING_B)
        if a_name not in parts or b_name not in parts:
            continue
        shape = lora_shape(module, parts[a_name], parts[b_name], config)
        if shape is None or shape.kind == "blocks" or is_parameter_target(module, config):
            skipped.append(module)
            continue
        key = f"{PREFIX}{module}"
        a, b = read_array(by_name[f"{key}.{a_name}"]), read_array(by_name[f"{key}.{b_name}"])
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)  # a convolution's kernel, flattened
        if KASA_DIAG in parts:
            a = read_array(by_name[f"{key}.{KASA_DIAG}"])[:, None] * a
        deltas[module] = LowRankDelta(a=a, b=b, scaling=_scaling(config, module, shape.rank))
    return Deltas(by_module=deltas, skipped=tuple(sorted(skipped)))


def _scaling(config: dict[str, Any], module: str, rank: int) -> float:
    alpha = config.get("lora_alpha", 8)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if module == pattern or module.endswith(f".{pattern}") or re.fullmatch(pattern, module):
            alpha = value
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def inner(x: LowRankDelta, y: LowRankDelta) -> float:
    import numpy as np

    return float(np.trace((x.b.T @ y.b) @ (y.a @ x.a.T)) * x.scaling * y.scaling)


def compare_deltas(first: dict[str, LowRankDelta], second: dict[str, LowRankDelta]) -> list[ModuleComparison]:
    rows = []
    for module in sorted(set(first) | set(second)):
        x, y = first.get(module), second.get(module)
        norm_x = math.sqrt(max(inner(x, x), 0.0)) if x is not None else None
        norm_y = math.sqrt(max(inner(y, y), 0.0)) if y is not None else None
        cosine = None
        if x is not None and y is not None and x.a.shape[1] == y.a.shape[1] and x.b.shape[0] == y.b.shape[0]:
            cosine = inner(x, y) / (norm_x * norm_y) if norm_x and norm_y else 0.0
        rows.append(ModuleComparison(module=module, norm_a=norm_x, norm_b=norm_y, cosine=cosine))
    return rows


def plot_comparison(rows: list[ModuleComparison], labels: tuple[str, str], path: Path) -> None:
    """Bar chart of the delta norms per module, with the cosine similarity below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = range(len(rows))
    figure, (norms, cosines) = plt.subplots(2, 1, figsize=(max(6, len(rows) * 0.5), 7), sharex=True)
    norms.bar([p - 0.2 for p in positions], [row.norm_a or 0 for row in rows], width=0.4, label=labels[0])
    norms.bar([p + 0.2 for p in positions], [row.norm_b or 0 for row in rows], width=0.4, label=labels[1])
    norms.set_ylabel("||B A|| * scaling (Frobenius)")
    norms.legend()
    cosines.plot(
        list(positions), [row.cosine if row.cosine is not None else float("nan") for row in rows], "o-"
    )
    cosines.set_ylabel("cosine similarity")
    cosines.set_ylim(-1.05, 1.05)
    cosines.set_xticks(list(positions), [row.module for row in rows], rotation=90, fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
