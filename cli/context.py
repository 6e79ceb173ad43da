"""State that the top-level ``adapters`` options hand down to every command."""

from __future__ import annotations

from dataclasses import dataclass

import click


@dataclass(frozen=True)
class CliState:
    registry_url: str | None  # --registry-url; None means ADAPTERLAB_REGISTRY_URL or the default
    debug: bool  # --debug: show tracebacks instead of one-line errors


def cli_state() -> CliState:
    """The options given to ``adapters`` itself, from inside any sub-command."""
    state = click.get_current_context().find_object(CliState)
    return state if state is not None else CliState(registry_url=None, debug=False)
