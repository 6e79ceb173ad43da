"""``adapters predict``: run a registered adapter on one text."""

from __future__ import annotations

import json

import click

from adapterlab.cli.context import open_registry
from adapterlab.cli.output import cell, echo_text


@click.command("predict")
@click.argument("ref")
@click.option("--text", required=True, help="The input text.")
@click.option(
    "--max-new-tokens",
    type=click.IntRange(1, 4096),
    default=32,
    show_default=True,
    help="Language-model tasks: how many tokens to generate at most.",
)
@click.option(
    "--base",
    default=None,
    metavar="PATH|HUB_ID",
    help="The base model's folder or Hub id (verified by fingerprint); default: found by the registry.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the prediction as JSON.")
def predict_command(ref: str, text: str, max_new_tokens: int, base: str | None, as_json: bool) -> None:
    """Run adapter REF (NAME, NAME:VERSION or NAME@ALIAS) on one text.

    Classification adapters print the most probable label and its probability; language-model
    adapters print the generated text. The base model is --base, else the first copy with the
    registered weights among its recorded folders, the Hugging Face cache and the Hub (when online).

    \b
    Example:
        adapters predict quickstart-complaints@production --text "My parcel never arrived"
        adapters predict quickstart-complaints:2 --text "Thanks, all good" --json
        adapters predict quickstart-complaints:2 --text "Thanks" --base ./models/minilm
    """
    prediction = open_registry().predict(ref, text, base=base, max_new_tokens=max_new_tokens)
    if as_json:
        click.echo(json.dumps(prediction.to_dict(), indent=2))
    elif prediction.label is not None:
        click.echo(
            f"{cell(prediction.label)}\t{prediction.probability:.4f}"
        )  # label names are the trainer's text
    else:
        echo_text(prediction.generated_text)
