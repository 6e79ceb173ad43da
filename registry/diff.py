"""``diff``: what changed between two versions (config, metrics, sizes, per-module LoRA deltas)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterlab.errors import InvalidConfig
from adapterlab.hf_format import PeftType
from adapterlab.registry import settings
from adapterlab.registry.files.adapter_folder import read_adapter_weights
from adapterlab.registry.files.lora_deltas import (
    ModuleComparison,
    compare_deltas,
    lora_deltas,
    plot_comparison,
)
from adapterlab.registry.mlflow.artifacts import download_adapter
from adapterlab.registry.records import AdapterVersion


@dataclass(frozen=True)
class VersionDiff:
    a: str
    b: str
    config: dict[str, dict[str, Any]]  # field -> {"a": ..., "b": ...}, differing fields only
    metrics: dict[str, dict[str, float | None]]  # key -> {"a", "b", "delta"}
    size_bytes: dict[str, int]
    trainable_params: dict[str, int]
    same_base: bool
    modules: list[ModuleComparison] | None  # None unless both are LoRA on the same base
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["modules"] = None if self.modules is None else [row.to_dict() for row in self.modules]
        return data


def diff(first: AdapterVersion, second: AdapterVersion, *, plot: Path | str | None = None) -> VersionDiff:
    if plot is not None:
        check_plot_path(Path(plot))  # before downloading and comparing anything
    same_base = first.base.fingerprint == second.base.fingerprint
    modules, note = None, None
    if first.peft_type != PeftType.LORA or second.peft_type != PeftType.LORA:
        note = "per-module deltas are compared for two LoRA versions only"
    elif not same_base:
        note = "the versions have different base models: their deltas are not comparable"
    else:
        modules, skipped = _compare_modules(first, second)
        if skipped:
            note = (
                f"{len(skipped)} module(s) left out of the delta comparison, their update not one B @ A "
                f"(grouped convolution, BD-LoRA block, parameter LoRA): {', '.join(skipped)}"
            )
        if plot is not None:
            plot_comparison(modules, (first.ref, second.ref), Path(plot))
    return VersionDiff(
        a=first.ref,
        b=second.ref,
        config=_config_changes(first.config, second.config),
        metrics=_metric_changes(first.metrics, second.metrics),
        size_bytes={"a": first.size_bytes, "b": second.size_bytes},
        trainable_params={"a": first.trainable_params, "b": second.trainable_params},
        same_base=same_base,
        modules=modules,
        note=note,
    )


PLOT_FORMATS = (".png", ".svg", ".pdf")


def check_plot_path(plot: Path) -> None:
    """The plot can be written where asked: an existing folder, a file name matplotlib can render."""
    if plot.suffix.lower() not in PLOT_FORMATS:
        raise InvalidConfig(f"--plot {plot} must end in {', '.join(PLOT_FORMATS)}")
    if plot.is_dir():
        raise InvalidConfig(f"--plot {plot} is a folder; give a file name such as {plot / 'deltas.png'}")
    if not settings.usable_folder(plot.absolute().parent, "--plot's folder").is_dir():
        raise InvalidConfig(
            f"--plot {plot}: the folder {plot.absolute().parent} does not exist; create it first"
        )


def _config_changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: {"a": a.get(key), "b": b.get(key)} for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)
    }


def _metric_changes(a: dict[str, float], b: dict[str, float]) -> dict[str, dict[str, float | None]]:
    changes = {}
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        changes[key] = {"a": x, "b": y, "delta": y - x if x is not None and y is not None else None}
    return changes


def _compare_modules(
    first: AdapterVersion, second: AdapterVersion
) -> tuple[list[ModuleComparison], list[str]]:
    """Per-module comparisons, and the modules of either version whose deltas are not compared."""
    with tempfile.TemporaryDirectory(prefix="adapterlab-diff-") as scratch:
        deltas = []
        for label, version in (("a", first), ("b", second)):
            folder = download_adapter(version.artifact_uri, version.sha256, Path(scratch) / label)
            deltas.append(lora_deltas(version.config, read_adapter_weights(folder)))
        skipped = sorted({*deltas[0].skipped, *deltas[1].skipped})
        return compare_deltas(deltas[0].by_module, deltas[1].by_module), skipped
