"""eventmon → OpenTelemetry, read through the in-memory reader and the Prometheus reader."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from eventmon import MetricsCollector
from eventmon.exporters.base import PeriodicExportLoop
from eventmon.exporters.otel import SEMCONV_DURATION_BUCKETS, OTelBridge


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    out = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    out.extend(m.data.data_points)
    return out


def _feed(c: MetricsCollector) -> list[float]:
    values = []
    for i in range(1, 101):
        seconds = i * 0.0001234  # sub-millisecond detail must survive
        c.observe("GET", "/events/{event_id}", 200, seconds)
        values.append(seconds)
    c.observe("POST", "/orders", 503, 0.75)
    c.observe("BREW", "/orders", 201, 0.002)
    c.observe("GET", "__unmatched__", 404, 0.001)
    return values


def test_in_memory_reader_sees_semconv_histogram(collector: MetricsCollector) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    bridge = OTelBridge(collector, provider)
    values = _feed(collector)
    collector.begin()  # one request in progress
    points = {
        tuple(sorted(p.attributes.items())): p
        for p in _points(reader, "http.server.request.duration")
    }
    get = points[
        (
            ("http.request.method", "GET"),
            ("http.response.status_code", 200),
            ("http.route", "/events/{event_id}"),
            ("url.scheme", "http"),
        )
    ]
    assert get.count == 100
    assert get.sum == pytest.approx(sum(values), rel=1e-12)
    assert list(get.explicit_bounds) == list(SEMCONV_DURATION_BUCKETS)
    assert get.bucket_counts[0] == sum(1 for v in values if v <= 0.005)
    assert get.min == pytest.approx(0.0001234)
    err = points[
        (
            ("error.type", "503"),
            ("http.request.method", "POST"),
            ("http.response.status_code", 503),
            ("http.route", "/orders"),
            ("url.scheme", "http"),
        )
    ]
    assert err.count == 1
    assert err.sum == 0.75
    other = [k for k in points if ("http.request.method", "_OTHER") in k]
    assert len(other) == 1
    unmatched = [k for k in points if ("http.response.status_code", 404) in k]
    assert all(name != "http.route" for name, _ in unmatched[0])
    active = _points(reader, "http.server.active_requests")
    assert active[0].value == 1
    # Cumulative: a second collection adds only what is new.
    collector.observe("GET", "/events/{event_id}", 200, 0.01)
    points2 = _points(reader, "http.server.request.duration")
    total = sum(p.count for p in points2)
    assert total == 104
    bridge.shutdown()
    bridge.shutdown()
    provider.shutdown()


def test_prometheus_reader_through_prometheus_client() -> None:
    pytest.importorskip("opentelemetry.exporter.prometheus")
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    c = MetricsCollector(slow_hooks=())
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    OTelBridge(c, provider)
    _feed(c)
    from prometheus_client import REGISTRY

    try:
        text = generate_latest(REGISTRY).decode()  # the reader registers there
    finally:
        provider.shutdown()  # unregisters the reader
        c.shutdown()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    fam = families["http_server_request_duration_seconds"]
    counts = {
        (s.labels["http_request_method"], s.labels.get("http_route")): s.value
        for s in fam.samples
        if s.name.endswith("_count")
    }
    assert counts[("GET", "/events/{event_id}")] == 100
    assert counts[("POST", "/orders")] == 1
    buckets = [s for s in fam.samples if s.name.endswith("_bucket") and s.labels["le"] == "0.005"]
    assert buckets


def test_bridge_in_a_periodic_loop_and_overflow(collector: MetricsCollector) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    bridge = OTelBridge(collector, provider, max_pending=10, max_routes=2)
    for i in range(30):
        collector.observe("GET", f"/r{i % 3}", 200, 0.001)
    collector.flush()  # folds 30 into a 10-slot buffer: 20 dropped and counted
    assert bridge.dropped == 20
    assert collector.internal_errors()["otel.dropped"] >= 1
    loop = PeriodicExportLoop(collector, [bridge], interval=60)
    assert loop.export_once() == 0
    routes = {
        p.attributes.get("http.route") for p in _points(reader, "http.server.request.duration")
    }
    assert "__overflow__" in routes
    assert len(routes) == 3
    loop.shutdown()
    provider.shutdown()


def test_user_counters_and_gauges_and_url_scheme(collector: MetricsCollector) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    collector.increment_counter("tickets_sold", {"event": "concert"}, 3)
    OTelBridge(collector, provider, url_scheme="https")
    # Defined after the bridge: they follow from the next collection on.
    collector.increment_counter("tickets_sold", {"event": "talk"})
    collector.set_gauge("queue_depth", 7, {"queue": "checkout"})
    collector.observe("GET", "/events/{event_id}", 200, 0.01)
    sold = {p.attributes["event"]: p.value for p in _points(reader, "tickets_sold")}
    assert sold == {"concert": 3, "talk": 1}
    [depth] = _points(reader, "queue_depth")
    assert (dict(depth.attributes), depth.value) == ({"queue": "checkout"}, 7)
    [duration] = _points(reader, "http.server.request.duration")
    assert duration.attributes["url.scheme"] == "https"
    # A counter stays cumulative: only what was added since is added again.
    collector.increment_counter("tickets_sold", {"event": "concert"}, 2)
    collector.set_gauge("queue_depth", 4, {"queue": "checkout"})
    sold = {p.attributes["event"]: p.value for p in _points(reader, "tickets_sold")}
    assert sold == {"concert": 5, "talk": 1}
    assert [p.value for p in _points(reader, "queue_depth")] == [4]
    provider.shutdown()


def test_user_histograms_with_their_own_buckets(collector: MetricsCollector) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    OTelBridge(collector, provider)
    collector.define_histogram("db_query_seconds", "", ("table",), buckets=(0.01, 0.1))
    for v in (0.004, 0.05, 0.05, 2.0):
        collector.observe_histogram("db_query_seconds", v, {"table": "events"})
    collector.observe_histogram("db_query_seconds", 0.02, {"table": "orders"})
    points = {p.attributes["table"]: p for p in _points(reader, "db_query_seconds")}
    events = points["events"]
    assert list(events.explicit_bounds) == [0.01, 0.1]
    assert list(events.bucket_counts) == [1, 2, 1]
    assert events.sum == pytest.approx(2.104)
    assert (events.min, events.max) == (0.004, 2.0)
    assert points["orders"].count == 1
    # The same figures as eventmon's own exposition of it.
    snap = collector.histograms()["db_query_seconds"]
    assert snap.samples[("events",)][0] == tuple(events.bucket_counts)
    provider.shutdown()


def test_url_scheme_is_checked(collector: MetricsCollector) -> None:
    from eventmon import ConfigurationError

    with pytest.raises(ConfigurationError, match="url_scheme must be 'http' or 'https'"):
        OTelBridge(collector, MeterProvider(), url_scheme="ftp")


def test_extra_request_labels_become_attributes_with_the_label_cap() -> None:
    c = MetricsCollector(slow_hooks=(), max_label_sets=2)
    c.use_extra_labels(("plan", "tenant"))
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    OTelBridge(c, provider)
    c.observe("GET", ("/events/{event_id}", "gold", "acme"), 200, 0.01)
    c.observe("GET", ("/events/{event_id}", "gold", "acme"), 200, 0.02)
    c.observe("GET", ("/events/{event_id}", "free", "globex"), 200, 0.01)
    c.observe("GET", ("/events/{event_id}", "free", "initech"), 200, 0.01)  # past the cap
    c.observe("GET", "/health", 200, 0.01)  # a plain template: no values
    got = {
        (p.attributes.get("http.route"), p.attributes.get("tenant"), p.attributes.get("plan")): (
            p.count
        )
        for p in _points(reader, "http.server.request.duration")
    }
    assert got == {
        ("/events/{event_id}", "acme", "gold"): 2,
        ("/events/{event_id}", "globex", "free"): 1,
        ("/events/{event_id}", "__overflow__", "__overflow__"): 1,
        ("/health", None, None): 1,
    }
    provider.shutdown()
    c.shutdown()


def test_a_counter_s_help_text_is_its_otel_description(collector: MetricsCollector) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    collector.define_counter("db_queries", "Queries run against the main database.")
    collector.increment_counter("db_queries")
    collector.increment_counter("cache_misses")  # no help text: the default one
    OTelBridge(collector, provider)
    collector.observe("GET", "/events/{event_id}", 200, 0.01)
    described = {
        m.name: m.description
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert described["db_queries"] == "Queries run against the main database."
    assert described["cache_misses"] == "Counter cache_misses."
    provider.shutdown()


def test_body_sizes_through_a_real_starlette_app_match_eventmon_s_own() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from eventmon.asgi import EventmonMiddleware

    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse("x" * (2 * len(await request.body())))

    c = MetricsCollector(slow_hooks=())
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    OTelBridge(c, provider)
    app = Starlette(routes=[Route("/orders/{order_id}", echo, methods=["POST"])])
    app.add_middleware(EventmonMiddleware, collector=c, size_metrics=True)

    async def post_three() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for n in (10, 300, 5_000):
                response = await client.post(f"/orders/{n}", content=b"b" * n)
                assert response.status_code == 200

    asyncio.run(post_three())
    route = ("http.route", "/orders/{order_id}")
    (request,) = [
        p for p in _points(reader, "http.server.request.body.size") if route in p.attributes.items()
    ]
    (response,) = [
        p
        for p in _points(reader, "http.server.response.body.size")
        if route in p.attributes.items()
    ]
    assert (request.count, request.sum, request.min, request.max) == (3, 5_310, 10, 5_000)
    assert (response.count, response.sum) == (3, 10_620)
    assert response.attributes["http.request.method"] == "POST"
    assert response.attributes["http.response.status_code"] == 200
    # The same bucket counts as eventmon's own histograms of them.
    own = c.size_histograms()
    key = ("POST", "/orders/{order_id}", "200")
    assert list(request.explicit_bounds) == [100.0, 1e3, 1e4, 1e5, 1e6, 1e7]
    assert list(request.bucket_counts) == own[0][key][0]
    assert list(response.bucket_counts) == own[1][key][0]
    provider.shutdown()


def test_a_size_listener_that_raises_is_counted_and_the_others_still_run() -> None:
    c = MetricsCollector(slow_hooks=())
    seen: list[tuple[object, ...]] = []

    def broken(*args: object) -> None:
        raise RuntimeError("listener at fault")

    c.sizes.add_listener(broken)
    c.sizes.add_listener(lambda *args: seen.append(args))
    c.sizes.observe("GET", "/a", 200, 5, 7)
    assert seen == [("GET", "/a", 200, 5, 7)]
    assert c.internal_errors() == {"size_listener": 1}
    assert c.size_histograms()[1][("GET", "/a", "200")][1] == 7
