"""Exemplars in the exposition, through the real frameworks and a real Prometheus server."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from eventmon import MetricsCollector
from eventmon.core.exemplars import current_trace
from eventmon.exporters.prometheus import render
from servers import PYTHON, free_port, prometheus_server, promtool_check, running

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "0af7651916cd43dd8448eb211c80319c"


def traceparent(trace_id: str, flags: str = "01") -> str:
    return f"00-{trace_id}-00f067aa0ba902b7-{flags}"


def exemplars(body: bytes) -> dict[tuple[str, str], tuple[str, float]]:
    """(endpoint, le) -> (trace_id, value), read with prometheus_client's strict parser."""
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.exemplar is not None:
                assert s.name.endswith("_bucket"), s  # only buckets carry them
                out[(s.labels["endpoint"], s.labels["le"])] = (
                    s.exemplar.labels["trace_id"],
                    s.exemplar.value,
                )
    return out


def _traced(c: MetricsCollector, trace_id: str, *observations: tuple[str, float]) -> None:
    current_trace.set(trace_id)
    try:
        for endpoint, seconds in observations:
            c.observe("GET", endpoint, 200, seconds)
    finally:
        current_trace.set(None)


def test_openmetrics_buckets_carry_the_latest_exemplar_in_their_range() -> None:
    c = MetricsCollector(exemplars=True, slow_hooks=())
    _traced(c, OTHER, ("/a", 0.012))
    _traced(c, TRACE, ("/a", 0.0123), ("/a", 0.3), ("/a", 30.0))
    c.observe("GET", "/b", 200, 0.2)  # untraced: no exemplar anywhere on /b
    body = render(c, openmetrics=True)
    line = next(x for x in body.decode().splitlines() if 'le="0.015"' in x and "/a" in x)
    assert f' 2 # {{trace_id="{TRACE}"}} 0.0123 ' in line
    stamp = float(line.rsplit(" ", 1)[1])
    assert abs(stamp - time.time()) < 60  # unix seconds
    assert exemplars(body) == {
        ("/a", "0.015"): (TRACE, 0.0123),
        ("/a", "0.5"): (TRACE, 0.3),
        ("/a", "+Inf"): (TRACE, 30.0),
    }
    # The text format 0.0.4 has no exemplars, and stays clean for promtool.
    text = render(c)
    assert b"trace_id" not in text
    promtool_check(text)


def test_milliseconds_unit_scales_exemplars_and_folds_hidden_buckets_into_inf() -> None:
    c = MetricsCollector(exemplars=True, slow_hooks=())
    _traced(c, OTHER, ("/a", 0.7))  # bucket le=1 s, not shown in the ms exposition
    _traced(c, TRACE, ("/a", 3.0), ("/a", 0.004))
    got = exemplars(render(c, openmetrics=True, unit="ms"))
    assert got == {("/a", "5.0"): (TRACE, 4.0), ("/a", "+Inf"): (TRACE, 3000.0)}


async def get(app: Any, *requests: tuple[str, dict[str, str]]) -> httpx.Response:
    """GET each path with its headers in turn, in the real app; the last response."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for path, headers in requests:
            response = await client.get(path, headers=headers)
            assert response.is_success, response
    return response


def test_starlette_traceparent_and_otel_span(collector: MetricsCollector) -> None:
    pytest.importorskip("opentelemetry.instrumentation.asgi")
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from eventmon.asgi import EventmonMiddleware

    async def item(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/items/{id}", item)])
    app.add_middleware(EventmonMiddleware, collector=collector, exemplars=True)
    page = asyncio.run(
        get(
            app,
            ("/items/1", {"traceparent": traceparent(TRACE)}),
            ("/items/2", {"traceparent": traceparent(OTHER, "00")}),
            ("/items/3", {}),
            ("/metrics", {"Accept": "application/openmetrics-text"}),
        )
    )
    got = {k: v for k, v in exemplars(page.content).items() if k[0] == "/items/{id}"}
    assert [trace for trace, _ in got.values()] == [TRACE]  # unsampled, untraced: none

    # With OpenTelemetry's middleware outside, its server span is the request's trace.
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    traced = MetricsCollector(slow_hooks=())
    inner = Starlette(routes=[Route("/items/{id}", item)])
    inner.add_middleware(EventmonMiddleware, collector=traced, exemplars=True)
    asyncio.run(get(OpenTelemetryMiddleware(inner, tracer_provider=provider), ("/items/1", {})))
    [server_span] = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
    want = format(server_span.context.trace_id, "032x")
    got = exemplars(render(traced, openmetrics=True))
    assert [trace for trace, _ in got.values()] == [want]


def test_flask_traceparent(collector: MetricsCollector) -> None:
    from flask import Flask

    from eventmon.flask import Eventmon

    flask_app = Flask(__name__)

    @flask_app.get("/events/<int:event_id>")
    def event(event_id: int) -> str:
        return "ok"

    collector.enable_exemplars()
    Eventmon(flask_app, collector=collector)
    client = flask_app.test_client()
    # Werkzeug's client ends a request when its response is closed: here after the next.
    first = client.get("/events/1", headers={"traceparent": traceparent(TRACE)})
    second = client.get("/events/2")
    assert first.data == second.data == b"ok"
    second.close()
    first.close()
    got = exemplars(render(collector, openmetrics=True))
    assert [(k[0], v[0]) for k, v in got.items()] == [("/events/<int:event_id>", TRACE)]


def test_wsgi_middleware_changes_only_with_exemplars_on(collector: MetricsCollector) -> None:
    from eventmon.wsgi import EventmonMiddleware

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    assert type(EventmonMiddleware(app, collector=collector)) is EventmonMiddleware
    collector.enable_exemplars()
    assert type(EventmonMiddleware(app, collector=collector, exemplars=False)) is EventmonMiddleware
    assert type(EventmonMiddleware(app, collector=collector)) is not EventmonMiddleware


def test_wsgi_request_closed_late_keeps_its_own_trace() -> None:
    """A body closed after another request ran on the thread still gets its trace."""
    from eventmon.wsgi import EventmonMiddleware

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    c = MetricsCollector(slow_hooks=(), buckets=(1.0,))
    mw = EventmonMiddleware(app, collector=c, exemplars=True)

    def call(path: str, header: str | None) -> Any:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "eventmon.endpoint": path}
        if header is not None:
            environ["HTTP_TRACEPARENT"] = header
        body = mw(environ, lambda *a: None)
        assert len(body) == 1  # a sized body stays sized: servers set Content-Length from it
        assert list(body) == [b"ok"]
        return body

    first = call("/first", traceparent(TRACE))
    second = call("/second", None)
    second.close()
    first.close()
    got = {ep: trace for (ep, _, _), (trace, _, _) in _by_bucket(c).items()}
    assert got == {"/first": TRACE}


def _by_bucket(c: MetricsCollector) -> dict[tuple[str, str, int], tuple[str, float, float]]:
    return {
        (endpoint, status, k): ex
        for (_, endpoint, status), per in c.exemplars_by_series().items()
        for k, ex in per.items()
    }


@pytest.mark.slow
def test_real_prometheus_stores_and_serves_the_exemplars(tmp_path: Path) -> None:
    app_port = free_port()
    server = [PYTHON, "-m", "uvicorn", "apps.starlette_traced:app", "--host", "127.0.0.1"]
    with running([*server, "--port", str(app_port)], app_port):
        for name in ("a", "b"):
            request = urllib.request.Request(
                f"http://127.0.0.1:{app_port}/hello/{name}",
                headers={"traceparent": traceparent(TRACE)},
            )
            with urllib.request.urlopen(request, timeout=10) as r:
                assert r.status == 200
        config = (
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: app\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{app_port}']}}]\n"
        )
        flags = ["--enable-feature=exemplar-storage"]
        with prometheus_server(tmp_path, config, flags=flags) as prom:

            def stored() -> list[dict[str, Any]]:
                data = prom.api(
                    "query_exemplars",
                    query='http_request_duration_seconds_bucket{endpoint="/hello/{name}"}',
                    start=str(time.time() - 600),
                    end=str(time.time() + 600),
                )
                return [e for series in data or [] for e in series["exemplars"]]

            found = prom.wait_for(stored)
    assert found, prom.output
    assert {e["labels"]["trace_id"] for e in found} == {TRACE}
    for e in found:
        assert 0 < float(e["value"]) < 10
        assert abs(float(e["timestamp"]) - time.time()) < 120


def test_exemplars_sit_on_the_series_of_their_extra_label_values(
    collector: MetricsCollector,
) -> None:
    from flask import Flask

    from eventmon.flask import Eventmon

    flask_app = Flask(__name__)

    @flask_app.get("/events/<int:event_id>")
    def event(event_id: int) -> str:
        return "ok"

    collector.enable_exemplars()
    Eventmon(flask_app, collector=collector, header_labels={"tenant": "X-Tenant-ID"})
    client = flask_app.test_client()
    for tenant, trace_id in (("acme", TRACE), ("globex", OTHER)):
        headers = {"traceparent": traceparent(trace_id), "X-Tenant-ID": tenant}
        client.get("/events/1", headers=headers).close()
    by_tenant = {}
    for family in text_string_to_metric_families(render(collector, openmetrics=True).decode()):
        for s in family.samples:
            if s.exemplar is not None:
                by_tenant[s.labels["tenant"]] = s.exemplar.labels["trace_id"]
    assert by_tenant == {"acme": TRACE, "globex": OTHER}


def test_grouped_status_codes_keep_the_newest_exemplar_of_each_class() -> None:
    c = MetricsCollector(exemplars=True, slow_hooks=())
    _traced(c, OTHER, ("/a", 0.012))  # 200
    current_trace.set(TRACE)
    try:
        c.observe("GET", "/a", 201, 0.013)  # same bucket, same class, later
        c.observe("GET", "/a", 404, 0.3)
    finally:
        current_trace.set(None)
    body = render(c, openmetrics=True, group_status_codes=True)
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.exemplar is not None:
                key = (s.labels["status_code"], s.labels["le"])
                found[key] = (s.exemplar.labels["trace_id"], s.exemplar.value)
    assert found == {("2xx", "0.015"): (TRACE, 0.013), ("4xx", "0.5"): (TRACE, 0.3)}
