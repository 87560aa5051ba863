"""Exemplars: traceparent parsing, the bounded store, and the collector switch."""

from __future__ import annotations

import pytest

from conftest import FakeClock
from eventmon import ConfigurationError, MetricsCollector
from eventmon.core.exemplars import (
    ExemplarStore,
    current_trace,
    request_trace_id,
    trace_id_from_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("header", "want"),
    [
        (f"00-{TRACE}-00f067aa0ba902b7-01", TRACE),
        (f"00-{TRACE}-00f067aa0ba902b7-01".encode(), TRACE),  # ASGI headers are bytes
        (f" 00-{TRACE}-00f067aa0ba902b7-03 ", TRACE),  # other flags beside sampled
        (f"01-{TRACE}-00f067aa0ba902b7-01-later-fields", TRACE),  # a future version
        (f"00-{TRACE}-00f067aa0ba902b7-00", None),  # not sampled: the trace was dropped
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"ff-{TRACE}-00f067aa0ba902b7-01", None),
        (f"00-{TRACE.upper()}-00f067aa0ba902b7-01", None),
        (f"00-{TRACE}-00f067aa0ba902b7-01-extra", None),  # version 00 has four fields
        (f"00-{TRACE[:-1]}g-00f067aa0ba902b7-01", None),
        ("00-short-01", None),
        ("", None),
        (None, None),
    ],
)
def test_traceparent(header: str | bytes | None, want: str | None) -> None:
    assert trace_id_from_traceparent(header) == want


def test_active_otel_span_wins_over_the_header() -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    header = f"00-{TRACE}-00f067aa0ba902b7-01"
    assert request_trace_id(header) == TRACE
    with tracer.start_as_current_span("request") as span:
        want = format(span.get_span_context().trace_id, "032x")
        assert request_trace_id(header) == want != TRACE
        assert request_trace_id(None) == want


def test_store_keeps_the_latest_per_bucket_and_stays_bounded() -> None:
    store = ExemplarStore((0.1, 1.0), max_entries=2)
    store.offer("GET", "/a", 200, 0.05, "a" * 32, 1.0)
    store.offer("GET", "/a", 200, 0.1, "b" * 32, 2.0)  # equal to a bound: in that bucket
    store.offer("GET", "/a", 200, 0.5, "c" * 32, 3.0)
    store.offer("GET", "/b", 200, 5.0, "d" * 32, 4.0)  # a third key: over the cap, dropped
    store.offer("GET", "/a", 200, 9.0, "e" * 32, 5.0)  # also a new key (+Inf): dropped
    store.offer("GET", "/a", 200, 0.7, "f" * 32, 6.0)  # a key held: overwritten
    assert store.by_series() == {
        ("GET", "/a", "200"): {0: ("b" * 32, 0.1, 2.0), 1: ("f" * 32, 0.7, 6.0)}
    }


def test_off_by_default_and_the_request_path_untouched() -> None:
    c = MetricsCollector(slow_hooks=())
    assert not c.exemplars
    before = (c.begin, c.end, c.observe)
    token = c.begin()
    current_trace.set(TRACE)
    try:
        c.end(token, "GET", "/a", 200, c.clock())
        c.observe("GET", "/a", 200, 0.01)
    finally:
        current_trace.set(None)
    assert c.exemplars_by_series() == {}
    assert "end" not in vars(c) or vars(c)["end"] == before[1]
    c.enable_exemplars()
    assert c.exemplars
    assert c.end != before[1]
    assert c.observe != before[2]


def test_exemplars_switch_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="exemplars must be True or False"):
        MetricsCollector(exemplars="yes")  # type: ignore[arg-type]


def test_collector_records_the_context_trace(clock: FakeClock) -> None:
    c = MetricsCollector(exemplars=True, clock=clock, slow_hooks=(), buckets=(0.1, 1.0))
    token = c.begin()
    start = clock()
    clock.advance(0.25)
    current_trace.set(TRACE)
    try:
        c.end(token, "GET", "/a", 200, start)
        c.observe("BREW", "/a", 200, 0.05)  # a made-up method, under the "other" label
    finally:
        current_trace.set(None)
    c.observe("GET", "/a", 200, 0.06)  # no trace: leaves no exemplar
    by_series = c.exemplars_by_series()
    ex = by_series[("GET", "/a", "200")]
    assert list(ex) == [1]
    trace_id, value, _ = ex[1]
    assert (trace_id, value) == (TRACE, pytest.approx(0.25))
    assert by_series[("other", "/a", "200")][0][:2] == (TRACE, 0.05)
    # The aggregates are those of the ordinary path.
    counts = {(s.method, s.status_code): s.buckets for s in c.series()}
    assert counts == {("GET", "200"): (1, 1, 0), ("other", "200"): (1, 0, 0)}
