"""``adapters train``: parse options into a TrainConfig, call ``adapterlab.training.train``, render.

Nothing heavy is imported at module level: ``adapters --help`` loads this module too.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

import click

from adapterlab.cli.context import cli_state
from adapterlab.cli.output import echo_text, to_json
from adapterlab.registry.redaction import redact
from adapterlab.training.config import METHODS, MIXED_PRECISION, SCHEDULERS, TASKS

# flag name -> TrainConfig field, for the options that map one to one
FLAG_FIELDS = (
    "base",
    "base_name",
    "task",
    "method",
    "data",
    "data_split",
    "eval_data",
    "text_column",
    "label_column",
    "target_column",
    "epochs",
    "max_steps",
    "lr",
    "batch_size",
    "grad_accum",
    "max_length",
    "seed",
    "eval_split",
    "name",
    "experiment",
    "output",
    "description",
    "warmup_ratio",
    "scheduler",
    "weight_decay",
    "max_grad_norm",
    "eval_steps",
    "save_steps",
    "logging_steps",
    "mixed_precision",
    "metric_for_best",
)


@click.command(
    "train",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    options_metavar="[CONFIG.yaml] [OPTIONS]",
    epilog=(
        "Any PEFT config field can be set as --peft.FIELD=VALUE, e.g. --peft.r=16 "
        "--peft.target_modules=[query,value]."
    ),
)
@click.option("--base", help="Base model: a local folder or a Hub id (default: the bundled MiniLM).")
@click.option(
    "--base-name", help="Name the registry records for the base (default: its Hub id or folder name)."
)
@click.option("--task", help=f"One of {', '.join(TASKS)} (default SEQ_CLS; any case, - or _ alike).")
@click.option("--method", help=f"One of {', '.join(METHODS)} (default LORA; any case, - or _ alike).")
@click.option(
    "--data", help="CSV, JSON, JSONL or Parquet file, or a Hub dataset (default: the complaints dataset)."
)
@click.option("--data-split", help="Split of a Hub dataset to train on (default: train).")
@click.option("--eval-data", help="A separate eval file/dataset (default: hold out --eval-split of --data).")
@click.option("--text-column", help="Input column (TOKEN_CLS: a list of words; CAUSAL_LM: the prompt).")
@click.option("--label-column", help="Label column (SEQ_CLS: class; TOKEN_CLS: list of word labels).")
@click.option("--target-column", help="Target column (SEQ_2_SEQ_LM: target text; CAUSAL_LM: the response).")
@click.option("--epochs", type=float)
@click.option("--max-steps", type=int, help="Optimizer steps; overrides --epochs.")
@click.option("--lr", type=float, help="Peak learning rate.")
@click.option("--batch-size", type=int, help="Per process and micro-batch.")
@click.option("--grad-accum", type=int, help="Micro-batches per optimizer step.")
@click.option("--max-length", type=int, help="Tokens per example (longer ones are cut).")
@click.option("--seed", type=int)
@click.option("--eval-split", type=float, help="Share of --data held out for evaluation.")
@click.option("--name", help="Adapter name in the registry (default: quickstart-complaints).")
@click.option("--experiment", help="MLflow experiment (default: adapterlab).")
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    help="Run folder (default: a new folder under $ADAPTERLAB_HOME/runs/NAME for each run; "
    "--resume continues the newest).",
)
@click.option("--description", help="Stored with the registered version.")
@click.option("--warmup-ratio", type=float, help="Share of steps spent warming up the learning rate.")
@click.option("--scheduler", type=click.Choice(SCHEDULERS))
@click.option("--weight-decay", type=float)
@click.option("--max-grad-norm", type=float)
@click.option("--eval-steps", type=int, help="Evaluate every N steps (default: every epoch).")
@click.option("--save-steps", type=int, help="Checkpoint every N steps.")
@click.option("--logging-steps", type=int, help="Log train metrics every N steps.")
@click.option("--mixed-precision", type=click.Choice(MIXED_PRECISION))
@click.option(
    "--metric-for-best",
    help="Eval metric that picks the best checkpoint (default: eval_accuracy / eval_loss).",
)
@click.option(
    "--gradient-checkpointing/--no-gradient-checkpointing", default=None, help="With --method LORA only."
)
@click.option("--resume", is_flag=True, default=None, help="Continue from the latest checkpoint in --output.")
@click.option(
    "--register/--no-register", default=None, help="Register the adapter on success (default: yes)."
)
@click.option("--print-config", is_flag=True, help="Print the resolved configuration as YAML and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
@click.pass_context
def train_command(ctx: click.Context, print_config: bool, as_json: bool, **options: Any) -> None:
    """Train an adapter, log the run to MLflow and register the result.

    With no arguments: the offline quickstart (LORA on MiniLM, SEQ_CLS of complaints).

    \b
    Example:
        adapters train
        adapters train run.yaml --epochs 3 --peft.r=16
        adapters train --base ./tiny-gpt2 --task CAUSAL_LM --data qa.jsonl \\
            --text-column question --target-column answer --name qa-bot
        accelerate launch --multi_gpu --num_processes 2 -m adapterlab.cli train
    """
    from adapterlab.errors import InvalidConfig
    from adapterlab.training.config import build_config, parse_peft_overrides, to_yaml

    config_file, peft_args = split_extra_args(ctx.args)
    try:
        peft_overrides = parse_peft_overrides(peft_args)
    except InvalidConfig as exc:
        raise click.UsageError(str(exc)) from exc
    flags = {name: options[name] for name in FLAG_FIELDS}
    flags.update(
        resume=options["resume"],
        register=options["register"],
        gradient_checkpointing=options["gradient_checkpointing"],
        registry_url=cli_state().registry_url,
    )
    config = build_config(config_file, flags, peft_overrides)
    if print_config:
        click.echo(to_yaml(config), nl=False)
        return
    from adapterlab.training import train

    result = train(config)
    if not result.is_main_process:
        return
    if as_json:
        click.echo(to_json(summary(result)))
    else:
        echo_text(render_result(result))


def split_extra_args(args: list[str]) -> tuple[str | None, list[str]]:
    """The optional CONFIG.yaml and the ``--peft.*`` pairs, from what click left unparsed.

    CONFIG is not a click argument: with unknown options allowed, click would give it the
    first ``--peft.X=Y`` when no file is named.
    """
    positional = [arg for arg in args if not arg.startswith("-")]
    unknown = [arg for arg in args if arg.startswith("-") and not arg.startswith("--peft.")]
    if unknown:
        raise click.UsageError(f"no such option: {unknown[0]} (PEFT fields are passed as --peft.FIELD=VALUE)")
    if len(positional) > 1:
        raise click.UsageError(f"expected at most one CONFIG.yaml, got: {' '.join(positional)}")
    return (positional[0] if positional else None), [arg for arg in args if arg.startswith("--peft.")]


def summary(result: Any) -> dict[str, Any]:
    """The finished run for ``--json``: the result's fields, the tracking URI without credentials."""
    fields = dataclasses.asdict(result)
    del fields["is_main_process"]  # only the main process prints
    return {**fields, "adapter_path": str(result.adapter_path), "tracking_uri": redact(result.tracking_uri)}


def render_result(result: Any) -> str:
    from adapterlab.training.progress import summary_table

    rows: list[tuple[str, Any]] = [
        (
            "adapter",
            f"{result.name}:{result.version}" if result.version else f"{result.name} (not registered)",
        ),
        ("task / method", f"{result.task} / {result.method}"),
        ("adapter folder", str(result.adapter_path)),
        ("mlflow run", result.run_id),
        ("best step", f"{result.best_step} of {result.steps}"),
        *sorted(result.metrics.items()),
        ("train / eval rows", f"{result.train_rows} / {result.eval_rows}"),
        ("trainable params", f"{result.trainable_parameters:,} of {result.total_parameters:,}"),
        ("time", f"{result.seconds:.1f} s ({result.samples_per_second:.1f} samples/s)"),
    ]
    lines = ["", "Training finished.", summary_table(rows), "", "Next:"]
    if result.version:
        lines += ["  adapters list", f"  adapters show {result.name}"]
    if result.tracking_uri.startswith(("http://", "https://")):
        lines.append(f"  open {redact(result.tracking_uri)} (MLflow run {result.run_id})")
    else:
        lines.append(
            f"  mlflow ui --backend-store-uri {shlex.quote(result.tracking_uri)}"
        )  # a home may hold spaces
    return "\n".join(lines)
