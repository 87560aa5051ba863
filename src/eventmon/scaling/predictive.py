"""Predictive scaling: the floor the autoscaler reads, from forecast and schedule.

:class:`PredictiveScaler` combines the traffic forecast
(:mod:`eventmon.scaling.forecaster`) and the events the host app lists
(:mod:`eventmon.scaling.schedule`) into the fewest instances to run. Their names are
re-exported here as well.

Contract with the autoscaler: ``PredictiveScaler.floor(now) -> int | None``.
``None`` means "no opinion, scale reactively"; an ``int`` is the fewest instances
to run at ``now`` and the autoscaler runs ``max(reactive, floor)`` (clamped to its
own maximum). ``floor`` never raises: a failing history source is logged, counted
with ``collector.internal_error("predictive.floor")`` and treated as ``None``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eventmon._exceptions import ConfigurationError
from eventmon._validate import integer, integer_range, number, seconds

# Importable from here as before the split; "X as X" marks them re-exported for type checkers.
from eventmon.scaling.forecaster import HOUR as HOUR  # noqa: PLC0414
from eventmon.scaling.forecaster import MAX_HEADROOM as MAX_HEADROOM  # noqa: PLC0414
from eventmon.scaling.forecaster import MAX_HORIZON_HOURS as MAX_HORIZON_HOURS  # noqa: PLC0414
from eventmon.scaling.forecaster import MIN_HISTORY_HOURS as MIN_HISTORY_HOURS  # noqa: PLC0414
from eventmon.scaling.forecaster import (
    Forecaster,
    HourlyForecast,
    TrafficPrediction,
    _hour_start,
    learn_capacity,
    predict_traffic_pattern,
    recommend_instances,
)
from eventmon.scaling.schedule import (
    EventNotFoundError,
    EventSchedule,
    InMemoryEventSchedule,
    ScheduledEvent,
)

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector
    from eventmon.scaling.history import HistorySource

__all__ = [
    "EventNotFoundError",
    "EventSchedule",
    "Forecaster",
    "HourlyForecast",
    "InMemoryEventSchedule",
    "PredictiveScaler",
    "ScheduledEvent",
    "TrafficPrediction",
    "learn_capacity",
    "predict_traffic_pattern",
    "recommend_instances",
]

logger = logging.getLogger("eventmon.scaling")


@dataclass(frozen=True, slots=True)
class _Prediction:
    at: float
    value: TrafficPrediction | None


@dataclass
class PredictiveScaler:
    """The floor the autoscaler reads: predicted traffic and scheduled events.

    ``pre_scale_for_event(id)`` raises the floor to ``ceil(registered / divisor)``
    from ``lead_time`` seconds before the event starts until it ends, clamped to
    ``max_instances`` unless ``allow_above_max``. With ``history`` set, the
    traffic forecast for the hours overlapping ``[now, now + lead_time]`` also
    counts (recomputed every ``refresh`` seconds)::

        scaler = PredictiveScaler(schedule, history=store, capacity_per_instance=36_000)
        scaler.pre_scale_for_event("concert-42")
        autoscaler_floor = scaler.floor()      # int, or None for "reactive only"
    """

    schedule: EventSchedule
    history: HistorySource | None = None
    divisor: float = 1000.0
    lead_time: float = 900.0
    max_instances: int = 20
    min_instances: int = 1
    allow_above_max: bool = False
    watch_schedule: bool = False
    capacity_per_instance: float | None = None
    headroom: float = 0.2
    history_days: int = 28
    refresh: float = 300.0
    collector: MetricsCollector | None = None
    clock: Callable[[], float] = time.time
    _events: set[str] = field(default_factory=set, init=False, repr=False)
    _cached: _Prediction | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        from eventmon.collector import MetricsCollector

        self.divisor = number("divisor", self.divisor, above=0, unit="registrations")
        self.lead_time = seconds("lead_time", self.lead_time, allow_zero=True)
        self.min_instances, self.max_instances = integer_range(
            ("min_instances", "max_instances"), self.min_instances, self.max_instances, minimum=1
        )
        if self.capacity_per_instance is not None:
            self.capacity_per_instance = number(
                "capacity_per_instance", self.capacity_per_instance, above=0
            )
        self.headroom = number("headroom", self.headroom, minimum=0, maximum=MAX_HEADROOM)
        self.history_days = integer("history_days", self.history_days, minimum=1)
        self.refresh = seconds("refresh", self.refresh)
        if self.collector is not None and not isinstance(self.collector, MetricsCollector):
            raise ConfigurationError(
                f"collector must be a MetricsCollector, got {self.collector!r}"
            )
        if not isinstance(self.schedule, EventSchedule):
            raise ConfigurationError("schedule must have get(event_id) and upcoming(now) methods")

    # ------------------------------------------------------------------- events

    def pre_scale_for_event(self, event_id: str) -> int:
        """Plan capacity for an event; returns the floor it will hold while active."""
        event = self.schedule.get(event_id)
        if event is None:
            raise EventNotFoundError(f"no event {event_id!r} in the schedule")
        with self._lock:
            self._events.add(event_id)
        return self._event_instances(event)

    def cancel_pre_scale(self, event_id: str) -> None:
        with self._lock:
            self._events.discard(event_id)

    def _event_instances(self, event: ScheduledEvent) -> int:
        n = max(self.min_instances, math.ceil(event.registered / self.divisor))
        return n if self.allow_above_max else min(n, self.max_instances)

    def event_floor(self, now: float | None = None) -> int | None:
        """The highest floor of the events active at ``now`` (None if none)."""
        now = self.clock() if now is None else now
        with self._lock:
            ids = set(self._events)
        events: dict[str, ScheduledEvent] = {}
        for event_id in ids:
            e = self.schedule.get(event_id)
            if e is None or e.end <= now:
                if e is None or e.end <= now - 86400:  # forget long-finished events
                    self.cancel_pre_scale(event_id)
                continue
            events[e.id] = e
        if self.watch_schedule:
            events.update((e.id, e) for e in self.schedule.upcoming(now))
        best: int | None = None
        for e in events.values():
            if e.start - self.lead_time <= now < e.end:
                n = self._event_instances(e)
                best = n if best is None else max(best, n)
        return best

    # -------------------------------------------------------------- prediction

    def predict_traffic_pattern(self, now: float | None = None) -> TrafficPrediction:
        """Forecast from the history source (raises if the source fails)."""
        if self.history is None:
            raise ConfigurationError("PredictiveScaler has no history source to forecast from")
        now = self.clock() if now is None else now
        end = _hour_start(now)
        start = end - self.history_days * 86400
        hourly = self.history.requests(start, end, step=HOUR)
        instances = self.history.instances(start, end, step=HOUR)
        return predict_traffic_pattern(
            hourly,
            now=now,
            horizon=24,
            capacity_per_instance=self.capacity_per_instance,
            instances=instances,
            headroom=self.headroom,
            min_instances=self.min_instances,
            max_instances=None if self.allow_above_max else self.max_instances,
        )

    def predicted_floor(self, now: float | None = None) -> int | None:
        """Instances the forecast asks for over ``[now, now + lead_time]``, or None."""
        if self.history is None:
            return None
        now = self.clock() if now is None else now
        cached = self._cached
        if cached is None or not cached.at <= now < cached.at + self.refresh:
            try:
                value: TrafficPrediction | None = self.predict_traffic_pattern(now)
            except Exception:
                value = None
                if self.collector is not None:
                    self.collector.internal_error("predictive.floor")
                else:
                    logger.exception("eventmon: predictive floor failed; scaling reactively")
            cached = self._cached = _Prediction(now, value)
        p = cached.value
        if p is None or p.reactive_only:
            return None
        lo, hi = _hour_start(now), now + self.lead_time
        recs = [
            h.recommended_instances
            for h in p.hourly
            if h.recommended_instances is not None and lo <= h.timestamp <= hi
        ]
        return max(recs) if recs else None

    def floor(self, now: float | None = None) -> int | None:
        """``max(predicted, event floors)`` at ``now``; None means reactive only."""
        try:
            now = self.clock() if now is None else now
            values = [
                v for v in (self.predicted_floor(now), self.event_floor(now)) if v is not None
            ]
            return max(values) if values else None
        except Exception:
            if self.collector is not None:
                self.collector.internal_error("predictive.floor")
            else:
                logger.exception("eventmon: predictive floor failed; scaling reactively")
            return None
