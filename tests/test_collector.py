from __future__ import annotations

import gc
import itertools
import logging
import math
import random
import threading
import tracemalloc
from collections.abc import Callable

import pytest

import eventmon
from eventmon import ConfigurationError, MetricsCollector
from eventmon.core.registry import OVERFLOW, UNMATCHED
from eventmon.exporters.prometheus import render


def test_observe_counts_buckets_and_percentiles(collector: MetricsCollector) -> None:
    for ms in range(1, 101):
        collector.observe("GET", "/events/{event_id}", 200, ms / 1000)
    collector.observe("POST", "/events", 201, 0.0002)
    series = {(s.method, s.endpoint, s.status_code): s for s in collector.series()}
    s = series[("GET", "/events/{event_id}", "200")]
    assert s.count == 100
    assert s.sum == pytest.approx(5.05)
    # bounds 0.1, 5, 15, 50, 100, 500 ms, 1, 2.5, 5, 10 s (le is inclusive), +Inf
    assert s.buckets == (0, 5, 10, 35, 50, 0, 0, 0, 0, 0, 0)
    assert series[("POST", "/events", "201")].buckets == (0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    p95 = collector.percentile("/events/{event_id}", 95)
    assert 95.0 <= p95 <= 95.0 * (1 + 1 / 128) + 0.001
    assert collector.percentile("/nothing", 95) == 0.0


def test_exact_totals_from_eight_threads() -> None:
    c = MetricsCollector(slow_hooks=(), journal_limit=97)  # odd limit: drains interleave
    barrier = threading.Barrier(9)
    stop = threading.Event()
    reads: list[int] = []

    def writer(i: int) -> None:
        barrier.wait()
        for n in range(100_000):
            c.observe("GET", f"/e/{n % 7}", 200 + (i % 2), 0.001)

    def reader() -> None:
        barrier.wait()
        while not stop.is_set():
            reads.append(c.total_requests())

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    r = threading.Thread(target=reader)
    for t in [*threads, r]:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert c.total_requests() == 800_000
    assert sum(c.histogram(f"/e/{k}").total for k in range(7)) == 800_000
    assert all(a <= b for a, b in itertools.pairwise(reads)), "a read went backwards"


def test_realtime_snapshot_with_injected_clock(clock) -> None:
    c = MetricsCollector(clock=clock, slow_hooks=())
    token = c.begin()
    for i in range(120):  # two a second for a minute, from the collector's start
        c.observe("GET", "/a", 500 if i % 20 == 0 else 200, 0.010 + (i % 2) * 0.010)
        clock.advance(0.5)
    clock.advance(-0.01)  # still inside the last second
    snap = c.get_realtime_metrics()
    assert snap.active_connections == 1
    assert snap.requests_per_second == pytest.approx(2.0, rel=0.01)
    assert snap.average_response_time == pytest.approx(15.0)
    assert snap.error_rate == pytest.approx(6 / 120)
    assert snap.total_requests == 120
    assert 0 < snap.memory_usage < 100
    assert snap.memory_rss_bytes > 1_000_000
    assert 19.9 <= snap.p95_response_time <= 20.2
    c.end(token, "GET", "/a", 200, clock())
    d = c.get_realtime_metrics().to_dict()
    assert d["activeConnections"] == 0
    assert set(d) >= {
        "activeConnections",
        "requestsPerSecond",
        "averageResponseTime",
        "errorRate",
        "memoryUsage",
        "cpuUsage",
    }
    clock.advance(200)  # quiet for longer than the window
    quiet = c.get_realtime_metrics()
    assert quiet.requests_per_second == 0.0
    assert quiet.total_requests == 121
    assert quiet.p95_response_time == 0.0


def test_module_level_snapshot_and_alias() -> None:
    eventmon.default_collector().observe("GET", "/module", 200, 0.001)
    assert eventmon.get_realtime_metrics().total_requests >= 1
    assert eventmon.getRealtimeMetrics().total_requests >= 1
    assert isinstance(eventmon.getRealtimeMetrics(), eventmon.RealtimeMetrics)


def test_label_cap_folds_into_one_overflow_set_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = MetricsCollector(slow_hooks=(), max_label_sets=10)
    with caplog.at_level(logging.WARNING, logger="eventmon"):
        for i in range(50):
            c.observe("GET", f"/raw/{i}", 200, 0.001)
    series = c.series()
    assert len(series) == 11
    overflow = [s for s in series if s.endpoint == OVERFLOW]
    assert len(overflow) == 1
    assert overflow[0].count == 40
    assert sum(s.count for s in series) == 50
    warnings = [r for r in caplog.records if "reached its cap" in r.getMessage()]
    assert len(warnings) == 1


def test_random_methods_share_one_label_value(collector: MetricsCollector) -> None:
    for i in range(500):
        collector.observe(f"M{i}", "/a", 200, 0.001)
    series = collector.series()
    assert [(s.method, s.count) for s in series] == [("other", 500)]
    assert len(collector._aggregates.series_table) == 1


@pytest.mark.slow  # 105,000 requests under tracemalloc
def test_100k_random_unmatched_urls_grow_memory_less_than_1mb() -> None:
    from eventmon.asgi import EventmonMiddleware

    async def app(scope, receive, send):  # an ASGI app with no routing at all
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    c = MetricsCollector(slow_hooks=())
    mw = EventmonMiddleware(app, collector=c)

    async def noop_receive():
        return {"type": "http.request"}

    async def noop_send(message):
        return None

    import asyncio

    async def hammer(n: int) -> None:
        rnd = random.Random(7)
        for _ in range(n):
            path = "/" + "".join(rnd.choices("abcdefghijklmnop/0123456789", k=24))
            scope = {"type": "http", "method": "GET", "path": path, "headers": []}
            await mw(scope, noop_receive, noop_send)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(hammer(5_000))  # warm up caches and the journal
    c.flush()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    loop.run_until_complete(hammer(100_000))
    c.flush()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    loop.close()
    assert after - before < 1_000_000, f"grew by {after - before} bytes"
    assert [s.endpoint for s in c.series()] == [UNMATCHED]
    assert c.total_requests() == 105_000


@pytest.mark.slow  # 200,000 observations from 40 threads under tracemalloc
def test_memory_stays_bounded_with_40_threads_and_100_endpoints() -> None:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    c = MetricsCollector(slow_hooks=())
    barrier = threading.Barrier(40)

    def work(i: int) -> None:
        barrier.wait()
        rnd = random.Random(i)
        for n in range(5_000):
            c.observe("GET", f"/endpoint/{n % 100}", 200, rnd.expovariate(1 / 0.05))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    peak_during = 0
    for t in threads:
        t.join()
        peak_during = max(peak_during, tracemalloc.get_traced_memory()[0])
    c.flush()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    assert c.total_requests() == 200_000
    assert held < 16 * 1024 * 1024, f"{held / 1e6:.1f} MB held"
    assert peak < 16 * 1024 * 1024, f"{peak / 1e6:.1f} MB at peak"


def test_slow_hook_runs_off_the_request_path_and_a_raising_hook_is_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[tuple[str, str, int, float]] = []
    release = threading.Event()

    def slow_hook(method: str, endpoint: str, status: int, seconds: float) -> None:
        release.wait(5)  # a hook that blocks must not block observe()
        calls.append((method, endpoint, status, seconds))

    def bad_hook(*args: object) -> None:
        raise RuntimeError("hook bug")

    c = MetricsCollector(slow_threshold=0.5, slow_hooks=[bad_hook, slow_hook])
    with caplog.at_level(logging.WARNING, logger="eventmon"):
        c.observe("GET", "/slow", 200, 1.234)
        c.observe("GET", "/fast", 200, 0.1)
        assert calls == []  # observe() returned while the hook is blocked
        release.set()
        assert c.flush_hooks(5)
    assert calls == [("GET", "/slow", 200, 1.234)]
    assert c.slow_requests() == {("GET", "/slow"): 1}
    assert c.internal_errors() == {"slow_hook": 1}
    assert any("hook bug" in (r.exc_text or "") for r in caplog.records)
    c.shutdown()


def test_default_slow_hook_logs_the_specified_line(caplog: pytest.LogCaptureFixture) -> None:
    c = MetricsCollector()
    with caplog.at_level(logging.WARNING, logger="eventmon"):
        c.observe("GET", "/events/{event_id}", 200, 1.234)
        assert c.flush_hooks(5)
    assert any(
        "Slow request detected: GET /events/{event_id} - 1234ms" in r.getMessage()
        for r in caplog.records
    )
    c.shutdown()


def test_counters_gauges_and_response_time_api(collector: MetricsCollector) -> None:
    collector.increment_counter("db_connection_errors")
    collector.increment_counter("db_connection_errors", amount=2)
    collector.increment_counter("tickets_sold", {"event": "42"}, 3)
    assert collector.counter_value("db_connection_errors") == 3
    assert collector.counter_value("tickets_sold", {"event": "42"}) == 3
    with pytest.raises(ConfigurationError, match="has labels"):
        collector.increment_counter("tickets_sold", {"venue": "x"})
    with pytest.raises(ConfigurationError, match="not a valid metric name"):
        collector.increment_counter("9 lives")
    with pytest.raises(ValueError, match="only goes up"):
        collector.increment_counter("db_connection_errors", amount=-1)
    collector.set_gauge("queue_depth", 7)
    assert collector.gauges()["queue_depth"][()] == 7
    collector.record_response_time("/legacy", 250)
    assert 250 <= collector.percentile("/legacy", 50) <= 252


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="strictly increasing"):
        MetricsCollector(buckets=(0.5, 0.1))
    with pytest.raises(ConfigurationError, match="positive finite"):
        MetricsCollector(buckets=(0.0, 1.0))
    with pytest.raises(ConfigurationError, match="slow_threshold"):
        MetricsCollector(slow_threshold=-1)
    with pytest.raises(ConfigurationError, match="max_label_sets"):
        MetricsCollector(max_label_sets=0)
    with pytest.raises(ConfigurationError, match="quantiles"):
        MetricsCollector(quantiles=(95,))


@pytest.mark.parametrize("limit", [0, -5, 2.5, "64", True, None, 10**9])
def test_nonsense_journal_limit_fails_at_construction(limit: object) -> None:
    with pytest.raises(ConfigurationError, match=r"^journal_limit must be a whole number") as e:
        MetricsCollector(slow_hooks=(), journal_limit=limit)  # type: ignore[arg-type]
    assert "\n" not in str(e.value)


def test_short_lived_threads_lose_nothing_while_a_reader_drains() -> None:
    c = MetricsCollector(slow_hooks=())
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            c.flush()

    r = threading.Thread(target=reader)
    r.start()
    for _batch in range(20):
        workers = [
            threading.Thread(
                target=lambda: [c.observe("GET", "/t", 200, 0.001) for _ in range(500)]
            )
            for _ in range(10)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    stop.set()
    r.join()
    assert c.total_requests() == 100_000
    assert len(c._journals._journals) <= 2  # exited threads' journals were let go


def test_a_forked_worker_starts_with_a_usable_collector() -> None:
    import os
    import warnings

    from servers import wait_child

    c = MetricsCollector(slow_hooks=())
    c.observe("GET", "/pre-fork", 200, 0.001)
    holding, release = threading.Event(), threading.Event()

    def reader() -> None:  # another thread is folding when the server forks
        with c._journals.lock:
            holding.set()
            release.wait(10)

    t = threading.Thread(target=reader)
    t.start()
    holding.wait(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
        if pid == 0:
            ok = False
            try:
                c.observe("GET", "/child", 200, 0.001)
                ok = c.total_requests() == 2 and c.in_progress() == 0
            finally:
                os._exit(0 if ok else 1)
    code = wait_child(pid)
    release.set()
    t.join()
    assert code == 0
    assert c.total_requests() == 1  # the parent is unaffected by the child


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("counter", "http_requests_total"),
        ("counter", "http_requests"),
        ("counter", "http_slow_requests"),
        ("counter", "http_request_duration_seconds"),
        ("counter", "http_request_duration_ms_bucket"),
        ("counter", "process_cpu_seconds_total"),
        ("counter", "eventmon_internal_errors"),
        ("define", "http_request_duration_hdr_seconds_count"),
        ("define", "http_requests_in_progress"),
        ("gauge", "http_requests_in_progress"),
        ("gauge", "http_requests_total"),
        ("gauge", "http_request_duration_seconds_sum"),
        ("gauge", "http_request_duration_hdr_ms"),
        ("gauge", "process_resident_memory_bytes"),
    ],
)
def test_builtin_family_names_are_refused(
    collector: MetricsCollector, kind: str, name: str
) -> None:
    define = {
        "counter": lambda: collector.increment_counter(name),
        "define": lambda: collector.define_counter(name, "help"),
        "gauge": lambda: collector.set_gauge(name, 1.0),
    }[kind]
    with pytest.raises(ConfigurationError, match=r"is reserved: eventmon exports '\w+' itself"):
        define()
    assert collector.counters() == {}
    assert collector.gauges() == {}


def test_a_counter_and_a_gauge_cannot_share_a_family_name(collector: MetricsCollector) -> None:
    collector.increment_counter("jobs")
    with pytest.raises(ConfigurationError, match="clashes with the counter 'jobs'"):
        collector.set_gauge("jobs_total", 1)
    collector.set_gauge("queue", 3)
    with pytest.raises(ConfigurationError, match="clashes with the gauge 'queue'"):
        collector.increment_counter("queue_total")
    collector.increment_counter("jobs_total")  # the same counter, by its sample name
    assert collector.counter_value("jobs") == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), -1])
def test_counters_and_observations_refuse_non_finite_or_negative_values(
    collector: MetricsCollector, bad: float
) -> None:
    collector.increment_counter("jobs")
    with pytest.raises(ValueError, match="amount must be >= 0 and finite"):
        collector.increment_counter("jobs", amount=bad)
    with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
        collector.observe("GET", "/x", 200, bad)
    with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
        collector.record_response_time("/x", bad)
    assert collector.counter_value("jobs") == 1
    assert collector.series() == []
    assert collector.slow_requests() == {}


def test_gauges_keep_nan_and_infinities(collector: MetricsCollector) -> None:
    collector.set_gauge("ratio", float("nan"))
    collector.set_gauge("headroom", float("-inf"), {"pool": "db"})
    assert math.isnan(collector.gauges()["ratio"][()])
    assert collector.gauges()["headroom"][("db",)] == -math.inf
    with pytest.raises(TypeError, match="must be a number"):
        collector.set_gauge("ratio", "nan")  # type: ignore[arg-type]


def _growth(c: MetricsCollector, write: Callable[[int], object], n: int) -> int:
    """Bytes ``c`` still holds after ``write(i)`` for i in 0..n-1 (after a warm-up)."""
    for i in range(200):
        write(-1 - i)
    c.flush()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        write(i)
    c.flush()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before


def test_slow_requests_with_100k_made_up_methods_are_one_series() -> None:
    c = MetricsCollector(slow_hooks=())
    grew = _growth(c, lambda i: c.observe(f"M{i}", "/e", 404, 1.2), 100_000)
    assert c.slow_requests() == {("other", "/e"): 100_200}
    assert grew < 500_000, f"grew by {grew} bytes"
    lines = [ln for ln in render(c).decode().splitlines() if ln.startswith("http_slow")]
    assert lines == ['http_slow_requests_total{method="other",endpoint="/e"} 100200']


def test_one_label_policy_caps_every_metric_at_write_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = MetricsCollector(slow_hooks=(), max_label_sets=10)
    n = 5_000
    with caplog.at_level(logging.WARNING, logger="eventmon"):
        grew = _growth(
            c,
            lambda i: (
                c.observe("GET", f"/e/{i}", 200, 1.5),  # request series and slow requests
                c.increment_counter("jobs", {"job": str(i)}),
                c.set_gauge("depth", i, {"queue": str(i)}),
                c.record_internal_error(f"place{i}"),
            ),
            n,
        )
    assert grew < 200_000, f"grew by {grew} bytes"
    total = n + 200
    overflow2 = (OVERFLOW, OVERFLOW)
    kept = {
        "series": (len(c.series()), sum(s.count for s in c.series())),
        "slow": (len(c.slow_requests()), sum(c.slow_requests().values())),
        "counter": (len(c.counters()["jobs"]), c.counter_value("jobs")),
        "gauge": (len(c.gauges()["depth"]), c.gauges()["depth"][(OVERFLOW,)]),
        "errors": (len(c.internal_errors()), sum(c.internal_errors().values())),
    }
    assert kept == {
        "series": (11, total),
        "slow": (11, total),
        "counter": (11, total),
        "gauge": (11, n - 1),
        "errors": (11, total),
    }
    assert c.slow_requests()[overflow2] == total - 10
    assert c.counter_value("jobs", {"job": OVERFLOW}) == total - 10
    # One warning per metric, naming it.
    warned = sorted(
        r.args[0]  # type: ignore[index]
        for r in caplog.records
        if "reached its cap" in r.getMessage()
    )
    assert warned == sorted(
        [
            "depth",
            "eventmon_internal_errors_total",
            "http_requests_total",
            "http_slow_requests_total",
            "jobs",
        ]
    )
