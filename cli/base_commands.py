"""``adapters base fingerprint`` and ``adapters base add-location``: base models' files."""

from __future__ import annotations

from pathlib import Path

import click

from adapterlab.cli.context import open_registry
from adapterlab.cli.output import json_output


@click.group("base")
def base_group() -> None:
    """Base models: fingerprints of their weights, and where copies of them are.

    \b
    Example:
        adapters base fingerprint ./models/mt0-large
        adapters base add-location bigscience/mt0-large /data/models/mt0-large
    """


@base_group.command("fingerprint")
@click.argument("path", type=click.Path(path_type=Path))
@json_output(text=lambda result: result.fingerprint)
def fingerprint_command(path: Path):
    """Print the fingerprint of the model folder (or weights file) PATH.

    Same weights, same fingerprint: one safetensors file, shards with an index, or a legacy
    pytorch_model.bin. Any changed byte, name, dtype or shape changes it.

    \b
    Example:
        adapters base fingerprint ./models/mt0-large --json
    """
    from adapterlab.registry.files.fingerprint import fingerprint_checkpoint

    return fingerprint_checkpoint(path)


@base_group.command("add-location")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@json_output(
    text=lambda location: f"Recorded {location.path} on {location.host} as a copy of base {location.name}"
)
def add_location_command(name: str, path: Path):
    """Record PATH as a copy of the registered base NAME, after checking its weights' fingerprint.

    load, predict and export then find the base there without --base (on any machine the path
    holds it: the fingerprint is checked each time).

    \b
    Example:
        adapters base add-location sentence-transformers/all-MiniLM-L6-v2 /data/models/minilm
    """
    return open_registry().add_base_location(name, path)
