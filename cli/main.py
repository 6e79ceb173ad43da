"""Entry point of the ``adapters`` console script.

Commands are imported only when they run (``LazyGroup``), so ``adapters --version`` and
``adapters list`` never pay for torch, transformers or mlflow. Every ``AdapterlabError`` becomes
one line on stderr and exit code 1 here, in one place; click's usage errors of a command become
one line with exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from adapterlab import __version__
from adapterlab.cli.context import REGISTRY_USED, CliState
from adapterlab.cli.output import escape_controls
from adapterlab.errors import AdapterlabError
from adapterlab.registry.redaction import redact

# command name -> "module:attribute" of its click command; add a line here to add a command
COMMANDS: dict[str, str] = {
    "export": "adapterlab.cli.export_command:export_command",
    "train": "adapterlab.cli.train_command:train_command",
    "predict": "adapterlab.cli.predict_command:predict_command",
    "register": "adapterlab.cli.registry_commands:register_command",
    "list": "adapterlab.cli.registry_commands:list_command",
    "show": "adapterlab.cli.registry_commands:show_command",
    "bases": "adapterlab.cli.registry_commands:bases_command",
    "diff": "adapterlab.cli.diff_command:diff_command",
    "promote": "adapterlab.cli.registry_commands:promote_command",
    "demote": "adapterlab.cli.registry_commands:demote_command",
    "history": "adapterlab.cli.registry_commands:history_command",
    "pull": "adapterlab.cli.registry_commands:pull_command",
    "sync": "adapterlab.cli.registry_commands:sync_command",
    "base": "adapterlab.cli.base_commands:base_group",
    "db": "adapterlab.cli.db_commands:db_group",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is needed."""

    def __init__(self, *args, lazy_commands: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._lazy_commands.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AdapterlabError as exc:
            if ctx.params.get("debug"):
                raise
            fail(_naming_registry(str(exc), ctx.meta.get(REGISTRY_USED)), 1)
        except click.UsageError as exc:  # click's own (exit 2): one line too, pointing at the help
            if ctx.params.get("debug"):
                raise
            command = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            fail(f"{exc.format_message()} (see `{command} --help`)", exc.exit_code)


def _naming_registry(message: str, registry: str | None) -> str:
    """``message``, plus which registry the command used (an answer from the wrong one is a common
    surprise once ``.adapterlab`` is found in a parent folder)."""
    if registry is None or registry in message:
        return message
    return f"{message} (registry: {registry})"


def fail(message: str, code: int) -> None:
    """Exit with ``message`` as one line on stderr; names in it may be anyone's text, so escaped."""
    # never a credential quoted from a URL or driver
    click.echo(f"Error: {escape_controls(redact(' '.join(message.split())))}", err=True)
    sys.exit(code)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS)
@click.version_option(__version__, prog_name="adapters")
@click.option(
    "--registry-url",
    envvar="ADAPTERLAB_REGISTRY_URL",
    default=None,
    help="SQLAlchemy URL of the adapter registry (default: sqlite under $ADAPTERLAB_HOME).",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, registry_url: str | None, debug: bool) -> None:
    """Train, register, compare and promote parameter-efficient adapters.

    \b
    Example:
        adapters train
        adapters list --base bigscience/mt0-large
        adapters promote quickstart-complaints:3 --alias production
    """
    ctx.obj = CliState(registry_url=registry_url, debug=debug)
