"""The same cases against every adapter: Starlette, FastAPI, Flask, plain WSGI, Django.

Every app runs on a fake clock, so durations are exact: the streaming route
moves the clock ``STEP`` before each of its chunks, after the view returned.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.apps import CHUNKS, STEP, Boom
from eventmon import ConfigurationError, MetricsCollector
from eventmon.core.registry import OVERFLOW, UNMATCHED


def counts(collector: MetricsCollector) -> dict[tuple[str, str, str], int]:
    return {(s.method, s.endpoint, s.status_code): s.count for s in collector.series()}


def sums(collector: MetricsCollector) -> dict[tuple[str, str, str], float]:
    return {(s.method, s.endpoint, s.status_code): s.sum for s in collector.series()}


def test_counts_with_route_templates(make: Any) -> None:
    h = make()
    for path, body in [
        ("/events/1", b"event 1"),
        ("/events/2", b"event 2"),
        ("/api/v1/items/7", b"item 7"),
        ("/api/v1/items/8", b"item 8"),
        ("/events/3", b"event 3"),
    ]:
        r = h.request(path)
        assert (r.status, r.body) == (200, body)
    t = h.templates
    assert counts(_collector()) == {
        ("GET", t["event"], "200"): 3,
        ("GET", t["item"], "200"): 2,
    }


def _collector() -> MetricsCollector:
    from adapters.apps import ctx

    return ctx.collector


def test_unmatched_paths_share_one_label(make: Any) -> None:
    h = make()
    for path in ["/nope", "/random/abc", "/x/y/z", "/events"]:
        assert h.request(path).status == 404
    assert counts(_collector()) == {("GET", UNMATCHED, "404"): 4}


def test_exception_recorded_once_as_500_and_reraised(make: Any) -> None:
    h = make()
    r = h.request("/boom")
    # Every one of these test clients hands the app's own exception back to the caller.
    assert isinstance(r.raised, Boom)
    assert counts(_collector()) == {("GET", h.templates["boom"], "500"): 1}
    assert _collector().in_progress() == 0
    assert h.request("/events/1").status == 200  # the app still serves


def test_exception_while_streaming_recorded_once_as_500(make: Any) -> None:
    h = make()
    r = h.request("/stream-boom")
    assert isinstance(r.raised, Boom)
    assert counts(_collector()) == {("GET", h.templates["stream-boom"], "500"): 1}
    assert _collector().in_progress() == 0


def test_streaming_duration_covers_the_whole_body(make: Any) -> None:
    h = make()
    r = h.request("/stream")
    assert (r.status, r.body) == (200, b"".join(CHUNKS))
    key = ("GET", h.templates["stream"], "200")
    assert counts(_collector()) == {key: 1}
    assert sums(_collector())[key] == pytest.approx(STEP * len(CHUNKS))


def test_slow_hook_fires(make: Any, clock: Any) -> None:
    seen: list[tuple[str, str, int, float]] = []
    c = MetricsCollector(slow_hooks=[lambda *a: seen.append(a)], slow_threshold=1.0, clock=clock)
    try:
        h = make(c)
        assert h.request("/slow").status == 200
        assert h.request("/events/1").status == 200
        assert c.flush_hooks(5)
        assert seen == [("GET", h.templates["slow"], 200, pytest.approx(1.5))]
        assert c.slow_requests() == {("GET", h.templates["slow"]): 1}
    finally:
        c.shutdown()


def test_in_progress_gauge(make: Any) -> None:
    from adapters.apps import ctx

    h = make()
    r = h.request("/inflight")
    assert (r.status, r.body) == (200, b"1")
    assert _collector().in_progress() == 0
    if h.name in ("starlette", "fastapi", "django-async"):
        # Async views run on the event loop's thread: no hop to a worker thread.
        assert ctx.threads == {threading.get_ident()}


def test_exclusions(make: Any) -> None:
    h = make()
    assert h.request("/health").body == b"ok"
    assert h.request("/static/app.css").body == b"ok"
    assert counts(_collector()) == {}
    assert h.request("/events/1").status == 200
    assert len(counts(_collector())) == 1


def test_cardinality_cap(make: Any, clock: Any) -> None:
    c = MetricsCollector(slow_hooks=(), max_label_sets=3, clock=clock)
    try:
        h = make(c)
        codes = [201, 202, 203, 204, 205, 206]
        for code in codes:
            assert h.request(f"/status/{code}").status == code
        got = counts(c)
        assert sum(got.values()) == len(codes)
        assert len(got) == 4
        assert got[(OVERFLOW, OVERFLOW, OVERFLOW)] == 3
    finally:
        c.shutdown()


def test_fault_isolation(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    h = make()
    c = _collector()

    def broken(*args: Any) -> None:
        raise RuntimeError("eventmon bug")

    # Every collector method an adapter may call on the request path.
    for name in ("_record", "request_started", "request_finished", "begin", "end"):
        if hasattr(c, name):
            monkeypatch.setattr(c, name, broken)
    errors = 0
    for path, body in [("/events/5", b"event 5")] * 3 + [("/stream", b"abc")]:
        r = h.request(path)
        assert (r.status, r.body) == (200, body)
        now = sum(c.internal_errors().values())
        assert now > errors, "each fault is counted"
        errors = now
    monkeypatch.undo()
    r = h.request("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
    assert sum(s.value for s in families["eventmon_internal_errors"].samples) == errors


def test_metrics_endpoint(make: Any) -> None:
    h = make()
    h.request("/events/1")
    h.request("/api/v1/items/2")
    r = h.request("/metrics")
    assert r.status == 200
    families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
    samples = {
        (s.labels["endpoint"], s.labels["status_code"]): s.value
        for s in families["http_requests"].samples
        if s.name == "http_requests_total"
    }
    assert samples == {(h.templates["event"], "200"): 1, (h.templates["item"], "200"): 1}
    # The scrape itself is not a request of the app.
    assert sum(counts(_collector()).values()) == 2
    om = h.request("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.body.endswith(b"# EOF\n")
    assert h.request("/metrics", method="POST").status == 405


def test_metrics_path_can_be_moved_or_disabled(make: Any) -> None:
    h = make(metrics_path=None)
    assert h.request("/metrics").status == 404
    assert counts(_collector()) == {("GET", UNMATCHED, "404"): 1}


TOKEN = "s3cret-Token_1.~"


def test_metrics_token_guards_the_page(make: Any) -> None:
    h = make(metrics_token=TOKEN)
    assert h.request("/events/1").status == 200
    assert h.request("/metrics").status == 401
    for authorization in ("Bearer wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN):
        assert h.request("/metrics", headers={"Authorization": authorization}).status == 401
    assert h.request("/metrics", method="POST").status == 401  # refused before anything else
    ok = h.request("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200
    families = {f.name: f for f in text_string_to_metric_families(ok.body.decode())}
    assert [s.value for s in families["http_requests"].samples if s.name.endswith("_total")] == [1]
    assert h.request("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status == 200
    # Scrapes, refused or not, are not requests of the app.
    assert sum(counts(_collector()).values()) == 1


@pytest.mark.parametrize("token", ["", 42, "two words", "naïve", f"{TOKEN}\n"])
def test_a_bad_metrics_token_fails_at_start_up(make: Any, token: Any) -> None:
    # Starlette and Django build their middleware when the first request arrives.
    with pytest.raises(ConfigurationError, match=r"metrics_token.* must be"):
        make(metrics_token=token).request("/events/1")
