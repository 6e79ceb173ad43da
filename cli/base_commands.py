"""``adapters base fingerprint``: base models outside the registry database."""

from __future__ import annotations

from pathlib import Path

import click

from adapterlab.cli.output import json_output


@click.group("base")
def base_group() -> None:
    """Base models: fingerprints of their weights.

    \b
    Example:
        adapters base fingerprint ./models/mt0-large
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
