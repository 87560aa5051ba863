from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping

import pytest

from eventmon import ConfigurationError
from eventmon.exporters.prometheus import render
from eventmon.scaling import AutoScalingManager, ScaleEvent, StepPolicy
from eventmon.scaling.sources import MetricsUnavailable


class MemoryBackend:
    """An in-process backend: the count is a number; scale-outs take `delay` clock seconds."""

    name = "memory"

    def __init__(self, n: int, clock=None, delay: float = 0.0, served: bool = True) -> None:
        self.n = n
        self.calls: list[int] = []
        self.clock = clock
        self.delay = delay
        self.served = served
        self.fail_current = False
        self.fail_scale = False

    def current(self) -> int:
        if self.fail_current:
            raise OSError("master gone")
        return self.n

    def scale_to(self, n: int) -> bool:
        if self.fail_scale:
            raise OSError("signal failed")
        self.calls.append(n)
        if n > self.n and self.clock is not None:
            self.clock.advance(self.delay)
        self.n = n
        return self.served


class Readings:
    """A metrics source returning a scripted sequence (an Exception instance raises)."""

    def __init__(self, *values) -> None:
        self.values = list(values)

    def read(self) -> Mapping[str, float]:
        v = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        if isinstance(v, Exception):
            raise v
        return {"cpu_percent": v}


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[ScaleEvent] = []
        self.fail = fail

    def notify_scaling_event(self, event) -> None:
        if self.fail:
            raise RuntimeError("slack is down")
        self.events.append(event)


def manager(backend, source, clock, **kw) -> AutoScalingManager:
    kw.setdefault("policy", StepPolicy(scale_down_stabilization=0, clock=clock))
    return AutoScalingManager(backend, source, clock=clock, wall_clock=clock, **kw)


def test_defaults():
    m = AutoScalingManager(MemoryBackend(2), Readings(50.0))
    assert (m.min_instances, m.max_instances) == (2, 20)
    assert isinstance(m.policy, StepPolicy)
    assert m.scale_out_objective == 120.0


def test_scale_out_event_is_recorded_exported_and_notified(clock, collector):
    backend = MemoryBackend(2, clock, delay=7.5)
    sink = Sink()
    m = manager(backend, Readings(85.0), clock, collector=collector, notifiers=[sink])
    event = m.evaluate()
    assert event is not None
    assert (event.from_instances, event.to_instances, event.direction) == (2, 3, "out")
    assert event.duration == pytest.approx(7.5)
    assert event.metrics == {"cpu_percent": 85.0}
    assert "cpu_percent 85.0 > 70" in event.reason
    assert event.served
    assert not event.slow
    assert list(m.history) == [event]
    assert sink.events == [event]
    text = render(collector).decode()
    assert "eventmon_instances 3" in text
    assert 'eventmon_scaling_events_total{direction="out"} 1' in text
    assert "eventmon_last_scale_out_seconds 7.5" in text


def test_no_event_when_the_count_holds(clock):
    backend = MemoryBackend(4)
    m = manager(backend, Readings(50.0), clock)
    assert m.evaluate() is None
    assert backend.calls == []
    assert not m.history


def test_scale_in_event(clock, collector):
    backend = MemoryBackend(5)
    m = manager(backend, Readings(10.0), clock, collector=collector)
    event = m.evaluate()
    assert event is not None
    assert (event.from_instances, event.to_instances, event.direction) == (5, 4, "in")
    assert not event.slow
    assert 'eventmon_scaling_events_total{direction="in"} 1' in render(collector).decode()


def test_slow_scale_out_is_flagged_and_alerted(clock, collector):
    backend = MemoryBackend(2, clock, delay=150.0)
    slow: list[ScaleEvent] = []
    m = manager(backend, Readings(90.0), clock, collector=collector, on_slow_scale_out=slow.append)
    event = m.evaluate()
    assert event is not None
    assert event.slow
    assert slow == [event]
    assert "eventmon_slow_scale_outs_total 1" in render(collector).decode()


def test_unconfirmed_scale_out_is_slow(clock):
    backend = MemoryBackend(2, clock, delay=1.0, served=False)
    slow: list[ScaleEvent] = []
    m = manager(backend, Readings(90.0), clock, on_slow_scale_out=slow.append)
    event = m.evaluate()
    assert event is not None
    assert not event.served
    assert event.slow
    assert slow == [event]


def test_objective_is_configurable(clock):
    backend = MemoryBackend(2, clock, delay=20.0)
    m = manager(backend, Readings(90.0), clock, scale_out_objective=10.0)
    event = m.evaluate()
    assert event is not None
    assert event.slow
    assert event.objective == 10.0


@pytest.mark.parametrize(
    "reading", [MetricsUnavailable("no workers"), OSError("refused"), math.nan, -5.0]
)
def test_bad_or_failing_source_holds_the_count(clock, collector, caplog, reading):
    backend = MemoryBackend(6)
    m = manager(backend, Readings(reading), clock, collector=collector)
    with caplog.at_level(logging.WARNING, logger="eventmon.scaling"):
        assert m.evaluate() is None
    assert backend.calls == []
    assert caplog.records, "the hold must be logged"


def test_failing_backend_never_raises(clock, collector):
    backend = MemoryBackend(3)
    backend.fail_current = True
    m = manager(backend, Readings(90.0), clock, collector=collector)
    assert m.evaluate() is None
    backend.fail_current = False
    backend.fail_scale = True
    event = m.evaluate()
    assert event is not None
    assert event.error is not None
    assert "signal failed" in event.error
    assert not event.served
    text = render(collector).decode()
    assert 'eventmon_scaling_errors_total{stage="backend"} 2' in text


def test_failing_notifier_does_not_stop_the_others(clock):
    good = Sink()
    m = manager(MemoryBackend(2), Readings(90.0), clock, notifiers=[Sink(fail=True), good])
    assert m.evaluate() is not None
    assert len(good.events) == 1


def test_floor_raises_the_count(clock):
    backend = MemoryBackend(2)
    floors: list[float] = []

    def floor(now: float) -> int | None:
        floors.append(now)
        return 6

    m = manager(backend, Readings(50.0), clock, floor_provider=floor)
    event = m.evaluate()
    assert event is not None
    assert event.to_instances == 6
    assert event.floor == 6
    assert "predictive floor 6" in event.reason
    assert floors == [clock.now]


def test_reactive_wins_over_a_lower_floor(clock):
    m = manager(MemoryBackend(5), Readings(90.0), clock, floor_provider=lambda now: 3)
    event = m.evaluate()
    assert event is not None
    assert event.to_instances == 6


@pytest.mark.parametrize("floor", [None, math.nan, "many", ZeroDivisionError])
def test_useless_or_failing_floor_is_ignored(clock, floor):
    def provider(now: float):
        if floor is ZeroDivisionError:
            raise ZeroDivisionError
        return floor

    m = manager(MemoryBackend(4), Readings(90.0), clock, floor_provider=provider)
    event = m.evaluate()
    assert event is not None
    assert event.to_instances == 5


def test_never_outside_the_bounds(clock):
    m = manager(
        MemoryBackend(3),
        Readings(90.0),
        clock,
        min_instances=2,
        max_instances=4,
        floor_provider=lambda now: 50,
    )
    event = m.evaluate()
    assert event is not None
    assert event.to_instances == 4
    assert "clamped" in event.reason
    m2 = manager(MemoryBackend(1), Readings(50.0), clock)
    event2 = m2.evaluate()
    assert event2 is not None
    assert event2.to_instances == 2


def test_proportional_policy_by_one_argument(clock):
    m = AutoScalingManager(
        MemoryBackend(4), Readings(140.0), policy="proportional", clock=clock, wall_clock=clock
    )
    event = m.evaluate()
    assert event is not None
    assert event.to_instances == 8


def test_history_is_bounded(clock):
    backend = MemoryBackend(2)
    m = manager(backend, Readings(90.0), clock, history_size=3, max_instances=20)
    for _ in range(10):
        m.evaluate()
        clock.advance(15)
    assert len(m.history) == 3
    assert [e.to_instances for e in m.history] == [10, 11, 12]


def test_event_goes_through_the_alerting_dispatcher(clock):
    from eventmon.alerting.notifiers.base import ScalingEvent
    from eventmon.alerting.notifiers.dispatcher import NotificationDispatcher

    received: list[object] = []
    done = threading.Event()

    class Channel:
        name = "test"

        def send(self, notification, timeout):
            received.append(notification)
            done.set()

    dispatcher = NotificationDispatcher([Channel()])
    try:
        m = manager(
            MemoryBackend(2, clock, delay=3.0), Readings(95.0), clock, notifiers=[dispatcher]
        )
        m.evaluate()
        assert done.wait(5)
    finally:
        dispatcher.shutdown()
    (n,) = received
    assert isinstance(n, ScalingEvent)
    assert (n.from_instances, n.to_instances, n.duration) == (2, 3, 3.0)
    assert "cpu_percent 95.0" in n.reason
    assert n.labels["backend"] == "memory"


def test_to_dict(clock):
    m = manager(MemoryBackend(2, clock, delay=2.0), Readings(90.0), clock)
    event = m.evaluate()
    assert event is not None
    d = event.to_dict()
    assert d["from"] == 2
    assert d["to"] == 3
    assert d["direction"] == "out"
    assert d["duration"] == 2.0
    assert d["slow"] is False
    assert d["metrics"] == {"cpu_percent": 90.0}


def test_background_thread_start_stop_idempotent():
    backend = MemoryBackend(2)
    m = AutoScalingManager(
        backend,
        Readings(90.0),
        interval=0.02,
        max_instances=5,
        policy=StepPolicy(scale_down_stabilization=0, max_instances=5),
    )
    before = set(threading.enumerate())
    m.start()
    m.start()
    assert m.running
    deadline = time.monotonic() + 5
    while backend.n < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    m.stop()
    m.stop()
    assert not m.running
    assert backend.n == 5
    calls = len(backend.calls)
    # Its thread has ended: nothing can call the backend any more.
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert len(backend.calls) == calls  # stopped means stopped
    m.start()  # restartable
    assert m.running
    m.stop()


def test_loop_survives_exceptions_everywhere(collector):
    class Exploding:
        name = "boom"

        def current(self) -> int:
            raise RuntimeError("boom")

        def scale_to(self, n: int) -> bool:
            raise RuntimeError("boom")

    m = AutoScalingManager(Exploding(), Readings(90.0), interval=0.01, collector=collector)
    with m:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the loop's first failed scaling, counted
            if 'stage="backend"' in render(collector).decode():
                break
            time.sleep(0.01)
        assert m.running
    text = render(collector).decode()
    assert 'eventmon_scaling_errors_total{stage="backend"}' in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": math.inf},
        {"min_instances": 0},
        {"min_instances": 5, "max_instances": 3},
        {"history_size": 0},
        {"scale_out_objective": -1},
        {"floor_provider": 3},
        {"notifiers": [object()]},
        {"policy": "bogus"},
    ],
)
def test_configuration_mistakes(kwargs):
    with pytest.raises(ConfigurationError):
        AutoScalingManager(MemoryBackend(2), Readings(50.0), **kwargs)


def test_backend_and_source_are_checked():
    with pytest.raises(ConfigurationError, match="scale_to"):
        AutoScalingManager(object(), Readings(50.0))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="read"):
        AutoScalingManager(MemoryBackend(2), object())  # type: ignore[arg-type]
