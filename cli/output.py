"""The one way listing commands print: a table by default, ``--json`` for scripts.

``@json_output(columns=...)`` adds ``--json`` to a command whose function *returns* what it
found (records with ``to_dict()``, dicts, or lists of them) instead of printing it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import click

_CELL_WIDTH = 64  # a full SHA-256 fits


def jsonable(value: Any) -> Any:
    """Records (``to_dict()``), dicts and lists, as plain JSON values."""
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def _record(value: Any) -> Any:
    """json's ``default`` hook: records become their ``to_dict()`` as the encoder meets them, so
    ``--json`` needs no ``jsonable`` walk over the whole result first."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(result: Any) -> str:
    """``--json`` text. A list prints one compact object per line: still one JSON array, but
    written by json's C encoder (``indent`` forces the pure-Python one, which made a 5,000-row
    ``adapters list --json`` spend most of its time encoding)."""
    if isinstance(result, (list, tuple)):
        if not result:
            return "[]"
        encode = json.JSONEncoder(default=_record, separators=(", ", ": ")).encode
        return "[\n" + ",\n".join("  " + encode(item) for item in result) + "\n]"
    return json.dumps(result, indent=2, default=_record)


def json_output(columns: Sequence[str] | None = None, text: Callable[[Any], str] | None = None):
    """Decorate a command function that returns its result; adds ``--json``.

    Without ``--json``: ``text(result)`` when given, else a table of ``columns`` for lists and
    a two-column field table for single objects.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
        @functools.wraps(function)
        def command(*args: Any, as_json: bool, **kwargs: Any) -> None:
            result = function(*args, **kwargs)
            if as_json:
                click.echo(to_json(result))
                return
            data = jsonable(result)
            if text is not None:
                click.echo(text(result))
            elif isinstance(data, list):
                click.echo(render_table(data, columns or _columns_of(data)))
            else:
                click.echo(render_fields(data))

        return command

    return decorate


def _columns_of(rows: list[dict[str, Any]]) -> list[str]:
    return list(rows[0]) if rows else []


def cell(value: Any, width: int | None = None) -> str:
    """One value as text; tables cut long ones to ``width``, field views show them whole."""
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, dict):
        text = ", ".join(f"{key}={cell(item)}" for key, item in value.items())
    elif isinstance(value, list):
        text = ", ".join(cell(item) for item in value)
    else:
        text = str(value)
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def render_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[cell(row.get(column), _CELL_WIDTH) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)


def render_fields(data: dict[str, Any]) -> str:
    width = max((len(key) for key in data), default=0)
    lines = []
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{key}:")
            lines.extend(f"  {cell(item)}" for item in value)
        else:
            lines.append(f"{key.ljust(width)}  {cell(value)}")
    return "\n".join(lines)
