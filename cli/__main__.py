"""``python -m adapterlab.cli``: the same as the ``adapters`` console script."""

from adapterlab.cli.main import cli

cli()
