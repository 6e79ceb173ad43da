"""``adapters diff``: compare two versions."""

from __future__ import annotations

from pathlib import Path

import click

from adapterlab.cli.context import open_registry
from adapterlab.cli.output import cell, json_output, render_table

MODULE_COLUMNS = ("module", "norm_a", "norm_b", "cosine")


def render_diff(result) -> str:
    lines = [f"{result.a}  vs  {result.b}" + ("" if result.same_base else "  (different base models)")]
    for field, values in result.config.items():
        lines.append(f"config {cell(field)}: {cell(values['a'])} -> {cell(values['b'])}")
    for key, values in result.metrics.items():
        delta = "" if values["delta"] is None else f" ({values['delta']:+.6g})"
        lines.append(f"metric {cell(key)}: {cell(values['a'])} -> {cell(values['b'])}{delta}")
    lines.append(f"size_bytes: {result.size_bytes['a']} -> {result.size_bytes['b']}")
    lines.append(f"trainable_params: {result.trainable_params['a']} -> {result.trainable_params['b']}")
    if result.modules is not None:
        lines.append(render_table([row.to_dict() for row in result.modules], MODULE_COLUMNS))
    if result.note:
        lines.append(f"note: {result.note}")
    return "\n".join(lines)


@click.command("diff")
@click.argument("ref_a")
@click.argument("ref_b")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the per-module delta norms and cosines to this PNG.",
)
@json_output(text=render_diff)
def diff_command(ref_a: str, ref_b: str, plot: Path | None):
    """Compare two versions: config, metrics, sizes and, for LoRA on one base, per-module deltas.

    \b
    Example:
        adapters diff complaints:2 complaints@production --plot deltas.png
    """
    return open_registry().diff(ref_a, ref_b, plot=plot)
