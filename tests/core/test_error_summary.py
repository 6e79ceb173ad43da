"""``errors.summarize``: any exception as one line for our own messages."""

from __future__ import annotations

from adapterlab.errors import summarize


def test_a_multi_line_message_becomes_one_line_cut_at_the_limit() -> None:
    exc = ValueError("bad  value\n  in line 2\tand more")
    assert summarize(exc) == "bad value in line 2 and more"
    assert summarize(exc, limit=9) == "bad value"
    assert summarize(ValueError("x" * 500)) == "x" * 200
    assert summarize(ValueError("x" * 500), limit=None) == "x" * 500


def test_first_line_drops_what_drivers_append() -> None:
    exc = RuntimeError(
        "UNIQUE constraint failed: adapters.name\n[SQL: INSERT INTO adapters ...]\n[parameters: ('secret',)]"
    )
    assert summarize(exc, first_line=True) == "UNIQUE constraint failed: adapters.name"


def test_an_exception_without_text_is_named_by_its_type() -> None:
    assert summarize(KeyError()) == "KeyError"
    assert summarize(OSError("  \n "), first_line=True) == "OSError"
