"""Turning a user's value into a config's value, or into one clear ``InvalidConfig``.

Apart from ``config.py`` so that the method table (``methods.py``), which ``config.py`` looks
methods up in, can use it too without an import cycle.
"""

from __future__ import annotations

import enum
from typing import Any

from adapterlab.errors import InvalidConfig


def coerce_enum(enum_cls: type[enum.Enum], value: Any, field_name: str) -> Any:
    """Accept an enum member or its string value; anything else is an InvalidConfig naming the choices."""
    if value is None or isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(str(value).upper() if isinstance(value, str) else value)
    except ValueError:
        valid = ", ".join(member.value for member in enum_cls)
        label = field_name.replace("_", " ")  # HF PEFT's wording, which scripts match on
        raise InvalidConfig(
            f"Invalid {label}: {value!r}. Must be one of the following {label}s: {valid} (field {field_name})"
        ) from None


def parse_choice(enum_cls: type[enum.Enum], value: Any, what: str) -> Any:
    """``value`` in any spelling its enum takes (``seq-cls``, ``seq_cls``, ``SEQ_CLS``) as a member of
    ``enum_cls``; anything else is one InvalidConfig naming the choices, each spelled one way."""
    try:
        return enum_cls(value)
    except ValueError:
        valid = ", ".join(member.value for member in enum_cls)
        raise InvalidConfig(f"unknown {what} {value!r}; use one of {valid} (any case, - or _)") from None
