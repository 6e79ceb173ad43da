"""Others' text reaches the terminal escaped: a description, tag, reason or label can hold no live control.

Whoever registered or promoted may have typed terminal escape sequences (colour, cursor moves,
window titles, a carriage return that overwrites the line, a bidi override that reverses it);
every table, field view, text output and error line shows them as visible escapes, and ``--json``
(already escaped by the encoder) gives the text back exactly.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from adapterlab.cli.main import cli
from adapterlab.cli.output import cell, escape_controls, render_fields, render_table
from adapterlab.registry import promote, register_adapter

HOSTILE = (
    "ok\x1b[2J\x1b]0;owned\x07\rfake line\x9b31m\u202eevil\u2066\x7f"  # no NUL: PostgreSQL text refuses it
)
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31m", "\\x1b[31m"),
        ("a\rb", "a\\rb"),
        ("a\nb\tc", "a\\nb\\tc"),
        ("\x07\x00\x7f", "\\x07\\x00\\x7f"),
        ("\x9b", "\\x9b"),
        ("\u202eabc", "\\u202eabc"),
        ("\u2028", "\\u2028"),
        ("plain é ü 漢字", "plain é ü 漢字"),
    ],
)
def test_escape_controls(raw: str, shown: str) -> None:
    assert escape_controls(raw) == shown


def test_tables_and_field_views_escape_keys_and_values() -> None:
    row = {"name": "x", "description": HOSTILE, "tags": {"k\x1b": "v\r"}}
    for text in (render_table([row], ["name", "description", "tags"]), render_fields(row), cell(row)):
        assert not RAW_CONTROLS.search(text), repr(text)
        assert "\\x1b" in text
    assert render_fields({"a": "x\ny"}).count("\n") == 0  # a value cannot fake a second line


def test_show_list_history_escape_what_others_typed(
    registry_env, tiny_base, make_lora, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    register_adapter(
        make_lora(),
        name="x",
        base=tiny_base,
        description=HOSTILE,
        tags={"team": HOSTILE},
        metrics={"accuracy": 0.9},
    )
    promote("x:1", alias="production", reason=HOSTILE)
    runner = CliRunner()
    for args in (["show", "x:1"], ["show", "x@production"], ["list"], ["history", "x"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert not RAW_CONTROLS.search(result.stdout), (args, result.stdout)
        assert "\\x1b[2J" in result.stdout or args == ["list"], (args, result.stdout)
    shown = runner.invoke(cli, ["show", "x:1", "--json"])
    assert not RAW_CONTROLS.search(shown.stdout)  # JSON escapes them itself
    record = json.loads(shown.stdout)
    assert (
        record["description"] == HOSTILE and record["tags"]["team"] == HOSTILE
    )  # and gives them back exactly
    history = json.loads(runner.invoke(cli, ["history", "x", "--json"]).stdout)
    assert history[0]["reason"] == HOSTILE


def test_error_lines_escape_quoted_text(registry_env) -> None:
    result = CliRunner().invoke(cli, ["show", "x\x1b[31m:1"])
    assert result.exit_code == 1
    assert not RAW_CONTROLS.search(result.stderr) and "\\x1b" in result.stderr
    assert len(result.stderr.splitlines()) == 1
