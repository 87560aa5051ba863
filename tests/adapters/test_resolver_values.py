"""An ``endpoint_resolver`` that returns something other than a string.

``endpoint_resolver`` is documented as ``f(scope) -> str | None``; an app that returns
a route id (an int) or bytes instead must not break ``/metrics``: before, the
non-string label reached the exposition, so scrapes answered 500 while such requests
came in and the rest of their batch was lost. Now the request counts as unmatched and
the fault counts under ``collector.labels``. Run in Starlette and in plain WSGI under
real wsgiref; the C request path and the Python one (``EVENTMON_PURE_PYTHON=1``) alike.
"""

from __future__ import annotations

import asyncio
import http.client
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from adapters.wsgi_servers import serve_wsgiref
from eventmon import MetricsCollector
from eventmon.asgi import EventmonMiddleware as ASGIMiddleware
from eventmon.core.registry import UNMATCHED
from eventmon.wsgi import EventmonMiddleware as WSGIMiddleware

# What an app might hand back by mistake: a route id, raw bytes, a float.
ODD = [12345, b"/events/1", 1.5]
ROUNDS = 4


def odd_resolver() -> Any:
    it = iter(ODD * ROUNDS + ["/fine"] * ROUNDS)
    return lambda scope_or_environ: next(it)


def counts(c: MetricsCollector) -> dict[tuple[str, str, str], int]:
    return {(s.method, s.endpoint, s.status_code): s.count for s in c.series()}


def check(c: MetricsCollector, scrapes: list[tuple[int, bytes]], status: str) -> None:
    n = len(ODD) * ROUNDS
    assert [code for code, _ in scrapes] == [200] * len(scrapes)
    assert counts(c) == {("GET", UNMATCHED, status): n, ("GET", "/fine", status): ROUNDS}
    assert c.slow_requests() == {("GET", UNMATCHED): n, ("GET", "/fine"): ROUNDS}
    assert c.internal_errors()["collector.labels"] >= 1
    page = scrapes[-1][1].decode()
    labels = f'method="GET",endpoint="{UNMATCHED}",status_code="{status}"'
    assert f"http_requests_total{{{labels}}} {n}" in page


def test_starlette_resolver_returning_a_non_string() -> None:
    # slow_threshold=0: every request is also slow, so the slow counter is checked too.
    c = MetricsCollector(slow_hooks=(), slow_threshold=0)

    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # Starlette matches no route for /elsewhere (a 404): the resolver names it.
    app = ASGIMiddleware(
        Starlette(routes=[Route("/ok", ok)]), collector=c, endpoint_resolver=odd_resolver()
    )

    async def run() -> list[tuple[int, bytes]]:
        transport = httpx.ASGITransport(app=app)
        scrapes = []
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(len(ODD) * ROUNDS + ROUNDS):
                assert (await client.get("/elsewhere")).status_code == 404
                r = await client.get("/metrics")
                scrapes.append((r.status_code, r.content))
        return scrapes

    check(c, asyncio.run(run()), "404")
    c.shutdown()


def test_wsgi_resolver_returning_a_non_string_under_wsgiref() -> None:
    c = MetricsCollector(slow_hooks=(), slow_threshold=0)

    def plain(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    port, stop = serve_wsgiref(WSGIMiddleware(plain, collector=c, endpoint_resolver=odd_resolver()))
    scrapes = []
    try:
        for _ in range(len(ODD) * ROUNDS + ROUNDS):
            for path in ("/x", "/metrics"):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                conn.close()
                if path == "/metrics":
                    scrapes.append((r.status, body))
                else:
                    assert (r.status, body) == (200, b"ok")
    finally:
        stop()
    check(c, scrapes, "200")
    c.shutdown()
