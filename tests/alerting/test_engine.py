from __future__ import annotations

import asyncio
import threading
import time

import pytest

from eventmon import MetricsCollector, RuleError
from eventmon.alerting import AlertEngine, AlertRule, count_db_connection_error, default_rules
from eventmon.alerting.notifiers import DashboardFeed


@pytest.fixture
def col(clock) -> MetricsCollector:
    c = MetricsCollector(slow_hooks=(), clock=clock)
    yield c
    c.shutdown()


def engine_for(col, clock, *rules, **kw) -> tuple[AlertEngine, DashboardFeed]:
    feed = DashboardFeed()
    kw.setdefault("wall_clock", lambda: clock.now + 1_700_000_000)
    return AlertEngine(col, rules, notifiers=[feed], clock=clock, **kw), feed


def state(engine: AlertEngine, name: str) -> str:
    return next(s.state for s in engine.alerts() if s.name == name)


def test_for_goes_pending_then_fires_once(col, clock) -> None:
    col.set_gauge("queue_depth", 50)
    eng, _ = engine_for(col, clock, AlertRule("deep_queue", "queue_depth > 10", for_="2m"))
    assert eng.evaluate() == []
    assert state(eng, "deep_queue") == "pending"
    clock.advance(119)
    assert eng.evaluate() == []
    assert state(eng, "deep_queue") == "pending"
    clock.advance(1)
    (n,) = eng.evaluate()
    assert (n.name, n.status, n.value, n.repeat) == ("deep_queue", "firing", 50.0, False)
    assert n.starts_at == pytest.approx(1000 + 1_700_000_000)  # when it became pending
    status = next(iter(eng.alerts()))
    assert status.state == "firing"
    assert status.fired_at == 1120 + 1_700_000_000
    clock.advance(30)
    assert eng.evaluate() == []  # sent once, not every evaluation


def test_repeat_interval_resends_while_firing(col, clock) -> None:
    col.set_gauge("queue_depth", 50)
    eng, _ = engine_for(col, clock, AlertRule("q", "queue_depth > 10"), repeat_interval=300)
    assert [n.status for n in eng.evaluate()] == ["firing"]  # for_ = 0: at once
    for _ in range(9):
        clock.advance(30)
        assert eng.evaluate() == []
    clock.advance(30)
    (n,) = eng.evaluate()
    assert n.repeat
    assert n.status == "firing"
    clock.advance(299)
    assert eng.evaluate() == []
    clock.advance(1)
    assert len(eng.evaluate()) == 1


def test_resolved_notice_when_it_clears(col, clock) -> None:
    col.set_gauge("queue_depth", 50)
    eng, feed = engine_for(col, clock, AlertRule("q", "queue_depth > 10", for_="1m"))
    eng.evaluate()
    clock.advance(60)
    eng.evaluate()
    col.set_gauge("queue_depth", 3)
    clock.advance(15)
    (n,) = eng.evaluate()
    assert n.status == "resolved"
    assert n.ends_at == 1075 + 1_700_000_000
    assert state(eng, "q") == "resolved"
    clock.advance(15)
    assert eng.evaluate() == []
    eng.dispatcher.flush(5)
    assert [e["status"] for e in feed.events()] == ["firing", "resolved"]
    # Turning true again starts a new pending period.
    col.set_gauge("queue_depth", 99)
    eng.evaluate()
    assert state(eng, "q") == "pending"
    eng.stop()


def test_pending_that_clears_sends_nothing(col, clock) -> None:
    col.set_gauge("queue_depth", 50)
    eng, _ = engine_for(col, clock, AlertRule("q", "queue_depth > 10", for_="5m"))
    eng.evaluate()
    clock.advance(200)
    col.set_gauge("queue_depth", 1)
    assert eng.evaluate() == []
    assert state(eng, "q") == "inactive"
    col.set_gauge("queue_depth", 50)
    clock.advance(200)
    assert eng.evaluate() == []  # the 5m starts again
    clock.advance(299)
    assert eng.evaluate() == []
    clock.advance(1)
    assert [n.status for n in eng.evaluate()] == ["firing"]


def test_keep_firing_for(col, clock) -> None:
    col.set_gauge("queue_depth", 50)
    eng, _ = engine_for(col, clock, AlertRule("q", "queue_depth > 10", keep_firing_for="1m"))
    assert len(eng.evaluate()) == 1
    col.set_gauge("queue_depth", 1)
    clock.advance(30)
    assert eng.evaluate() == []
    assert state(eng, "q") == "firing"
    col.set_gauge("queue_depth", 50)  # flaps back: the keep period restarts
    clock.advance(10)
    assert eng.evaluate() == []
    col.set_gauge("queue_depth", 1)
    clock.advance(10)
    assert eng.evaluate() == []
    clock.advance(59)
    assert eng.evaluate() == []
    assert state(eng, "q") == "firing"
    clock.advance(1)
    assert [n.status for n in eng.evaluate()] == ["resolved"]


def test_high_error_rate_from_real_observations(col, clock) -> None:
    rules = [r for r in default_rules() if r.name == "high_error_rate"]
    eng, _ = engine_for(col, clock, *rules)
    fired_at = None
    for second in range(0, 200, 10):
        for _ in range(5):
            col.observe("GET", "/pay", 503, 0.01)
        for _ in range(5):
            col.observe("GET", "/pay", 200, 0.01)
        notices = eng.evaluate()
        if notices:
            fired_at = second
            assert notices[0].value == pytest.approx(0.5)
            break
        clock.advance(10)
    assert fired_at == 120
    # Recovery: only successes; once the 60 s window has no errors it resolves.
    resolved_at = None
    for second in range(10, 200, 10):
        clock.advance(10)
        for _ in range(10):
            col.observe("GET", "/pay", 200, 0.01)
        if [n.status for n in eng.evaluate()] == ["resolved"]:
            resolved_at = second
            break
    assert resolved_at is not None
    assert 50 <= resolved_at <= 70


def test_db_connection_errors_fire_while_they_continue_then_clear(col, clock) -> None:
    rules = [r for r in default_rules() if r.name == "database_connection_failure"]
    eng, _ = engine_for(col, clock, *rules)
    assert col.counter_value("db_connection_errors") == 0  # exported from the start
    assert eng.evaluate() == []
    statuses = []
    for _ in range(6):  # an error every 15 s for 90 s
        count_db_connection_error(col)
        statuses += [n.status for n in eng.evaluate()]
        clock.advance(15)
    assert statuses == ["firing"]
    for _ in range(6):
        statuses += [n.status for n in eng.evaluate()]
        clock.advance(15)
    assert statuses == ["firing", "resolved"]
    assert col.counter_value("db_connection_errors") == 6


def test_one_db_connection_error_fires_then_resolves_a_window_later(col, clock) -> None:
    """An isolated error fires (the 1m hold equal to the 1m window never let it)."""
    rules = [r for r in default_rules() if r.name == "database_connection_failure"]
    eng, _ = engine_for(col, clock, *rules)
    timeline = []
    for second in range(0, 181, 15):  # evaluated every 15 s, the engine's default interval
        clock.now = 1000 + second
        if second == 15:
            clock.advance(-8)
            count_db_connection_error(col)  # at 7 s
            clock.advance(8)
        timeline += [(second, n.status) for n in eng.evaluate()]
    # Seen at the first evaluation after the error; cleared once it left the 60 s window.
    assert timeline == [(15, "firing"), (75, "resolved")]


def test_an_ordinary_app_raises_no_alert_from_the_default_rules(col, clock) -> None:
    """20 healthy requests/s for 10 minutes: the capacity objectives stay out of the way."""
    eng, _ = engine_for(col, clock, *default_rules())
    notices = []
    for _ in range(40):
        for _ in range(300):
            col.observe("GET", "/events/{id}", 200, 0.04)
        notices += eng.evaluate()
        clock.advance(15)
    # CPU and memory are this test process's real figures, which no request here drives.
    assert [n.name for n in notices if n.name not in ("high_cpu_usage", "high_memory_usage")] == []


def test_counter_total_and_per_endpoint_percentile(col, clock) -> None:
    eng, _ = engine_for(
        col,
        clock,
        AlertRule("slow_search", 'p95_response_time{endpoint="/search"} > 300ms'),
        AlertRule("many_orders", "orders_total >= 3"),
        declare=["orders"],
    )
    for _ in range(20):
        col.observe("GET", "/search", 200, 0.5)
        col.observe("GET", "/home", 200, 0.001)
    col.increment_counter("orders", amount=3)
    assert sorted(n.name for n in eng.evaluate()) == ["many_orders", "slow_search"]
    # Two windows later, /search is fast: its windowed p95 clears though its
    # lifetime p95 is still 500 ms.
    for _ in range(8):
        clock.advance(15)
        for _ in range(20):
            col.observe("GET", "/search", 200, 0.01)
        eng.evaluate()
    assert state(eng, "slow_search") == "resolved"
    assert col.percentile("/search", 95) >= 300
    assert state(eng, "many_orders") == "firing"


def test_unknown_metrics_fail_at_start_up(col, clock) -> None:
    with pytest.raises(RuleError, match="rule 'x': unknown metric 'orders'"):
        AlertEngine(col, [AlertRule("x", "orders > 1")], clock=clock)
    AlertEngine(col, [AlertRule("x", "orders > 1")], clock=clock, declare=["orders"])
    with pytest.raises(RuleError, match="repeated: a"):
        AlertEngine(col, [AlertRule("a", "error_rate > 1"), AlertRule("a", "cpu_usage > 1")])


def test_scaling_event_feeds_scale_out_time_and_notifiers(col, clock) -> None:
    rules = [r for r in default_rules(scaling=True) if r.name == "slow_scale_out"]
    eng, feed = engine_for(col, clock, *rules)
    eng.notify_scaling_event({"from": 2, "to": 4, "reason": "cpu 85%", "duration": 42})
    assert eng.evaluate() == []
    eng.notify_scaling_event({"from": 4, "to": 6, "reason": "cpu 90%", "duration": 400})
    (n,) = eng.evaluate()
    assert n.name == "slow_scale_out"
    assert n.value == 400
    eng.dispatcher.flush(5)
    kinds = [(e["kind"], e.get("to")) for e in feed.events()]
    assert kinds == [("scaling", 4), ("scaling", 6), ("alert", None)]
    eng.stop()


def test_background_thread_start_stop_idempotent(collector) -> None:
    collector.set_gauge("queue_depth", 50)
    feed = DashboardFeed()
    eng = AlertEngine(collector, [AlertRule("q", "queue_depth > 10")], notifiers=[feed],
                      interval=0.02)  # fmt: skip
    before = set(threading.enumerate())
    eng.start()
    eng.start()
    assert eng.running
    deadline = time.monotonic() + 5
    while not feed.events() and time.monotonic() < deadline:
        time.sleep(0.01)
    eng.stop()
    eng.stop()
    assert not eng.running
    assert [e["name"] for e in feed.events()] == ["q"]
    n = eng.evaluations
    # Every thread the engine started has ended: nothing can evaluate any more.
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert eng.evaluations == n  # really stopped
    eng.start()  # restartable
    deadline = time.monotonic() + 5
    while eng.evaluations == n and time.monotonic() < deadline:
        time.sleep(0.01)
    eng.stop()
    assert eng.evaluations > n


def test_a_failing_evaluation_is_counted_and_the_loop_goes_on(collector, monkeypatch) -> None:
    eng = AlertEngine(collector, [AlertRule("e", "error_rate > 1")], interval=0.02)

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(collector, "get_realtime_metrics", broken)
    eng.start()
    deadline = time.monotonic() + 5
    while collector.internal_errors().get("alert_engine", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    eng.stop()
    assert collector.internal_errors()["alert_engine"] >= 2


def test_asyncio_lifespan_runs_and_stops(collector) -> None:
    collector.set_gauge("queue_depth", 50)
    feed = DashboardFeed()
    eng = AlertEngine(collector, [AlertRule("q", "queue_depth > 10")], notifiers=[feed],
                      interval=0.02)  # fmt: skip

    async def main() -> int:
        async with eng.lifespan(None):
            for _ in range(250):
                if feed.events():
                    break
                await asyncio.sleep(0.02)
        n = eng.evaluations
        await asyncio.sleep(0.1)
        return eng.evaluations - n

    assert asyncio.run(main()) == 0
    assert [e["status"] for e in feed.events()] == ["firing"]


def test_the_autoscalers_own_event_type_is_accepted(col, clock) -> None:
    autoscaler = pytest.importorskip("eventmon.scaling.autoscaler")
    rules = [r for r in default_rules(scaling=True) if r.name == "slow_scale_out"]
    eng, feed = engine_for(col, clock, *rules)
    event = autoscaler.ScaleEvent(2, 5, "cpu 91%", duration=420.0, at=1_700_000_000.0,
                                  backend="gunicorn")  # fmt: skip
    eng.notify_scaling_event(event)
    failed = autoscaler.ScaleEvent(5, 6, "cpu 95%", error="quota exceeded", backend="k8s")
    eng.notify_scaling_event(failed)
    (n,) = eng.evaluate()
    assert (n.name, n.value) == ("slow_scale_out", 420.0)
    eng.dispatcher.flush(5)
    first, second, _ = feed.events()
    assert (first["from"], first["to"], first["duration"]) == (2, 5, 420.0)
    assert first["labels"]["backend"] == "gunicorn"
    assert first["at"] == 1_700_000_000.0
    assert second["error"] == "quota exceeded"
    assert "failed" in second["summary"]
    eng.stop()


def test_declared_counters_keep_the_apps_label_names(col, clock) -> None:
    eng, _ = engine_for(col, clock, AlertRule("o", "orders > 2"), declare=["orders"])
    col.increment_counter("orders", {"shop": "eu"}, amount=2)
    col.increment_counter("orders", {"shop": "us"}, amount=1)
    (n,) = eng.evaluate()
    assert n.value == 3.0
