"""eventmon next to prometheus_client: each registry on the other's page, no family twice.

Checked with the real prometheus_client (its text and OpenMetrics expositions and
parsers), with ``promtool check metrics``, and in real Flask and Starlette apps
scraped over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import urllib.request
from collections import Counter as Tally
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from eventmon import ConfigurationError, MetricsCollector
from eventmon.core.exemplars import current_trace
from eventmon.exporters.promclient import EventmonCollector, serve_alongside
from eventmon.exporters.prometheus import CONTENT_TYPE_OPENMETRICS, render
from servers import free_port, promtool_check, uvicorn_server

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _collector() -> MetricsCollector:
    """Every kind of family eventmon's page can show: body sizes and exemplars too."""
    c = MetricsCollector(slow_hooks=(), slow_threshold=0.2, exemplars=True)
    for i in range(30):
        c.observe(["GET", "POST"][i % 2], "/events/{event_id}", [200, 404][i % 3 == 0], i / 100)
        c.sizes.observe("POST", "/events/{event_id}", 201, 40 * i, 3_000 * i)
    current_trace.set(TRACE)
    try:
        c.observe("GET", '/we"ird\\path', 503, 0.3)
    finally:
        current_trace.set(None)
    c.increment_counter("db_connection_errors", {"db": "main"}, 2)
    c.set_gauge("queue_depth", 7, {"queue": "mail"})
    c.define_histogram("db_query_seconds", "Query time.", ["db"], buckets=[0.01, 0.1, 1])
    for v in (0.005, 0.05, 0.5, 5):
        c.observe_histogram("db_query_seconds", v, {"db": "main"})
    c.record_internal_error("test.place")
    return c


def _app_registry(*, process: bool = True) -> CollectorRegistry:
    """What an app's prometheus_client registry looks like: the default collectors, its own."""
    registry = CollectorRegistry(auto_describe=True)  # as prometheus_client.REGISTRY is
    if process:
        ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    Counter("orders_placed_total", "Orders placed.", ["shop"], registry=registry).labels("a").inc(3)
    Histogram("app_render_seconds", "Render time.", registry=registry).observe(0.2)
    return registry


def _type_lines(body: bytes) -> Tally[str]:
    """How many times each family is declared (a family twice is what Prometheus rejects)."""
    return Tally(
        line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE ")
    )


def _values(body: bytes, *, openmetrics: bool = False) -> dict[tuple[str, frozenset[Any]], float]:
    parse = parse_openmetrics if openmetrics else text_string_to_metric_families
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in parse(body.decode())
        for s in f.samples
        if not s.name.endswith("_created")
    }


def _eventmon_samples(c: MetricsCollector, *, openmetrics: bool = False) -> dict[Any, float]:
    skip = ("process_", "eventmon_cpu_limit", "eventmon_memory_limit")
    return {
        k: v
        for k, v in _values(render(c, openmetrics=openmetrics), openmetrics=openmetrics).items()
        if not k[0].startswith(skip)
    }


# ----------------------------------------------------------- eventmon in a registry


@pytest.mark.parametrize("openmetrics", [False, True])
def test_registered_collector_shows_every_eventmon_sample_and_no_family_twice(
    openmetrics: bool,
) -> None:
    c = _collector()
    registry = _app_registry()
    registry.register(EventmonCollector(c))
    body = (generate_openmetrics if openmetrics else generate_latest)(registry)
    got = _values(body, openmetrics=openmetrics)
    want = _eventmon_samples(c, openmetrics=openmetrics)
    assert want, "nothing to compare"
    missing = {k: v for k, v in want.items() if got.get(k) != pytest.approx(v)}
    assert missing == {}
    # Histograms (request and user), the HDR summary, in-progress gauge, counters, info.
    assert got[("db_query_seconds_bucket", frozenset({("db", "main"), ("le", "0.1")}))] == 2
    assert got[("db_query_seconds_count", frozenset({("db", "main")}))] == 4
    assert ("http_requests_in_progress", frozenset()) in got
    assert any(k[0] == "http_request_duration_hdr_seconds" for k in got)
    assert got[("orders_placed_total", frozenset({("shop", "a")}))] == 3
    sized = frozenset(
        {("method", "POST"), ("endpoint", "/events/{event_id}"), ("status_code", "201")}
    )
    assert got[("http_response_size_bytes_count", sized)] == 30
    assert got[("http_request_size_bytes_sum", sized)] == 40 * sum(range(30))
    # process_* once: prometheus_client's ProcessCollector keeps its copy, eventmon drops its.
    assert _type_lines(body).most_common(1)[0][1] == 1
    assert (
        _type_lines(body)["process_cpu_seconds_total" if not openmetrics else "process_cpu_seconds"]
        == 1
    )
    assert "process_virtual_memory_bytes" in body.decode()  # prometheus_client's own
    if not openmetrics:
        promtool_check(body)


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_the_bridge_s_openmetrics_page_carries_the_same_exemplars(unit: str) -> None:
    c = _collector()
    current_trace.set("0af7651916cd43dd8448eb211c80319c")
    try:
        c.observe("GET", "/late", 200, 30.0)  # past the last bound shown in ms: on +Inf
    finally:
        current_trace.set(None)
    registry = CollectorRegistry()
    registry.register(EventmonCollector(c, unit=unit))

    def exemplars(body: bytes) -> dict[tuple[str, str], tuple[str, float, float]]:
        return {
            (s.labels["endpoint"], s.labels["le"]): (
                s.exemplar.labels["trace_id"],
                s.exemplar.value,
                s.exemplar.timestamp,
            )
            for f in parse_openmetrics(body.decode())
            for s in f.samples
            if s.exemplar is not None
        }

    mine = exemplars(render(c, openmetrics=True, unit=unit))
    assert set(mine) == {('/we"ird\\path', "0.5" if unit == "s" else "500.0"), ("/late", "+Inf")}
    theirs = exemplars(generate_openmetrics(registry))
    assert theirs.keys() == mine.keys()
    for key, (trace_id, value, at) in mine.items():
        assert theirs[key][:2] == (trace_id, pytest.approx(value))
        assert float(theirs[key][2]) == pytest.approx(float(at), abs=0.001)


def test_a_counter_s_help_text_reaches_the_registry() -> None:
    c = MetricsCollector(slow_hooks=())
    c.define_counter("db_queries", 'Queries run.\nSee the "db" panel.')
    c.increment_counter("db_queries")
    c.increment_counter("cache_misses")
    registry = CollectorRegistry()
    registry.register(EventmonCollector(c, process_metrics=False))
    body = generate_latest(registry)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["db_queries"].documentation == 'Queries run.\nSee the "db" panel.'
    assert families["cache_misses"].documentation == "Counter cache_misses."
    promtool_check(body)


@pytest.mark.parametrize("c", [MetricsCollector(slow_hooks=()), _collector()], ids=["empty", "fed"])
def test_the_bridge_declares_exactly_eventmon_page_families_but_process(
    c: MetricsCollector,
) -> None:
    # Catches a family added to eventmon's page but not to the bridge, samples or not.
    registry = CollectorRegistry()
    registry.register(EventmonCollector(c))
    page = {n for n in _type_lines(render(c)) if not n.startswith("process_")}
    assert set(_type_lines(generate_latest(registry))) == page
    registry = CollectorRegistry()
    registry.register(EventmonCollector(c, process_metrics=True))
    assert set(_type_lines(generate_latest(registry))) == set(_type_lines(render(c)))


def test_register_next_to_a_process_collector_with_process_metrics_on_is_refused() -> None:
    registry = _app_registry()
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(EventmonCollector(_collector(), process_metrics=True))


def test_process_metrics_on_in_a_registry_without_a_process_collector() -> None:
    registry = _app_registry(process=False)
    registry.register(EventmonCollector(_collector(), process_metrics=True))
    body = generate_latest(registry)
    got = _values(body)
    assert got[("process_cpu_seconds_total", frozenset())] > 0
    assert got[("process_resident_memory_bytes", frozenset())] > 0
    promtool_check(body)


def test_unit_ms_matches_eventmon_page() -> None:
    c = _collector()
    registry = CollectorRegistry()
    registry.register(EventmonCollector(c, unit="ms"))
    got = _values(generate_latest(registry))
    want_ms = {k: v for k, v in _values(render(c, unit="ms")).items() if "duration" in k[0]}
    assert any(k[0] == "http_request_duration_ms_bucket" for k in want_ms)
    assert {k: got.get(k) for k in want_ms} == pytest.approx(want_ms)
    assert not any(k[0].startswith("http_request_duration_seconds") for k in got)


def test_a_failing_read_leaves_the_registry_page_served_and_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = _collector()
    registry = _app_registry()
    registry.register(EventmonCollector(c))

    def broken() -> list[Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr(c, "series", broken)
    first = _values(generate_latest(registry))
    assert first[("orders_placed_total", frozenset({("shop", "a")}))] == 3
    assert not any(k[0].startswith("http_") for k in first)
    monkeypatch.undo()
    again = _values(generate_latest(registry))
    assert (
        again[("eventmon_internal_errors_total", frozenset({("where", "promclient.collect")}))] == 1
    )


@pytest.mark.parametrize("bad", [{"unit": "min"}, {"process_metrics": "yes"}, {"collector": 3}])
def test_bad_options_are_configuration_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        EventmonCollector(**bad)


# ----------------------------------------------------- a registry on eventmon's page


@pytest.mark.parametrize("openmetrics", [False, True])
def test_render_also_registry_serves_both_with_no_family_twice(openmetrics: bool) -> None:
    c = _collector()
    registry = _app_registry()
    body = render(c, openmetrics=openmetrics, also=registry)
    text = body.decode()
    assert _type_lines(body).most_common(1)[0][1] == 1, _type_lines(body).most_common(3)
    got = _values(body, openmetrics=openmetrics)
    want = _eventmon_samples(c, openmetrics=openmetrics)
    assert {k: v for k, v in want.items() if got.get(k) != pytest.approx(v)} == {}
    assert got[("orders_placed_total", frozenset({("shop", "a")}))] == 3
    sized = frozenset(
        {("method", "POST"), ("endpoint", "/events/{event_id}"), ("status_code", "201")}
    )
    assert got[("http_response_size_bytes_count", sized)] == 30
    assert got[("http_request_size_bytes_sum", sized)] == 40 * sum(range(30))
    # The registry's process families are the ones served (with their other figures).
    assert "process_virtual_memory_bytes" in text
    assert "CPU time of this process." not in text
    if openmetrics:
        assert text.count("# EOF") == 1
        assert text.endswith("# EOF\n")
    else:
        promtool_check(body)


def test_a_registry_holding_eventmon_collector_is_served_once() -> None:
    c = _collector()
    registry = _app_registry()
    registry.register(EventmonCollector(c))
    body = render(c, also=registry)
    assert _type_lines(body).most_common(1)[0][1] == 1
    promtool_check(body)


def test_clash_other_than_process_is_logged_once_and_the_registry_copy_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = _collector()
    registry = CollectorRegistry()
    Counter("queue_depth", "The app's own.", registry=registry).inc(41)
    with caplog.at_level(logging.WARNING, logger="eventmon"):
        first = render(c, also=registry)
        render(c, also=registry)
    assert _values(first)[("queue_depth_total", frozenset())] == 41
    assert ("queue_depth", frozenset({("queue", "mail")})) not in _values(first)
    assert [r.getMessage() for r in caplog.records if "queue_depth" in r.getMessage()] == [
        "eventmon: the prometheus_client registry also exports queue_depth;"
        " serving the registry's copy, not eventmon's"
    ]
    promtool_check(first)


def test_a_failing_registry_leaves_eventmon_page_served_and_counted() -> None:
    c = _collector()

    class Broken:
        def collect(self) -> Iterator[Any]:
            raise RuntimeError("app collector bug")

    body = render(c, also=Broken())
    assert (
        _values(body)[
            ("eventmon_internal_errors_total", frozenset({("where", "prometheus_client.registry")}))
        ]
        == 1
    )
    promtool_check(body)


def test_serve_alongside_checks_what_it_is_given() -> None:
    c = _collector()
    with pytest.raises(ConfigurationError, match="prometheus_client registry"):
        serve_alongside(object(), c)
    with pytest.raises(ConfigurationError, match="not an EventmonCollector"):
        serve_alongside(EventmonCollector(c), c)
    serve_alongside(CollectorRegistry(), c)
    serve_alongside(None, c)
    assert c.extra_registry is None


# ------------------------------------------------------------ real apps over HTTP


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _wsgi_server(app: Any) -> Iterator[str]:
    port = free_port()
    server = make_server("127.0.0.1", port, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _get(url: str, accept: str | None = None) -> tuple[str, bytes]:
    req = urllib.request.Request(url)
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read()


def test_flask_app_serving_prometheus_client_page_with_eventmon_registered() -> None:
    from flask import Flask
    from prometheus_client import make_wsgi_app
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from eventmon.flask import Eventmon

    c = MetricsCollector(slow_hooks=())
    registry = _app_registry()
    registry.register(EventmonCollector(c))
    app = Flask(__name__)

    @app.get("/events/<int:event_id>")
    def event(event_id: int) -> str:
        c.observe_histogram("db_query_seconds", 0.02, {"db": "main"})
        return str(event_id)

    Eventmon(app, collector=c, metrics_path=None)  # the page is prometheus_client's
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": make_wsgi_app(registry)})  # type: ignore[method-assign]
    with _wsgi_server(app) as base:
        for i in range(3):
            _get(f"{base}/events/{i}")
        _, body = _get(f"{base}/metrics")
    got = _values(body)
    key = frozenset(
        {("method", "GET"), ("endpoint", "/events/<int:event_id>"), ("status_code", "200")}
    )
    assert got[("http_requests_total", key)] == 3
    assert got[("db_query_seconds_count", frozenset({("db", "main")}))] == 3
    assert _type_lines(body).most_common(1)[0][1] == 1
    promtool_check(body)


def test_starlette_app_serving_eventmon_page_with_the_app_registry_beside() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from eventmon.asgi import EventmonMiddleware

    c = MetricsCollector(slow_hooks=())
    registry = _app_registry()
    orders = Counter("orders_total", "Orders.", registry=registry)

    async def order(request: Any) -> PlainTextResponse:
        orders.inc()
        c.observe_histogram("payload_bytes", 512, buckets=[100, 1000, 10000])
        return PlainTextResponse("ok")

    app = EventmonMiddleware(Starlette(routes=[Route("/orders/{id}", order)]), collector=c)
    serve_alongside(registry, c)
    with uvicorn_server(app) as base:
        for i in range(4):
            _get(f"{base}/orders/{i}")
        _, text_body = _get(f"{base}/metrics")
        om_type, om_body = _get(f"{base}/metrics", accept="application/openmetrics-text")
    got = _values(text_body)
    key = frozenset({("method", "GET"), ("endpoint", "/orders/{id}"), ("status_code", "200")})
    assert got[("http_requests_total", key)] == 4
    assert got[("orders_total", frozenset())] == 4
    assert got[("payload_bytes_count", frozenset())] == 4
    assert _type_lines(text_body).most_common(1)[0][1] == 1
    promtool_check(text_body)
    assert om_type == CONTENT_TYPE_OPENMETRICS
    om = _values(om_body, openmetrics=True)
    assert om[("orders_total", frozenset())] == 4
    assert om[("http_requests_total", key)] == 4
    assert _type_lines(om_body).most_common(1)[0][1] == 1


def test_import_eventmon_exporters_does_not_import_prometheus_client() -> None:
    import sys

    code = (
        "import sys, eventmon, eventmon.exporters, eventmon.exporters.prometheus;"
        "from eventmon.exporters.prometheus import render;"
        "import eventmon as e; render(e.MetricsCollector());"
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_gunicorn_workers_merge_user_histograms_on_both_pages(tmp_path: Path) -> None:
    from servers import PYTHON, running

    port = free_port()
    cmd = [
        PYTHON,
        "-m",
        "gunicorn",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "apps.promclient_app:app",
    ]
    env = {"EVENTMON_MULTIPROC_DIR": str(tmp_path / "mp"), "EVENTMON_MULTIPROC_INTERVAL": "0.2"}
    with running(cmd, port, env=env):
        sizes = [5, 50, 500, 5000] * 10
        with ThreadPoolExecutor(4) as pool:
            served = list(pool.map(lambda n: _get(f"http://127.0.0.1:{port}/work/{n}"), sizes))
        assert len({body for _, body in served}) == 2  # both workers served some
        key = frozenset({("kind", "a")})
        for _ in range(50):
            _, eventmon_page = _get(f"http://127.0.0.1:{port}/metrics")
            _, prom_page = _get(f"http://127.0.0.1:{port}/prom")
            pages = [_values(eventmon_page), _values(prom_page)]
            if all(p.get(("job_size_bytes_count", key)) == len(sizes) for p in pages):
                break
            threading.Event().wait(0.2)  # the other worker's next periodic write
        for body, got in zip((eventmon_page, prom_page), pages, strict=True):
            assert got[("job_size_bytes_count", key)] == len(sizes)
            assert got[("job_size_bytes_sum", key)] == sum(sizes)
            assert got[("job_size_bytes_bucket", key | {("le", "100.0")})] == 20
            assert _type_lines(body).most_common(1)[0][1] == 1
            promtool_check(body)


def test_the_bridge_carries_extra_request_labels() -> None:
    c = MetricsCollector(slow_hooks=(), slow_threshold=0.2)
    c.use_extra_labels(("tenant",))
    c.observe("GET", ("/events/{event_id}", "acme"), 200, 0.3)
    c.observe("GET", ("/events/{event_id}", "globex"), 200, 0.01)
    c.observe("GET", "/health", 200, 0.01)  # recorded without values: tenant=""
    registry = CollectorRegistry()
    registry.register(EventmonCollector(c))
    body = generate_latest(registry)
    promtool_check(body)
    got = _values(body)
    assert got == {**got, **_eventmon_samples(c)}  # the same samples as eventmon's page
    requests = {
        dict(k[1]).get("tenant"): v for k, v in got.items() if k[0] == "http_requests_total"
    }
    assert requests == {"acme": 1, "globex": 1, "": 1}
    slow = {k[1]: v for k, v in got.items() if k[0] == "http_slow_requests_total"}
    assert slow == {
        frozenset({("method", "GET"), ("endpoint", "/events/{event_id}"), ("tenant", "acme")}): 1
    }
    c.shutdown()
