"""``adapters register / list / show / bases / promote / demote / history / pull``.

Each command parses its options, calls one function of ``adapterlab.registry`` and returns the
result for ``cli.output`` to render. Nothing heavy is imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from adapterlab.cli.context import open_registry
from adapterlab.cli.output import echo_text, json_output

if TYPE_CHECKING:
    from adapterlab.registry.api import Registry

LIST_COLUMNS = ("name", "version", "base", "task_type", "peft_type", "aliases", "metrics", "created_at")
HISTORY_COLUMNS = ("created_at", "alias", "from_version", "to_version", "actor", "reason")
BASE_COLUMNS = ("name", "fingerprint", "model_type", "parameter_count", "adapter_count", "hub_id", "revision")


def _pairs(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE (e.g. accuracy=0.91)", param=param)
        pairs[key] = item
    return pairs


@click.command("register")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Adapter name: the line of versions this one joins.")
@click.option("--base", required=True, help="Base model: a local model folder, or a registered base's name.")
@click.option(
    "--base-name", default=None, help="Name to record for a folder's base (default: Hub id or folder name)."
)
@click.option(
    "--task", "task_type", default=None, help="Task type (default: the adapter config's task_type)."
)
@click.option("--metric", "metrics", multiple=True, callback=_pairs, help="KEY=NUMBER, repeatable.")
@click.option("--tag", "tags", multiple=True, callback=_pairs, help="KEY=VALUE, repeatable.")
@click.option("--description", default=None, help="Free text shown by `adapters show`.")
@click.option("--run-id", "mlflow_run_id", default=None, help="MLflow run that produced the adapter.")
@click.option(
    "--include",
    "include",
    multiple=True,
    metavar="PATTERN",
    help="Also store files matching this glob (relative to PATH), repeatable. By default only the "
    "adapter's own files are stored (config, weights, README.md, labels.json, tokenizer files).",
)
@json_output()
def register_command(path: Path, **options):
    """Register an adapter folder (HF PEFT format) as the next version of NAME.

    Only the adapter's own files are stored; the others are named on stderr (add them with
    --include). Links out of the folder and weights holding NaN or inf are refused.

    \b
    Example:
        adapters register ./out/adapter --name complaints --base ./models/mt0-large \\
            --base-name bigscience/mt0-large --metric accuracy=0.91 --tag team=support
    """
    return open_registry(create=True).register(path, **options)


@click.command("list")
@click.option("--base", default=None, help="Only adapters of this base model name.")
@click.option("--task", "task_type", default=None, help="Only this task type (e.g. SEQ_CLS).")
@click.option("--method", "peft_type", default=None, help="Only this PEFT method (e.g. LORA).")
@click.option("--alias", default=None, help="Only versions holding this alias.")
@click.option("--sort", default=None, help="Order by this metric (versions without it last).")
@click.option("--desc", "descending", is_flag=True, help="Sort descending.")
@click.option(
    "--limit", type=click.IntRange(min=1, max=2**31 - 1), default=None, help="At most this many rows."
)
@json_output(columns=LIST_COLUMNS)
def list_command(**filters):
    """List adapter versions, newest first per adapter.

    \b
    Example:
        adapters list --base bigscience/mt0-large --sort accuracy --desc --limit 5
        adapters list --alias production --json
    """
    return open_registry().list_versions(**filters)


@click.command("show")
@click.argument("ref")
@json_output()
def show_command(ref: str):
    """Show one version: REF is NAME (latest), NAME:VERSION or NAME@ALIAS.

    Aliases moved in MLflow's UI behind the registry's back are reported on stderr (drift).

    \b
    Example:
        adapters show complaints@production --json
    """
    registry = open_registry()
    version = registry.show(ref)
    _report_drift(registry, version.name)
    return version


@click.command("bases")
@json_output(columns=BASE_COLUMNS)
def bases_command():
    """List the registered base models and their fingerprints.

    \b
    Example:
        adapters bases --json
    """
    return open_registry().list_bases()


@click.command("promote")
@click.argument("ref")
@click.option("--alias", required=True, help="Alias to move, e.g. production.")
@click.option("--reason", default=None, help="Why, for the promotion history.")
@click.option(
    "--require", "require", multiple=True, help="METRIC>=VALUE (or >, <=, <, ==) that must hold; repeatable."
)
@json_output()
def promote_command(ref: str, alias: str, reason: str | None, require: tuple[str, ...]):
    """Point ALIAS at the version REF names (one transaction, recorded in the history).

    \b
    Example:
        adapters promote complaints:3 --alias production --reason "best F1" --require 'accuracy>=0.9'
    """
    return open_registry().promote(ref, alias=alias, reason=reason, require=require)


@click.command("demote")
@click.argument("name")
@click.option("--alias", required=True, help="Alias to remove.")
@click.option("--reason", default=None, help="Why, for the promotion history.")
@json_output()
def demote_command(name: str, alias: str, reason: str | None):
    """Remove ALIAS from adapter NAME.

    \b
    Example:
        adapters demote complaints --alias staging
    """
    return open_registry().demote(name, alias=alias, reason=reason)


@click.command("history")
@click.argument("name")
@json_output(columns=HISTORY_COLUMNS)
def history_command(name: str):
    """Every alias move of adapter NAME: who, when, from, to, why.

    Aliases moved in MLflow's UI behind the registry's back are reported on stderr (drift).

    \b
    Example:
        adapters history complaints --json
    """
    registry = open_registry()
    moves = registry.history(name)
    _report_drift(registry, name)
    return moves


def _report_drift(registry: Registry, name: str) -> None:
    """MLflow's aliases that differ from the registry's, or that they were not checked: on stderr, so
    ``--json`` stays one document."""
    report = registry.mlflow_drift(name)
    for line in report.lines() if report is not None else []:
        echo_text(line, err=True)


@click.command("pull")
@click.argument("ref")
@click.option("--to", "to_dir", required=True, type=click.Path(path_type=Path), help="New or empty folder.")
@json_output(text=lambda version: f"Pulled {version.ref} (sha256 {version.sha256}, verified)")
def pull_command(ref: str, to_dir: Path):
    """Download the files of REF into DIR and verify their sha256.

    \b
    Example:
        adapters pull complaints@production --to ./complaints-prod
    """
    return open_registry().pull(ref, to_dir)


@click.command("sync")
@click.option(
    "--from-mlflow",
    is_flag=True,
    help="The other way: adopt the aliases moved, set or removed in MLflow (its UI) into the registry, "
    "each with a history row.",
)
@json_output(text=lambda report: report.text())
def sync_command(from_mlflow: bool):
    """Bring MLflow's model registry up to date: mirror every version and alias it lacks.

    Registrations and promotions succeed while MLflow is down and say the mirror is behind;
    this catches up. Versions mirrored before they were MLflow Models (loadable with
    mlflow.pyfunc.load_model) are mirrored again as models, and their aliases moved onto them.
    Running it twice changes nothing the second time.

    \b
    Example:
        adapters sync --json
        adapters sync --from-mlflow      # keep the alias a teammate moved in MLflow's UI
    """
    return open_registry().sync(from_mlflow=from_mlflow)
