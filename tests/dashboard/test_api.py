"""The dashboard's JSON API, token check and limits, through the real ASGI and WSGI stacks."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from eventmon import ConfigurationError, MetricsCollector
from eventmon.asgi import EventmonMiddleware
from eventmon.dashboard import Dashboard, DashboardWSGI

TOKEN = "s3cret-token"


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    async def boom(request: Any) -> PlainTextResponse:
        return PlainTextResponse("no", status_code=503)

    return Starlette(routes=[Route("/hello/{name}", hello), Route("/boom", boom)])


def _get(app: Any, url: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(url, **kw)

    return asyncio.run(go())


@pytest.fixture
def app(collector: MetricsCollector) -> Any:
    dash = Dashboard(
        collector,
        token=TOKEN,
        alerts_provider=lambda: [{"name": "high_error_rate", "state": "firing"}],
        scaling_provider=lambda: {"instances": 3, "events": []},
    )
    return EventmonMiddleware(_starlette_app(), collector=collector, dashboard=dash)


@pytest.mark.parametrize(
    "path",
    ["/eventmon/api/snapshot", "/eventmon/api/endpoints", "/eventmon/api/alerts", "/eventmon/"],
)
def test_token_no_wrong_right(app: Any, path: str) -> None:
    assert _get(app, path).status_code == 401
    assert _get(app, path + "?token=wrong").status_code == 401
    assert _get(app, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert _get(app, path + f"?token={TOKEN}").status_code == 200
    assert _get(app, path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_no_token_configured_is_open(collector: MetricsCollector) -> None:
    app = EventmonMiddleware(_starlette_app(), collector=collector, dashboard=True)
    r = _get(app, "/eventmon/api/snapshot")
    assert r.status_code == 200
    assert r.json()["apiVersion"] == 1


def test_dashboard_off_by_default(collector: MetricsCollector) -> None:
    app = EventmonMiddleware(_starlette_app(), collector=collector)
    assert _get(app, "/eventmon/api/snapshot").status_code == 404


def test_snapshot_counts_app_traffic_not_dashboard(app: Any) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for i in range(5):
        assert _get(app, f"/hello/{i}").status_code == 200
    assert _get(app, "/boom").status_code == 503
    snap = _get(app, "/eventmon/api/snapshot?history=1", headers=auth).json()
    # Dashboard requests themselves are not recorded.
    assert snap["totalRequests"] == 6
    assert snap["errorRate"] == pytest.approx(1 / 6, abs=1e-3)
    assert snap["endpointCount"] == 2
    for key in ("requestsPerSecond", "p95ResponseTime", "cpuUsage", "memoryUsage"):
        assert key in snap
    assert len(snap["history"]) >= 1
    rows = _get(app, "/eventmon/api/endpoints", headers=auth).json()
    by_name = {r["endpoint"]: r for r in rows["endpoints"]}
    assert by_name["/hello/{name}"]["count"] == 5
    assert by_name["/boom"]["errors"] == 1
    assert by_name["/boom"]["error_rate"] == 1.0


def test_static_page_is_self_contained(app: Any) -> None:
    page = _get(app, f"/eventmon/?token={TOKEN}")
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "/eventmon/app.js" in html
    assert "/eventmon/style.css" in html
    js = _get(app, "/eventmon/app.js").text  # script and stylesheet hold no data
    css = _get(app, "/eventmon/style.css").text
    for text in (html, js, css):
        # No CDN, no external fonts: nothing but this server.
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
    assert "EventSource" in js


def test_prefix_redirect_and_unknown(app: Any) -> None:
    r = _get(app, "/eventmon", follow_redirects=False)
    assert r.status_code == 308
    assert r.headers["location"] == "/eventmon/"
    r = _get(app, f"/eventmon/api/nope?token={TOKEN}")
    assert r.status_code == 404


def test_providers_and_missing_providers(app: Any, collector: MetricsCollector) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    alerts = _get(app, "/eventmon/api/alerts", headers=auth).json()
    assert alerts == {"available": True, "data": [{"name": "high_error_rate", "state": "firing"}]}
    assert _get(app, "/eventmon/api/scaling", headers=auth).json()["data"]["instances"] == 3
    assert _get(app, "/eventmon/api/forecast", headers=auth).json() == {
        "available": False,
        "data": None,
    }


def test_failing_provider_is_contained(collector: MetricsCollector) -> None:
    def broken() -> Any:
        raise RuntimeError("engine down")

    app = EventmonMiddleware(
        _starlette_app(),
        collector=collector,
        dashboard=Dashboard(collector, alerts_provider=broken),
    )
    r = _get(app, "/eventmon/api/alerts")
    assert r.status_code == 200
    assert r.json()["data"] is None
    assert "failed" in r.json()["error"]
    assert collector.internal_errors()["dashboard.alerts"] == 1


def test_bad_query_is_400(app: Any) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert _get(app, "/eventmon/api/endpoints?sort=evil", headers=auth).status_code == 400
    assert _get(app, "/eventmon/api/endpoints?per_page=100000", headers=auth).status_code == 400
    assert _get(app, "/eventmon/api/endpoints?page=x", headers=auth).status_code == 400


def test_configuration_errors(collector: MetricsCollector) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        Dashboard(collector, prefix="eventmon")
    with pytest.raises(ConfigurationError, match="token"):
        Dashboard(collector, token="")
    with pytest.raises(ConfigurationError, match="alerts_provider"):
        Dashboard(collector, alerts_provider=[])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="dashboard"):
        EventmonMiddleware(_starlette_app(), collector=collector, dashboard="yes")


def test_custom_prefix(collector: MetricsCollector) -> None:
    dash = Dashboard(collector, prefix="/ops/monitor/")
    app = EventmonMiddleware(_starlette_app(), collector=collector, dashboard=dash)
    assert _get(app, "/ops/monitor/api/snapshot").status_code == 200
    assert "/ops/monitor/app.js" in _get(app, "/ops/monitor/").text
    assert _get(app, "/eventmon/api/snapshot").status_code == 404


def test_thousand_endpoints_paginated_sorted_and_fast() -> None:
    c = MetricsCollector(slow_hooks=(), max_label_sets=5000)
    try:
        for i in range(1000):
            for n in range(3):
                c.observe(
                    "GET",
                    f"/api/v1/resource{i}/{{id}}",
                    500 if n == 0 and i % 10 == 0 else 200,
                    (i % 97 + n) / 1000,
                )
        dash = Dashboard(c)
        app = EventmonMiddleware(_starlette_app(), collector=c, dashboard=dash)
        worst = 0.0
        for sort in ("count", "p95_ms", "error_rate", "endpoint"):
            dash._table = None  # measure the uncached path every time
            t0 = time.perf_counter()
            r = _get(app, f"/eventmon/api/endpoints?sort={sort}&order=desc&per_page=50&page=2")
            worst = max(worst, time.perf_counter() - t0)
            doc = r.json()
            assert doc["total"] == 1000
            assert doc["pages"] == 20
            assert len(doc["endpoints"]) == 50
            values = [row[sort] for row in doc["endpoints"]]
            assert values == sorted(values, reverse=True)
        t0 = time.perf_counter()
        event = dash.stream_event()
        stream_s = time.perf_counter() - t0
        # The stream carries a capped number of endpoints, not all 1,000.
        payload = json.loads(event.decode().split("data: ", 1)[1])
        assert len(payload["endpoints"]) == dash.stream_endpoints == 25
        assert payload["endpointTotal"] == 1000
        assert len(event) < 20_000
        filtered = _get(app, "/eventmon/api/endpoints?q=resource99/").json()
        assert [r["endpoint"] for r in filtered["endpoints"]] == ["/api/v1/resource99/{id}"]
        # Bounded on a shared 2-core machine: generous, but a quadratic table would blow it.
        assert worst < 0.5, worst
        assert stream_s < 0.5, stream_s
    finally:
        c.shutdown()


def test_wsgi_app_serves_same_api(collector: MetricsCollector) -> None:
    from wsgiref.util import setup_testing_defaults

    collector.observe("GET", "/x", 200, 0.01)
    app = DashboardWSGI(Dashboard(collector, token=TOKEN))

    def call(path: str, query: str = "", auth: str | None = None) -> tuple[str, bytes]:
        environ: dict[str, Any] = {"PATH_INFO": path, "QUERY_STRING": query}
        setup_testing_defaults(environ)
        if auth:
            environ["HTTP_AUTHORIZATION"] = auth
        seen: list[str] = []
        body = b"".join(app(environ, lambda status, headers, exc=None: seen.append(status)))
        return seen[0], body

    assert call("/eventmon/api/snapshot")[0].startswith("401")
    assert call("/eventmon/api/snapshot", "token=nope")[0].startswith("401")
    status, body = call("/eventmon/api/snapshot", auth=f"Bearer {TOKEN}")
    assert status == "200 OK"
    assert json.loads(body)["totalRequests"] == 1
    status, body = call("/eventmon/api/endpoints", f"token={TOKEN}")
    assert json.loads(body)["endpoints"][0]["endpoint"] == "/x"


@pytest.mark.slow
def test_wsgi_middleware_mounts_dashboard_with_live_stream(collector: MetricsCollector) -> None:
    """A real threaded WSGI server: the middleware serves the API and the event stream."""
    import threading
    import urllib.request
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from eventmon.wsgi import EventmonMiddleware as WSGIMiddleware

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    class Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["eventmon.endpoint"] = "/hello"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hi"]

    dash = Dashboard(collector, token=TOKEN, stream_interval=0.2, max_stream_seconds=5)
    app = WSGIMiddleware(hello, collector=collector, dashboard=dash)
    server = make_server("127.0.0.1", 0, app, server_class=Threaded, handler_class=Quiet)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(3):
            urllib.request.urlopen(f"{base}/hello", timeout=5).read()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/eventmon/api/stream", timeout=5)
        assert err.value.code == 401
        totals = []
        with urllib.request.urlopen(f"{base}/eventmon/api/stream?token={TOKEN}", timeout=5) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            for raw in s:
                line = raw.decode()
                if line.startswith("data: "):
                    totals.append(json.loads(line[6:])["snapshot"]["totalRequests"])
                    if len(totals) == 1:
                        urllib.request.urlopen(f"{base}/hello", timeout=5).read()
                    if len(totals) == 3:
                        break
        assert totals[0] == 3
        assert totals[-1] == 4  # the stream saw the request made while it was open
        snap = json.loads(
            urllib.request.urlopen(f"{base}/eventmon/api/snapshot?token={TOKEN}", timeout=5).read()
        )
        assert snap["totalRequests"] == 4  # dashboard calls are not recorded
    finally:
        server.shutdown()
        server.server_close()
