"""Type aliases shared by eventmon's modules (ASGI, WSGI, clocks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

__all__ = [
    "ASGIApp",
    "Clock",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "SlowRequestHook",
    "StartResponse",
    "WSGIApp",
    "WSGIEnviron",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]

#: A monotonic clock in seconds; injected wherever behaviour depends on time.
Clock = Callable[[], float]

#: Called with (method, endpoint, status_code, seconds) for every slow request.
SlowRequestHook = Callable[[str, str, int, float], object]
