"""Every request an adapter starts is finished exactly once, whatever raises.

A resolver at fault, a fault inside eventmon while recording, an exception from the
app or a client gone mid-body: ``http_requests_in_progress`` returns to zero, the
request is counted (under fallback labels when its own could not be found), and the
fault is logged and counted as an internal error, never raised into the host.
Run against real Starlette, plain WSGI under real wsgiref and waitress, Flask and
Django.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import django
import httpx
import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.test import Client as DjangoClient
from django.test.utils import override_settings
from django.urls import path as django_path
from flask import Flask, Response, stream_with_context
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from eventmon import MetricsCollector
from eventmon.asgi import EventmonMiddleware as ASGIMiddleware
from eventmon.core.registry import UNMATCHED
from eventmon.flask import Eventmon
from eventmon.wsgi import EventmonMiddleware as WSGIMiddleware

django.setup()

N = 30


class ArmedClock(threading.local):
    """A clock that fails once when armed: a fault inside eventmon while recording.

    Armed per thread: a server may start the next request on another thread before
    it has closed this one.
    """

    armed = False

    def __call__(self) -> float:
        if self.armed:
            self.armed = False
            raise RuntimeError("eventmon's clock failed")
        return time.perf_counter()


def counts(c: MetricsCollector) -> dict[tuple[str, str, str], int]:
    return {(s.method, s.endpoint, s.status_code): s.count for s in c.series()}


def settled(c: MetricsCollector, timeout: float = 5.0) -> int:
    """In-progress requests once the server has closed what it served (a real server
    may close the body just after the client has the last byte)."""
    deadline = time.monotonic() + timeout
    while c.in_progress() and time.monotonic() < deadline:
        time.sleep(0.005)
    return c.in_progress()


def broken_resolver(scope_or_environ: Any) -> str:
    raise RuntimeError("resolver bug")


# ------------------------------------------------------------------- collector


def test_end_finishes_the_request_even_when_recording_it_fails() -> None:
    """The contract the adapters rely on, in the C request path and the Python one."""
    c = MetricsCollector(slow_hooks=())
    ends = [c.end, MetricsCollector.end.__get__(c)]
    for end in ends:
        token = c.begin()
        assert c.in_progress() == 1
        with pytest.raises(TypeError, match="status must be an int"):
            end(token, "GET", "/x", "200", 0.0)  # type: ignore[arg-type]
        assert c.in_progress() == 0
    c.shutdown()


# ------------------------------------------------------------------------ ASGI


def starlette_app(collector: MetricsCollector, **options: Any) -> Any:
    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def armed(request: Any) -> PlainTextResponse:
        collector.clock.armed = True  # type: ignore[attr-defined]
        return PlainTextResponse("armed")

    routes = [Route("/ok", ok), Route("/armed", armed)]
    return ASGIMiddleware(Starlette(routes=routes), collector=collector, **options)


def asgi_get(app: Any, paths: list[str]) -> list[int]:
    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [(await client.get(p)).status_code for p in paths]

    return asyncio.run(run())


def test_asgi_resolver_fault_in_starlette(caplog: pytest.LogCaptureFixture) -> None:
    c = MetricsCollector(slow_hooks=())
    app = starlette_app(c, endpoint_resolver=broken_resolver)
    statuses = asgi_get(app, ["/nope"] * N + ["/ok"] * 5)
    assert statuses == [404] * N + [200] * 5
    assert c.in_progress() == 0
    assert counts(c) == {("GET", UNMATCHED, "404"): N, ("GET", "/ok", "200"): 5}
    assert c.internal_errors() == {"asgi.endpoint": N}
    logged = [r for r in caplog.records if "asgi.endpoint" in r.getMessage()]
    assert logged
    assert "resolver bug" in str(logged[0].exc_info[1])  # type: ignore[index]
    c.shutdown()


def test_asgi_recording_fault_in_starlette() -> None:
    c = MetricsCollector(slow_hooks=(), clock=ArmedClock())
    app = starlette_app(c)
    assert asgi_get(app, ["/armed"] * N + ["/ok"]) == [200] * (N + 1)
    assert c.in_progress() == 0
    assert c.internal_errors() == {"asgi.observe": N}
    assert counts(c) == {("GET", "/ok", "200"): 1}
    c.shutdown()


# ------------------------------------------------------------- WSGI, real servers


def plain_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"] == "/armed":
        environ["test.clock"].armed = True
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def get_all(port: int, paths: list[str]) -> list[tuple[int, bytes]]:
    out = []
    for p in paths:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", p)
        r = conn.getresponse()
        out.append((r.status, r.read()))
        conn.close()
    return out


def test_wsgi_resolver_fault_under_a_real_server(wsgi_server: Callable[[Any], int]) -> None:
    c = MetricsCollector(slow_hooks=())
    port = wsgi_server(WSGIMiddleware(plain_wsgi, collector=c, endpoint_resolver=broken_resolver))
    assert get_all(port, ["/x"] * N) == [(200, b"ok")] * N
    assert settled(c) == 0
    assert counts(c) == {("GET", UNMATCHED, "200"): N}
    assert c.internal_errors() == {"wsgi.endpoint": N}


def test_wsgi_recording_fault_under_a_real_server(wsgi_server: Callable[[Any], int]) -> None:
    clock = ArmedClock()
    c = MetricsCollector(slow_hooks=(), clock=clock)
    mw = WSGIMiddleware(plain_wsgi, collector=c)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        environ["test.clock"] = clock
        return mw(environ, start_response)

    port = wsgi_server(app)
    assert get_all(port, ["/armed"] * N + ["/x"]) == [(200, b"ok")] * (N + 1)
    assert settled(c) == 0
    assert c.internal_errors() == {"wsgi.observe": N}
    assert counts(c) == {("GET", UNMATCHED, "200"): 1}


def test_wsgi_resolver_interrupt_still_ends_the_request() -> None:
    """A BaseException from the resolver propagates, after the request was ended."""
    c = MetricsCollector(slow_hooks=())

    def interrupting(environ: Any) -> str:
        raise KeyboardInterrupt

    body = WSGIMiddleware(plain_wsgi, collector=c, endpoint_resolver=interrupting)(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, lambda *a: None
    )

    def serve() -> None:
        list(body)
        body.close()  # type: ignore[attr-defined]

    with pytest.raises(KeyboardInterrupt):
        serve()
    assert c.in_progress() == 0
    assert counts(c) == {("GET", UNMATCHED, "200"): 1}


def test_wsgi_environ_without_a_method_is_recorded_under_fallback_labels() -> None:
    c = MetricsCollector(slow_hooks=())
    body = WSGIMiddleware(plain_wsgi, collector=c)({"PATH_INFO": "/x"}, lambda *a: None)
    list(body)
    body.close()  # type: ignore[attr-defined]
    assert c.in_progress() == 0
    assert counts(c) == {("other", UNMATCHED, "200"): 1}
    assert c.internal_errors() == {"wsgi.endpoint": 1}


# ------------------------------------------------------------------------ Flask


def test_flask_recording_fault_and_disconnects(wsgi_server: Callable[[Any], int]) -> None:
    clock = ArmedClock()
    c = MetricsCollector(slow_hooks=(), clock=clock)
    app = Flask("inprogress")

    @app.route("/armed")
    def armed() -> str:
        clock.armed = True
        return "ok"

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("app bug")

    gone = threading.Event()

    @app.route("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[bytes]:
            yield b"first\n"
            gone.wait(5)  # the client has gone: what follows is written to nobody
            for i in range(200):
                yield b"x" * 1000 + b"%d\n" % i

        return Response(stream_with_context(chunks()))

    Eventmon(app, collector=c)
    port = wsgi_server(app.wsgi_app)
    statuses = [status for status, _ in get_all(port, ["/armed"] * N + ["/boom"] * 4)]
    assert statuses == [200] * N + [500] * 4
    # Clients that go away after the first bytes of a long stream.
    for _ in range(3):
        gone.clear()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(12).startswith(b"HTTP/1.")
        gone.set()
    assert settled(c) == 0
    assert c.internal_errors() == {"wsgi.observe": N}
    assert counts(c)[("GET", "/boom", "500")] == 4
    assert sum(n for (m, e, s), n in counts(c).items() if e == "/stream") == 3


# ----------------------------------------------------------------------- Django


class BrokenMatch:
    @property
    def route(self) -> str:
        raise RuntimeError("resolver bug")


def django_ok(request: Any) -> HttpResponse:
    return HttpResponse(b"ok")


def django_broken(request: Any) -> HttpResponse:
    request.resolver_match = BrokenMatch()  # what a faulty URL resolver leaves behind
    return HttpResponse(b"broken")


def django_broken_stream(request: Any) -> StreamingHttpResponse:
    request.resolver_match = BrokenMatch()
    return StreamingHttpResponse(iter([b"a", b"b"]))


def django_armed(request: Any) -> HttpResponse:
    request.eventmon_clock.armed = True
    return HttpResponse(b"armed")


urlpatterns = [
    django_path("ok", django_ok),
    django_path("broken", django_broken),
    django_path("broken-stream", django_broken_stream),
    django_path("armed", django_armed),
]


class ClockMiddleware:
    """Hands the view the collector's clock (the view arms it)."""

    clock: ArmedClock

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        request.eventmon_clock = ClockMiddleware.clock
        return self.get_response(request)


def test_django_resolver_and_recording_faults(caplog: pytest.LogCaptureFixture) -> None:
    clock = ArmedClock()
    ClockMiddleware.clock = clock
    c = MetricsCollector(slow_hooks=(), clock=clock)
    with (
        caplog.at_level(logging.ERROR, logger="eventmon"),
        override_settings(
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[
                "eventmon.django.EventmonMiddleware",
                f"{__name__}.ClockMiddleware",
            ],
            EVENTMON={"collector": c},
        ),
    ):
        client = DjangoClient()
        for _ in range(N):
            assert client.get("/broken").status_code == 200
            r = client.get("/broken-stream")
            assert b"".join(r.streaming_content) == b"ab"  # type: ignore[arg-type]
            r.close()
            assert client.get("/armed").status_code == 200
        assert client.get("/ok").status_code == 200
    assert c.in_progress() == 0
    assert counts(c) == {("GET", UNMATCHED, "200"): 2 * N, ("GET", "/ok", "200"): 1}
    assert c.internal_errors() == {"django.endpoint": 2 * N, "django.observe": N}
    c.shutdown()
