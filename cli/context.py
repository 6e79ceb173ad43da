"""State that the top-level ``adapters`` options hand down to every command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from adapterlab.registry.api import Registry


@dataclass(frozen=True)
class CliState:
    registry_url: str | None  # --registry-url; None means ADAPTERLAB_REGISTRY_URL or the default
    debug: bool  # --debug: show tracebacks instead of one-line errors


def cli_state() -> CliState:
    """The options given to ``adapters`` itself, from inside any sub-command."""
    state = click.get_current_context().find_object(CliState)
    return state if state is not None else CliState(registry_url=None, debug=False)


REGISTRY_USED = "adapterlab.registry"  # ctx.meta key: the opened registry, named in any error that follows


def open_registry(*, create: bool = False) -> Registry:
    """The registry ``--registry-url`` names, opened for this command and closed when it ends.

    Only commands that write a first version (``register``) pass ``create``: reading a registry
    that is not there is an error, not a new empty one.
    """
    from adapterlab.registry import Registry
    from adapterlab.registry.db.database import display_url

    registry = Registry.open(cli_state().registry_url, create=create)
    context = click.get_current_context()
    context.call_on_close(registry.close)
    context.meta[REGISTRY_USED] = display_url(registry.url)
    return registry
