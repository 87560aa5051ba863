"""The dashboard as a pure ASGI application.

Mounted by :class:`eventmon.asgi.EventmonMiddleware` (``dashboard=True`` or a
:class:`~eventmon.dashboard.Dashboard`), or on its own::

    app = DashboardASGI(Dashboard(collector))   # answers under dashboard.prefix
"""

from __future__ import annotations

import asyncio
import contextlib

from eventmon.dashboard._core import Dashboard, Response
from eventmon.types import Receive, Scope, Send

__all__ = ["DashboardASGI"]


class DashboardASGI:
    """Serves one :class:`Dashboard` over ASGI (HTTP scopes under its prefix)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.prefix = dashboard.prefix

    def matches(self, path: str) -> bool:
        """Whether ``path`` belongs to the dashboard (its prefix, with or without ``/``)."""
        return path.startswith(self.prefix) or path == self.prefix[:-1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        if path == self.prefix[:-1]:
            location = self.prefix + (f"?{query}" if query else "")
            await _send(send, Response(308, (("location", location),), b""), head=False)
            return
        if not path.startswith(self.prefix):
            await _send(send, Response(404, (("content-type", "text/plain"),), b"Not Found\n"))
            return
        subpath = path[len(self.prefix) :]
        authorization = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        dash = self.dashboard
        method = scope["method"]
        if dash.is_stream(subpath) and method == "GET":
            probe = dash.refuse(query, authorization)
            if probe is not None:
                await _send(send, probe)
                return
            await self._stream(receive, send)
            return
        response = await asyncio.get_running_loop().run_in_executor(
            None, dash.handle, method, subpath, query, authorization
        )
        await _send(send, response, head=method == "HEAD")

    async def _stream(self, receive: Receive, send: Send) -> None:
        dash = self.dashboard
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.ensure_future(watch())
        loop = asyncio.get_running_loop()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await send(
                {"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True}
            )
            deadline = loop.time() + dash.max_stream_seconds
            while not gone.is_set() and loop.time() < deadline:
                event = await loop.run_in_executor(None, dash.stream_event)
                await send({"type": "http.response.body", "body": event, "more_body": True})
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(gone.wait(), dash.stream_interval)
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher


async def _send(send: Send, response: Response, *, head: bool = False) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    if not any(k == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})
