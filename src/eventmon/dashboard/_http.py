"""The dashboard's HTTP pieces: the response type, JSON encoding, query parameters.

Framework-neutral: the ASGI, WSGI and Django apps turn a :class:`Response` into
their own protocol.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LOGIN_PAGE",
    "UNAUTHORIZED",
    "BadRequest",
    "Response",
    "dumps",
    "flag",
    "integer",
    "json_response",
    "one",
]


@dataclass(frozen=True, slots=True)
class Response:
    """A finished response: status, headers, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def dumps(doc: Any) -> str:
    """Compact JSON; objects without a JSON form go through :func:`_json_default`."""
    return json.dumps(doc, separators=(",", ":"), default=_json_default, allow_nan=False)


def json_response(status: int, doc: Any) -> Response:
    body = dumps(doc).encode()
    return Response(
        status,
        (
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
            ("content-length", str(len(body))),
        ),
        body,
    )


def _json_default(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


UNAUTHORIZED = Response(
    401,
    (("content-type", "application/json"), ("www-authenticate", 'Bearer realm="eventmon"')),
    b'{"error":"a valid token is required (?token= or Authorization: Bearer)"}',
)


class BadRequest(Exception):
    """A query parameter out of range; answered with 400 and the message."""


def one(query: Mapping[str, list[str]], key: str, default: str) -> str:
    values = query.get(key)
    return values[0] if values else default


def flag(query: Mapping[str, list[str]], key: str) -> bool:
    return one(query, key, "0").lower() in ("1", "true", "yes")


def integer(query: Mapping[str, list[str]], key: str, default: int, lo: int, hi: int) -> int:
    raw = one(query, key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{key} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{key} must be between {lo} and {hi}, got {value}")
    return value


LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>eventmon: token required</title>
<style>body{font:16px system-ui,sans-serif;margin:4rem auto;max-width:28rem;color:#222}
input,button{font:inherit;padding:.4rem}</style></head><body>
<h1>eventmon</h1><p>This dashboard needs a token.</p>
<form method="get"><input name="token" type="password" placeholder="token" autofocus>
<button>Open</button></form></body></html>
"""
