"""The dashboard as a WSGI application (same API as the ASGI one).

For WSGI middleware to mount, or on its own::

    app = DashboardWSGI(Dashboard(collector))

The event stream holds one worker thread per open page while it runs (at most
``max_stream_seconds``; the browser reconnects), so give a threaded server a
few spare threads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from eventmon.dashboard._core import Dashboard, Response
from eventmon.types import StartResponse, WSGIEnviron

__all__ = ["DashboardWSGI"]

_REASONS = {
    200: "OK",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


class DashboardWSGI:
    """Serves one :class:`Dashboard` over WSGI (paths under its prefix)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.prefix = dashboard.prefix

    def matches(self, path: str) -> bool:
        """Whether ``path`` belongs to the dashboard."""
        return path.startswith(self.prefix) or path == self.prefix[:-1]

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        # Relative to the app, like the middleware that mounts it.
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == self.prefix[:-1]:
            location = self.prefix + (f"?{query}" if query else "")
            return _start(start_response, Response(308, (("location", location),), b""))
        if not path.startswith(self.prefix):
            return _start(
                start_response, Response(404, (("content-type", "text/plain"),), b"Not Found\n")
            )
        subpath = path[len(self.prefix) :]
        authorization = environ.get("HTTP_AUTHORIZATION")
        dash = self.dashboard
        if dash.is_stream(subpath) and method == "GET":
            probe = dash.refuse(query, authorization)
            if probe is not None:
                return _start(start_response, probe)
            start_response(
                "200 OK",
                [
                    ("Content-Type", "text/event-stream; charset=utf-8"),
                    ("Cache-Control", "no-store"),
                    ("X-Accel-Buffering", "no"),
                ],
            )
            return self._stream()
        response = dash.handle(method, subpath, query, authorization)
        return _start(start_response, response, head=method == "HEAD")

    def _stream(self) -> Iterator[bytes]:
        dash = self.dashboard
        yield b"retry: 2000\n\n"
        deadline = time.monotonic() + dash.max_stream_seconds
        while time.monotonic() < deadline:
            yield dash.stream_event()
            time.sleep(dash.stream_interval)


def _start(start_response: StartResponse, response: Response, *, head: bool = False) -> list[bytes]:
    headers = list(response.headers)
    if not any(k.lower() == "content-length" for k, _ in headers):
        headers.append(("content-length", str(len(response.body))))
    reason = _REASONS.get(response.status, "Unknown")
    start_response(f"{response.status} {reason}", headers)
    return [b"" if head else response.body]
