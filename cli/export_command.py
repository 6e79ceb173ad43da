"""``adapters export``: write a registered adapter (or base + adapter merged) to a folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from adapterlab.cli.context import open_registry
from adapterlab.cli.output import cell


@click.command("export")
@click.argument("ref")
@click.option(
    "--to",
    "to_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A new (or empty) folder to write to.",
)
@click.option(
    "--merged",
    is_flag=True,
    help="Fold the adapter into the base weights: a plain transformers model (LoRA only).",
)
@click.option(
    "--base",
    default=None,
    metavar="PATH|HUB_ID",
    help="With --merged: the base model's folder or Hub id (verified by fingerprint); default: found by "
    "the registry.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export_command(ref: str, to_dir: Path, merged: bool, base: str | None, as_json: bool) -> None:
    """Export adapter REF (NAME, NAME:VERSION or NAME@ALIAS) for use outside adapterlab.

    Without --merged: the adapter in the Hugging Face PEFT format (checksum-verified) with a model
    card (README.md) ready to upload to a hub. With --merged: the base model with the adapter
    merged in, loadable by transformers alone, with the base's tokenizer. Exported files name the
    base by its Hub id (else its registered name), never by a local folder.

    \b
    Example:
        adapters export quickstart-complaints@production --to ./export
        adapters export quickstart-complaints:3 --to ./merged --merged
        adapters export quickstart-complaints:3 --to ./merged --merged --base ./models/minilm
    """
    result = open_registry().export(ref, to_dir, merged=merged, base=base)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    shape = "merged model" if merged else "adapter (HF PEFT format)"
    click.echo(
        f"Exported {cell(result.ref)} as {shape} to {cell(str(result.path))}: {cell(list(result.files))}"
    )
