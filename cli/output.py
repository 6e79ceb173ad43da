"""The one way commands print: a table by default, ``--json`` for scripts, others' text escaped.

``@json_output(columns=...)`` adds ``--json`` to a command whose function *returns* what it
found (records with ``to_dict()``, dicts, or lists of them) instead of printing it.

Names, descriptions, tags, reasons and metric keys come from a shared database: whoever wrote
them may have planted terminal escape sequences (ESC, CR, bells, C1 controls, bidi overrides)
that would rewrite or hide what the next reader sees. ``escape_controls`` is the one place they
are made visible; every text path ends in it (``cell`` for values, ``echo_text`` for whole
outputs, the error line in ``main``). JSON needs nothing more: ``json`` escapes them already.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import click

_CELL_WIDTH = 64  # a full SHA-256 fits
# C0 and C1 controls, DEL, and the Unicode line separators and bidi overrides/isolates
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\r``, ``\\u202e``).

    ``keep`` names the characters a multi-line rendering may keep as they are (``"\\n"``).
    """

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char in keep:
            return char
        return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")

    return _CONTROLS.sub(escape, text)


def echo_text(text: str, err: bool = False) -> None:
    """Print a rendered (possibly multi-line) text: its lines and tabs stay, every other control is
    escaped."""
    click.echo(escape_controls(text, keep="\n\t"), err=err)


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
                echo_text(text(result))
            elif isinstance(data, list):
                echo_text(render_table(data, columns or _columns_of(data)))
            else:
                echo_text(render_fields(data))

        return command

    return decorate


def _columns_of(rows: list[dict[str, Any]]) -> list[str]:
    return list(rows[0]) if rows else []


def cell(value: Any, width: int | None = None) -> str:
    """One value as one line of text (controls escaped); tables cut long ones to ``width``, field views
    show them whole."""
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, dict):
        text = ", ".join(f"{cell(key)}={cell(item)}" for key, item in value.items())
    elif isinstance(value, list):
        text = ", ".join(cell(item) for item in value)
    else:
        text = escape_controls(str(value))
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def render_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[cell(row.get(column), _CELL_WIDTH) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = [
        "  ".join(cell(column).upper().ljust(width) for column, width in zip(columns, widths, strict=True))
    ]
    lines += [
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)) for line in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def render_fields(data: dict[str, Any]) -> str:
    data = {cell(key): value for key, value in data.items()}
    width = max((len(key) for key in data), default=0)
    lines = []
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{key}:")
            lines.extend(f"  {cell(item)}" for item in value)
        else:
            lines.append(f"{key.ljust(width)}  {cell(value)}")
    return "\n".join(lines)
