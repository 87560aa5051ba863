from __future__ import annotations

import math

import pytest

from eventmon import ConfigurationError, MetricsCollector
from eventmon.scaling.history import HistoryStore
from eventmon.scaling.predictive import (
    EventNotFoundError,
    EventSchedule,
    Forecaster,
    InMemoryEventSchedule,
    PredictiveScaler,
    ScheduledEvent,
    learn_capacity,
    predict_traffic_pattern,
    recommend_instances,
)

HOUR = 3600.0
DAY = 86400.0
MONDAY = 1_700_438_400.0  # 2023-11-20 00:00 UTC, a Monday


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def daily(h: float) -> float:
    """A known daily cycle: peak 1600 at 06:00 UTC, trough 400 at 18:00."""
    return 1000.0 + 600.0 * math.sin(2 * math.pi * ((h / HOUR) % 24) / 24)


def series(days: int, shape=daily, start: float = MONDAY) -> list[tuple[float, float]]:
    return [(start + i * HOUR, shape(start + i * HOUR)) for i in range(days * 24)]


# ------------------------------------------------------------------ event floor


def make_scaler(now: float, **kw) -> tuple[PredictiveScaler, Clock, ScheduledEvent]:
    clock = Clock(now)
    event = ScheduledEvent("concert", start=now + 2 * HOUR, end=now + 5 * HOUR, registered=12_345)
    schedule = InMemoryEventSchedule([event])
    return PredictiveScaler(schedule, clock=clock, **kw), clock, event


def test_event_two_hours_ahead_raises_floor_at_lead_time_and_releases_after() -> None:
    scaler, clock, event = make_scaler(MONDAY)
    assert isinstance(scaler.schedule, EventSchedule)
    assert scaler.pre_scale_for_event("concert") == 13
    assert scaler.floor() is None  # two hours ahead: reactive only
    clock.now = event.start - 900 - 1
    assert scaler.floor() is None  # not earlier than start minus lead time
    clock.now = event.start - 900
    assert scaler.floor() == 13
    clock.now = event.start + HOUR
    assert scaler.floor() == 13
    clock.now = event.end - 1
    assert scaler.floor() == 13
    clock.now = event.end
    assert scaler.floor() is None  # released after the event


def test_lead_time_and_divisor_are_configurable() -> None:
    scaler, clock, event = make_scaler(MONDAY, lead_time=3600, divisor=500, max_instances=50)
    assert scaler.pre_scale_for_event("concert") == 25
    clock.now = event.start - 3601
    assert scaler.floor() is None
    clock.now = event.start - 3600
    assert scaler.floor() == 25


def test_floor_never_above_max_unless_configured() -> None:
    for allow, expected in ((False, 20), (True, 50)):
        clock = Clock(MONDAY)
        schedule = InMemoryEventSchedule([ScheduledEvent("expo", MONDAY, MONDAY + HOUR, 50_000)])
        scaler = PredictiveScaler(schedule, clock=clock, allow_above_max=allow)
        assert scaler.pre_scale_for_event("expo") == expected
        assert scaler.floor() == expected


def test_registrations_updated_after_planning_are_used() -> None:
    scaler, clock, event = make_scaler(MONDAY)
    scaler.pre_scale_for_event("concert")
    scaler.schedule.add(  # type: ignore[attr-defined]
        ScheduledEvent("concert", event.start, event.end, registered=17_001)
    )
    clock.now = event.start
    assert scaler.floor() == 18


def test_overlapping_events_take_the_larger_floor_and_cancel_works() -> None:
    clock = Clock(MONDAY)
    schedule = InMemoryEventSchedule(
        [
            ScheduledEvent("a", MONDAY + HOUR, MONDAY + 3 * HOUR, 4_200),
            ScheduledEvent("b", MONDAY + 2 * HOUR, MONDAY + 4 * HOUR, 9_999),
        ]
    )
    scaler = PredictiveScaler(schedule, clock=clock)
    scaler.pre_scale_for_event("a")
    scaler.pre_scale_for_event("b")
    assert scaler.floor(MONDAY + HOUR) == 5
    assert scaler.floor(MONDAY + 2.5 * HOUR) == 10
    assert scaler.floor(MONDAY + 3.5 * HOUR) == 10
    scaler.cancel_pre_scale("b")
    assert scaler.floor(MONDAY + 2.5 * HOUR) == 5


def test_watch_schedule_needs_no_explicit_call() -> None:
    scaler, clock, event = make_scaler(MONDAY, watch_schedule=True)
    clock.now = event.start - 60
    assert scaler.floor() == 13


def test_unknown_event_and_bad_settings_raise() -> None:
    scaler, _, _ = make_scaler(MONDAY)
    with pytest.raises(EventNotFoundError, match="no event 'nope'"):
        scaler.pre_scale_for_event("nope")
    with pytest.raises(ConfigurationError, match="divisor"):
        PredictiveScaler(InMemoryEventSchedule(), divisor=0)
    with pytest.raises(ConfigurationError, match="min_instances"):
        PredictiveScaler(InMemoryEventSchedule(), min_instances=30, max_instances=20)
    with pytest.raises(ConfigurationError, match="end after"):
        InMemoryEventSchedule([ScheduledEvent("x", MONDAY, MONDAY, 1)])


# ------------------------------------------------------------------- forecaster


def test_forecaster_recovers_a_known_daily_cycle() -> None:
    f = Forecaster().fit(series(14))
    assert f.ready
    last = f.last_hour
    assert last is not None
    for h in range(1, 25):
        t = last + h * HOUR
        predicted = f.forecast(t)
        assert predicted == pytest.approx(daily(t), rel=0.02), h
    profile = f.daily_profile()
    assert profile.index(max(p for p in profile if p is not None)) == 6
    assert profile.index(min(p for p in profile if p is not None)) == 18


def test_forecaster_learns_the_day_of_week() -> None:
    def weekly(t: float) -> float:
        weekend = ((t - MONDAY) // DAY) % 7 >= 5
        return daily(t) * (0.4 if weekend else 1.0)

    f = Forecaster().fit(series(21, weekly))
    saturday_noon = MONDAY + 21 * DAY + 5 * DAY + 12 * HOUR
    friday_noon = MONDAY + 21 * DAY + 4 * DAY + 12 * HOUR
    assert f.forecast(saturday_noon) == pytest.approx(weekly(saturday_noon), rel=0.1)
    assert f.forecast(friday_noon) == pytest.approx(weekly(friday_noon), rel=0.1)


def test_level_follows_recent_traffic() -> None:
    def fit_doubled(days: int) -> tuple[Forecaster, float]:
        doubled = [
            (MONDAY + 14 * DAY + i * HOUR, 2 * daily(MONDAY + i * HOUR)) for i in range(24 * days)
        ]
        return Forecaster().fit(series(14) + doubled), doubled[-1][0]

    f, last = fit_doubled(3)
    assert f.forecast(last + HOUR) / daily(last + HOUR) > 1.8  # the level moved within hours
    assert f.forecast(last + 24 * HOUR) / daily(last + 24 * HOUR) > 1.3
    f, last = fit_doubled(14)  # two weeks later the profile itself has moved
    for h in (1, 24, 48):
        assert f.forecast(last + h * HOUR) / daily(last + h * HOUR) == pytest.approx(2, rel=0.1)


def test_one_spike_does_not_bend_next_weeks_forecast() -> None:
    calm = Forecaster().fit(series(14))
    spiky_series = series(14)
    t_spike, v = spiky_series[-30]
    spiky_series[-30] = (t_spike, 50 * v)
    spiky = Forecaster().fit(spiky_series)
    unclipped = Forecaster(clip=100).fit(spiky_series)
    t = t_spike + 7 * DAY
    assert calm.forecast(t) == pytest.approx(daily(t), rel=0.02)
    assert spiky.forecast(t) / calm.forecast(t) < 1.25  # the clip bounds a spike's weight
    assert unclipped.forecast(t) / calm.forecast(t) > 3


def test_forecaster_refuses_hours_out_of_order() -> None:
    f = Forecaster()
    f.update(MONDAY + HOUR, 1)
    with pytest.raises(ValueError, match="increasing order"):
        f.update(MONDAY, 1)
    with pytest.raises(ConfigurationError, match="week_alpha"):
        Forecaster(week_alpha=0)


# ------------------------------------------------------------------- prediction


def test_empty_history_says_so_and_falls_back_to_reactive() -> None:
    p = predict_traffic_pattern([], now=MONDAY, capacity_per_instance=100)
    assert p.reactive_only
    assert p.next_hour is None
    assert p.recommended_instances is None
    assert p.hourly == ()
    assert "no request history" in p.reason
    assert "reactive" in p.reason


def test_short_history_says_so_and_falls_back_to_reactive() -> None:
    p = predict_traffic_pattern(series(1)[:10], now=MONDAY + 10 * HOUR)
    assert p.reactive_only
    assert p.history_hours == 10
    assert "10 of 24 hours" in p.reason


def test_prediction_gives_next_hour_24_hours_and_instances() -> None:
    now = MONDAY + 14 * DAY + 30 * 60  # half past midnight: the 00:00 hour is not complete
    p = predict_traffic_pattern(
        [*series(14), (MONDAY + 14 * DAY, 5.0)],
        now=now,
        capacity_per_instance=100,
        max_instances=20,
    )
    assert not p.reactive_only
    assert p.history_hours == 14 * 24
    assert len(p.hourly) == 24
    assert [h.timestamp for h in p.hourly] == [MONDAY + 14 * DAY + i * HOUR for i in range(24)]
    assert p.next_hour == pytest.approx(daily(MONDAY), rel=0.02)
    assert p.recommended_instances == math.ceil(p.next_hour * 1.2 / 100)
    peak = next(h for h in p.hourly if h.timestamp == MONDAY + 14 * DAY + 6 * HOUR)
    assert peak.recommended_instances == 20  # 1600 * 1.2 / 100 = 19.2 -> 20, clamped at 20
    d = p.to_dict()
    assert d["reactive_only"] is False
    assert len(d["hourly"]) == 24


def test_capacity_is_learned_from_requests_vs_instances() -> None:
    hist = series(7)
    instances = [(t, 4.0) for t, _ in hist]
    p = predict_traffic_pattern(
        hist, now=MONDAY + 7 * DAY, capacity_per_instance=1.0, instances=instances
    )
    assert p.capacity_learned
    loads = sorted(c / 4 for _, c in hist)
    assert p.capacity_per_instance == pytest.approx(loads[int(0.9 * len(loads))])
    assert learn_capacity([(100.0, 2.0)] * 5) is None  # too few hours
    assert recommend_instances(1000, 100, headroom=0.0) == 10
    assert recommend_instances(0, 100, min_instances=2) == 2


def fill_store(store: HistoryStore, hourly: list[tuple[float, float]]) -> None:
    rows = []
    for t, c in hourly:
        per_minute = round(c / 60)
        rows.extend((t + m * 60, per_minute, None) for m in range(60))
    store.add_many(rows)


def test_scaler_floor_is_max_of_prediction_and_event(tmp_path) -> None:
    now = MONDAY + 14 * DAY + 5 * HOUR + 50 * 60  # 05:50, lead time reaches into 06:00
    clock = Clock(now)
    with HistoryStore(tmp_path / "h.db", clock=clock) as store:
        fill_store(store, series(14, start=MONDAY + 5 * HOUR))
        schedule = InMemoryEventSchedule(
            [ScheduledEvent("gala", now + 2 * HOUR, now + 4 * HOUR, 15_500)]
        )
        scaler = PredictiveScaler(schedule, history=store, capacity_per_instance=200, clock=clock)
        p = scaler.predict_traffic_pattern()
        assert not p.reactive_only
        # 06:00 is the peak (1600/h): 1600 * 1.2 / 200 = 9.6 -> 10
        assert scaler.floor() == 10
        scaler.pre_scale_for_event("gala")
        clock.now = now + 2 * HOUR - 600
        assert scaler.floor() == 16  # the event outweighs the forecast
        clock.now = now + 12 * HOUR  # 17:50, traffic near its trough: ~400/h -> 3
        assert scaler.floor() == 3


def test_scaler_with_empty_history_is_reactive_only(tmp_path) -> None:
    with HistoryStore(tmp_path / "h.db") as store:
        scaler = PredictiveScaler(InMemoryEventSchedule(), history=store, capacity_per_instance=10)
        assert scaler.floor(MONDAY) is None
        assert scaler.predict_traffic_pattern(MONDAY).reactive_only


def test_floor_never_raises_when_the_history_source_fails() -> None:
    class Broken:
        def requests(self, start, end, *, step=60):
            raise OSError("disk gone")

        def instances(self, start, end, *, step=3600):
            return []

    collector = MetricsCollector(slow_hooks=())
    try:
        clock = Clock(MONDAY)
        schedule = InMemoryEventSchedule([ScheduledEvent("e", MONDAY, MONDAY + HOUR, 3_000)])
        scaler = PredictiveScaler(
            schedule, history=Broken(), capacity_per_instance=10, collector=collector, clock=clock
        )
        scaler.pre_scale_for_event("e")
        assert scaler.floor() == 3  # the event floor still holds
        assert collector.internal_errors().get("predictive.floor") == 1
    finally:
        collector.shutdown()
