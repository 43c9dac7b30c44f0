"""Store URLs shown to people: without their passwords."""

from __future__ import annotations

import re

__all__ = ["redact"]

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PASSWORD_PARAM = re.compile(r"([?&])password=[^&#]*(&?)")


def redact(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter).

    Anything that is not a URL is returned as it is.

    Example:
        >>> redact("postgresql://ci:s3cret@db.example:5432/runs?sslmode=require")
        'postgresql://ci@db.example:5432/runs?sslmode=require'
        >>> redact("postgresql://db/runs?password=s3cret&sslmode=require")
        'postgresql://db/runs?sslmode=require'
    """
    match = _URL.match(url)
    if match is None:
        return url
    head, rest = url[: match.end()], url[match.end() :]
    authority = rest.split("?", 1)[0].split("#", 1)[0]
    at = authority.rfind("@")
    if at >= 0:
        user = authority[:at].split(":", 1)[0]
        rest = f"{user}@{rest[at + 1 :]}" if user else rest[at + 1 :]

    def drop(m: re.Match[str]) -> str:
        return m.group(1) if m.group(2) else ""

    return head + _PASSWORD_PARAM.sub(drop, rest)
