"""Names and references: what an adapter, alias or key may be called, and ``NAME[:N|@ALIAS]``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from adapterlab.errors import AdapterNotFound, InvalidConfig

NAME_MAX = 128
VERSION_MAX = 2**31 - 1  # the database's INTEGER; larger numbers name no version and overflow drivers
# segments of letters, digits, '.', '_', '-', joined by single '/', never starting with '.' or '-'
# (so no '..', no hidden or absolute paths when a name becomes part of an artifact path)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,127}")
_RESERVED_ALIAS = re.compile(r"latest|v\d+", re.IGNORECASE)  # MLflow's own meanings


def validate_name(name: str, what: str = "adapter name") -> str:
    if not isinstance(name, str) or not name:
        raise InvalidConfig(f"{what} is empty; use letters, digits, '.', '_', '-' (e.g. twitter-complaints)")
    if len(name) > NAME_MAX:
        raise InvalidConfig(f"{what} is {len(name)} characters long; use at most {NAME_MAX}")
    if not _NAME.fullmatch(name):
        raise InvalidConfig(
            f"invalid {what} {name!r}: use letters, digits, '.', '_', '-' and single '/' between parts, "
            "not starting with '.' or '-' (e.g. twitter-complaints)"
        )
    return name


def validate_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or _RESERVED_ALIAS.fullmatch(alias):
        raise InvalidConfig(
            f"invalid alias {alias!r}: start with a letter, then letters, digits, '_' or '-' (at most 64), "
            "not 'latest' or 'v<number>' (e.g. production)"
        )
    return alias


def validate_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidConfig(
            f"invalid {what} name {key!r}: use letters, digits, '.', '_', '-', '/' (e.g. eval_accuracy)"
        )
    return key


@dataclass(frozen=True)
class Ref:
    """A parsed reference: the latest version, a version number, or an alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: str) -> Ref:
    """``NAME`` (latest), ``NAME:3`` or ``NAME@production``."""
    if not isinstance(text, str):
        raise InvalidConfig(f"invalid reference {text!r}: use NAME, NAME:VERSION or NAME@ALIAS")
    if "@" in text:
        name, alias = text.rsplit("@", 1)
        return Ref(validate_name(name), alias=validate_alias(alias))
    if ":" in text:
        name, number = text.rsplit(":", 1)
        # ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses
        if not (number.isascii() and number.isdigit()) or not 1 <= int(number) <= VERSION_MAX:
            raise InvalidConfig(
                f"invalid version {number!r} in {text!r}: use a whole number from 1 to {VERSION_MAX}, e.g. "
                f"{name}:3"
            )
        return Ref(validate_name(name), version=int(number))
    return Ref(validate_name(text))


def not_found(
    what: str, wanted: str, known: Iterable[str], listing: str = "`adapters list`"
) -> AdapterNotFound:
    """An AdapterNotFound that suggests the closest known names."""
    import difflib  # only on this error path: keeps `adapters list` starting fast

    matches = difflib.get_close_matches(wanted, list(known), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(matches)}?" if matches else f"; see {listing}"
    return AdapterNotFound(f"no {what} {wanted!r}{hint}")
