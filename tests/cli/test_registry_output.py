"""The shared rendering: ``--json`` for scripts, tables and field views for people."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner

from adapterlab.cli.output import json_output, render_fields, render_table


@click.command()
@json_output(columns=("name", "metrics"))
def listing():
    return [{"name": "a", "metrics": {"acc": 0.912345678}}, {"name": "b" * 100, "metrics": {}}]


def test_json_flag_and_default_table() -> None:
    runner = CliRunner()
    assert json.loads(runner.invoke(listing, ["--json"]).stdout)[0]["metrics"] == {"acc": 0.912345678}
    table = runner.invoke(listing, []).stdout.splitlines()
    assert table[0].split() == ["NAME", "METRICS"]
    assert table[1].split() == ["a", "acc=0.912346"]
    assert table[2].startswith("b" * 61 + "...")


def test_field_view_shows_long_values_whole_and_empty_tables_say_so() -> None:
    digest = "f" * 64
    assert render_fields({"sha256": digest, "aliases": []}) == f"sha256   {digest}\naliases  "
    assert render_table([], ("name",)) == "(none)"
