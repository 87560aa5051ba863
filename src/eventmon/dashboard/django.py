"""The dashboard served from Django, by :class:`eventmon.django.EventmonMiddleware`.

Turned on in settings; the middleware answers under the dashboard's prefix
before Django resolves a URL, and does not record those requests::

    EVENTMON = {"dashboard": True, "dashboard_token": "s3cret"}
    # or a Dashboard of your own (or its dotted path):
    EVENTMON = {"dashboard": Dashboard(collector, token="s3cret", prefix="/ops/")}

Under WSGI the event stream is a synchronous generator (one worker thread per
open page while it runs, at most ``max_stream_seconds``); under ASGI it is an
asynchronous one that holds no thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpResponse, StreamingHttpResponse

from eventmon.dashboard._core import Dashboard, Response

__all__ = ["DashboardDjango"]

_STREAM_HEADERS = (("Cache-Control", "no-store"), ("X-Accel-Buffering", "no"))
_STREAM_TYPE = "text/event-stream; charset=utf-8"


class DashboardDjango:
    """Serves one :class:`Dashboard` as Django responses (paths under its prefix)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.prefix = dashboard.prefix
        self._ahandle = sync_to_async(dashboard.handle, thread_sensitive=False)

    def matches(self, path: str) -> bool:
        """Whether ``path`` belongs to the dashboard (its prefix, with or without ``/``)."""
        return path.startswith(self.prefix) or path == self.prefix[:-1]

    def respond(self, request: Any) -> Any:
        """The response to a dashboard request, for a synchronous middleware chain."""
        early = self._early(request)
        if early is not None:
            return early
        dash = self.dashboard
        subpath = request.path_info[len(self.prefix) :]
        if dash.is_stream(subpath) and request.method == "GET":
            return _streaming(_stream(dash))
        query, authorization = _auth(request)
        return _convert(dash.handle(request.method, subpath, query, authorization), request)

    async def arespond(self, request: Any) -> Any:
        """The same, for an asynchronous chain: no blocking work on the event loop."""
        early = self._early(request)
        if early is not None:
            return early
        dash = self.dashboard
        subpath = request.path_info[len(self.prefix) :]
        if dash.is_stream(subpath) and request.method == "GET":
            return _streaming(_astream(dash))
        query, authorization = _auth(request)
        response: Response = await self._ahandle(request.method, subpath, query, authorization)
        return _convert(response, request)

    def _early(self, request: Any) -> Any:
        """The redirect to the prefix, or the stream's 401; ``None`` otherwise."""
        path: str = request.path_info
        query, authorization = _auth(request)
        if path == self.prefix[:-1]:
            # Relative to where the app is mounted (SCRIPT_NAME), like request.path.
            location = request.path + "/" + (f"?{query}" if query else "")
            return _convert(Response(308, (("location", location),), b""), request)
        subpath = path[len(self.prefix) :]
        if self.dashboard.is_stream(subpath) and request.method == "GET":
            refused = self.dashboard.refuse(query, authorization)
            if refused is not None:
                return _convert(refused, request)
        return None


def _auth(request: Any) -> tuple[str, str | None]:
    meta = request.META
    return meta.get("QUERY_STRING", ""), meta.get("HTTP_AUTHORIZATION")


def _convert(response: Response, request: Any) -> HttpResponse:
    head = request.method == "HEAD"
    out = HttpResponse(b"" if head else response.body, status=response.status)
    for name, value in response.headers:
        out[name] = value
    out["Content-Length"] = str(len(response.body))
    return out


def _streaming(content: Any) -> StreamingHttpResponse:
    out = StreamingHttpResponse(content, content_type=_STREAM_TYPE)
    for name, value in _STREAM_HEADERS:
        out[name] = value
    return out


def _stream(dash: Dashboard) -> Iterator[bytes]:
    yield b"retry: 2000\n\n"
    deadline = time.monotonic() + dash.max_stream_seconds
    while time.monotonic() < deadline:
        yield dash.stream_event()
        time.sleep(dash.stream_interval)


async def _astream(dash: Dashboard) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + dash.max_stream_seconds
    while loop.time() < deadline:
        # Building an event reads every series: off the event loop.
        yield await loop.run_in_executor(None, dash.stream_event)
        await asyncio.sleep(dash.stream_interval)
