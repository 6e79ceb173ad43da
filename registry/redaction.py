"""Keeping secrets out of everything we print, log, store or send: one helper, used everywhere.

A URL's user info (``user:password@``) is masked up to the *last* ``@`` of its authority, because
passwords may hold ``@`` themselves (``postgresql://u:p@ss@host/db`` -> ``postgresql://***@host/db``;
parsers that stop at the first ``@`` would show ``ss@host``). The same masking runs over the text
of errors quoted from MLflow, SQLAlchemy, psycopg or urllib, which often repeat the URL they were
given, and over libpq-style ``password=...`` pairs. Standard library only: the CLI's error path
must stay light.
"""

from __future__ import annotations

import re
import urllib.parse

from adapterlab.errors import summarize

# scheme://<user info>@ -- greedy up to the last '@' before a space or quote: a password may hold
# '/', '?' or '#' unescaped (SQLAlchemy accepts them), so masking a path's '@' too is the safe side
_USER_INFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"<>]*@)")
# key=value credentials in libpq connection strings and similar messages
_PASSWORD_PAIR = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|token)\s*[=:]\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s,;&)]+)",
    re.IGNORECASE,
)
MASK = "***"


def redact(text: str) -> str:
    """``text`` with every URL's user info and every ``password=...`` value masked."""
    text = _USER_INFO.sub(lambda match: f"{match['scheme']}{MASK}@", text)
    return _PASSWORD_PAIR.sub(lambda match: f"{match['key']}{MASK}", text)


def error_summary(exc: BaseException) -> str:
    """The first line of an exception's text (or its type's name), redacted: what we may quote."""
    return redact(summarize(exc, first_line=True, limit=None))


def split_user_info(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its user info, and the (unquoted) user and password it carried.

    The user info ends at the last ``@`` of the URL, as in :func:`redact` (a password may hold
    '@' or '/'; a tracking server's URL has no '@' after its host).
    """
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url, None, None
    user_info, _, location = rest.rpartition("@")
    user, _, password = user_info.partition(":")
    return (
        f"{scheme}://{location}",
        urllib.parse.unquote(user),
        urllib.parse.unquote(password) if password else None,
    )
