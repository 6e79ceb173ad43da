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


class Record:
    def __init__(self, name: str) -> None:
        self.name = name

    def to_dict(self) -> dict:
        return {"name": self.name, "nested": [{"n": 1}], "child": Leaf() if self.name == "a" else None}


class Leaf:
    def to_dict(self) -> dict:
        return {"leaf": True}


def test_json_lists_are_one_array_with_one_record_per_line() -> None:
    from adapterlab.cli.output import to_json

    text = to_json([Record("a"), Record("b")])
    assert json.loads(text) == [
        {"name": "a", "nested": [{"n": 1}], "child": {"leaf": True}},
        {"name": "b", "nested": [{"n": 1}], "child": None},
    ]
    assert len(text.splitlines()) == 4  # "[", two records, "]"
    assert to_json([]) == "[]"
    assert json.loads(to_json(Record("a")))["child"] == {"leaf": True}
