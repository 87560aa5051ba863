"""Forecast hourly request counts from their weekly pattern.

* :class:`Forecaster` -- an hour-of-day x day-of-week profile of hourly request
  counts with a level that follows recent traffic (see *Model* below).
* :func:`predict_traffic_pattern` -- next-hour and next-24-hours predictions and a
  recommended instance count, or a :class:`TrafficPrediction` flagged
  ``reactive_only`` when the history is empty or too short to trust.
* :func:`recommend_instances` and :func:`learn_capacity` -- from a count to
  instances, and the requests one instance has carried.

Model: counts are forecast in log space, ``z = log1p(count)``, as the sum of
(1) a seasonal part: each hour-of-week slot keeps an exponentially weighted mean
of ``z`` (recent weeks count more), blended with weight ``n / (n + week_prior)``
(``n`` = weeks seen) with an hour-of-day profile plus a day-of-week offset, so
one day of history already gives a usable shape; (2) a level, the smoothed log
ratio of recent traffic to that seasonal part, fading (``level_decay`` per hour
ahead) for far horizons; (3) the last hour's surprise, fading by
``residual_decay`` per hour ahead. Surprises are clipped (``clip``) before they
update anything, so one viral spike does not bend next week's forecast. See
docs/forecasting.md for its scores against naive baselines on real traces.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eventmon._validate import integer, integer_range, number

__all__ = [
    "Forecaster",
    "HourlyForecast",
    "TrafficPrediction",
    "learn_capacity",
    "predict_traffic_pattern",
    "recommend_instances",
]

HOUR = 3600.0
MIN_HISTORY_HOURS = 24
#: the furthest a forecast reaches: a month; the weekly pattern says little beyond
MAX_HORIZON_HOURS = 24 * 31
#: spare capacity share beyond which a setting is surely a slip (100 = 101 times the load)
MAX_HEADROOM = 100.0


def _hour_start(ts: float) -> float:
    return math.floor(ts / HOUR) * HOUR


class Forecaster:
    """Hourly request counts -> forecasts, updated one hour at a time.

    Feed complete hours in order with :meth:`update` (or :meth:`fit`), then ask
    :meth:`forecast` for any later hour::

        f = Forecaster().fit(hourly)          # [(hour_start_epoch, count), ...]
        f.forecast(f.last_hour + 3600)        # next hour, or None if unknown

    Hours are placed on the week in ``tz`` (UTC by default).
    """

    def __init__(
        self,
        *,
        week_alpha: float = 0.4,
        day_alpha: float = 0.3,
        level_alpha: float = 0.15,
        weekday_alpha: float = 0.1,
        level_decay: float = 0.98,
        residual_decay: float = 0.5,
        week_prior: float = 1.0,
        clip: float = 0.5,
        min_hours: int = MIN_HISTORY_HOURS,
        tz: _dt.tzinfo = _dt.timezone.utc,
    ) -> None:
        self.week_alpha = number("week_alpha", week_alpha, above=0, maximum=1)
        self.day_alpha = number("day_alpha", day_alpha, above=0, maximum=1)
        self.level_alpha = number("level_alpha", level_alpha, above=0, maximum=1)
        self.weekday_alpha = number("weekday_alpha", weekday_alpha, above=0, maximum=1)
        self.level_decay = number("level_decay", level_decay, above=0, maximum=1)
        self.residual_decay = number("residual_decay", residual_decay, minimum=0, below=1)
        self.week_prior = number("week_prior", week_prior, minimum=0)
        self.clip = number("clip", clip, above=0)
        self.min_hours = integer("min_hours", min_hours, minimum=1)
        self.tz = tz
        self._week: list[float | None] = [None] * 168
        self._week_n = [0] * 168
        self._day: list[float | None] = [None] * 24
        self._weekday = [0.0] * 7  # how far each day of week runs above its hour of day
        self._level = 0.0
        self._residual = 0.0
        self.hours_seen = 0
        self.last_hour: float | None = None

    # ------------------------------------------------------------------ learning

    def _slots(self, hour_start: float) -> tuple[int, int]:
        d = _dt.datetime.fromtimestamp(hour_start, self.tz)
        return d.weekday() * 24 + d.hour, d.hour

    def _seasonal(self, week_slot: int, day_slot: int) -> float | None:
        day = self._day[day_slot]
        week = self._week[week_slot]
        if day is not None:
            day += self._weekday[week_slot // 24]
        if week is None or day is None:
            return day if week is None else week
        n = self._week_n[week_slot]
        w = n / (n + self.week_prior) if self.week_prior else 1.0
        return w * week + (1.0 - w) * day

    def update(self, hour_start: float, count: float) -> None:
        """Learn one complete hour; hours must come in increasing order."""
        hour_start = _hour_start(hour_start)
        if self.last_hour is not None and hour_start <= self.last_hour:
            raise ValueError(
                f"hours must be given in increasing order: {hour_start} after {self.last_hour}"
            )
        z = math.log1p(max(float(count), 0.0))
        week_slot, day_slot = self._slots(hour_start)
        seasonal = self._seasonal(week_slot, day_slot)
        learned = z
        if seasonal is not None:
            # Clip the surprise before learning from it: a one-off spike moves
            # neither the level nor the profile by more than ``clip`` (in log units).
            clipped = max(-self.clip, min(self.clip, z - seasonal - self._level))
            learned = seasonal + self._level + clipped
            self._level += self.level_alpha * clipped
            self._residual = z - seasonal - self._level
        day = self._day[day_slot]
        dow = week_slot // 24
        if day is None:
            self._day[day_slot] = learned - self._weekday[dow]
        else:
            self._day[day_slot] = day + self.day_alpha * (learned - self._weekday[dow] - day)
            self._weekday[dow] += self.weekday_alpha * (learned - day - self._weekday[dow])
            # Keep the offsets centred: a change of all days belongs to the profile.
            shift = sum(self._weekday) / 7.0
            self._weekday = [w - shift for w in self._weekday]
            self._day = [None if d is None else d + shift for d in self._day]
        week = self._week[week_slot]
        self._week[week_slot] = (
            learned if week is None else week + self.week_alpha * (learned - week)
        )
        self._week_n[week_slot] += 1
        self.hours_seen += 1
        self.last_hour = hour_start

    def fit(self, hourly: Iterable[tuple[float, float]]) -> Forecaster:
        """Learn ``(hour_start, count)`` pairs in time order; returns ``self``."""
        for hour_start, count in hourly:
            self.update(hour_start, count)
        return self

    # --------------------------------------------------------------- forecasting

    @property
    def ready(self) -> bool:
        """Whether enough hours were seen to trust a forecast (``min_hours``)."""
        return self.hours_seen >= self.min_hours

    def forecast(self, hour_start: float) -> float | None:
        """Expected count for the hour starting at ``hour_start``, or None if unknown."""
        if self.last_hour is None:
            return None
        hour_start = _hour_start(hour_start)
        seasonal = self._seasonal(*self._slots(hour_start))
        if seasonal is None:
            return None
        ahead = max(1.0, (hour_start - self.last_hour) / HOUR)
        z = (
            seasonal
            + self._level * self.level_decay**ahead
            + self._residual * self.residual_decay**ahead
        )
        return max(0.0, math.expm1(z))

    def daily_profile(self) -> list[float | None]:
        """The learned typical count for each hour of day (0-23), level included."""
        return [None if d is None else math.expm1(d + self._level) for d in self._day]


# ------------------------------------------------------------------- prediction


@dataclass(frozen=True, slots=True)
class HourlyForecast:
    """One forecast hour: its start (epoch seconds), count and instances."""

    timestamp: float
    predicted: float
    recommended_instances: int | None

    def to_dict(self) -> dict[str, object]:
        iso = _dt.datetime.fromtimestamp(self.timestamp, _dt.timezone.utc).isoformat()
        return {
            "timestamp": iso,
            "predicted": round(self.predicted, 3),
            "recommended_instances": self.recommended_instances,
        }


@dataclass(frozen=True, slots=True)
class TrafficPrediction:
    """What :func:`predict_traffic_pattern` knows about the coming hours.

    ``reactive_only`` is true (and ``next_hour``/``recommended_instances`` are
    None, ``hourly`` empty) when the history is too short; ``reason`` says why.
    """

    generated_at: float
    next_hour: float | None
    hourly: tuple[HourlyForecast, ...]
    recommended_instances: int | None
    capacity_per_instance: float | None
    capacity_learned: bool
    history_hours: int
    reactive_only: bool
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "generated_at": self.generated_at,
            "next_hour": self.next_hour,
            "recommended_instances": self.recommended_instances,
            "capacity_per_instance": self.capacity_per_instance,
            "capacity_learned": self.capacity_learned,
            "history_hours": self.history_hours,
            "reactive_only": self.reactive_only,
            "reason": self.reason,
            "hourly": [h.to_dict() for h in self.hourly],
        }


def recommend_instances(
    predicted: float,
    capacity_per_instance: float,
    *,
    headroom: float = 0.2,
    min_instances: int = 1,
    max_instances: int | None = None,
) -> int:
    """Instances to serve ``predicted`` requests with ``headroom`` spare, clamped."""
    ratio = predicted * (1.0 + headroom) / capacity_per_instance - 1e-9
    if max_instances is not None and not ratio <= max_instances:  # also inf and NaN
        return max_instances
    n = max(min_instances, math.ceil(ratio))
    return n if max_instances is None else min(max_instances, n)


def learn_capacity(
    samples: Iterable[tuple[float, float]], *, quantile: float = 0.9, min_samples: int = 24
) -> float | None:
    """Requests per hour one instance has served, from ``(requests, instances)`` hours.

    The ``quantile`` of per-instance load over hours that ran with instances: the
    fleet has carried that much per instance before. None if fewer than
    ``min_samples`` usable hours.
    """
    loads = sorted(r / n for r, n in samples if n and n > 0 and r > 0)
    if len(loads) < min_samples:
        return None
    return loads[min(len(loads) - 1, int(quantile * len(loads)))]


def predict_traffic_pattern(
    hourly: Sequence[tuple[float, float]],
    *,
    now: float,
    horizon: int = 24,
    capacity_per_instance: float | None = None,
    instances: Sequence[tuple[float, float]] = (),
    headroom: float = 0.2,
    min_instances: int = 1,
    max_instances: int | None = None,
    forecaster: Forecaster | None = None,
) -> TrafficPrediction:
    """Forecast the ``horizon`` hours after ``now`` from complete-hour counts.

    ``hourly`` is ``[(hour_start, count), ...]`` in time order; hours at or after
    the start of ``now``'s hour are ignored (they are not complete). ``instances``
    (``[(hour_start, instances), ...]``) lets the capacity per instance be learned;
    a learned capacity wins over ``capacity_per_instance``. Without any capacity
    the prediction has no instance recommendation.
    """
    horizon = integer("horizon", horizon, minimum=1, maximum=MAX_HORIZON_HOURS)
    if capacity_per_instance is not None:
        capacity_per_instance = number(
            "capacity_per_instance", capacity_per_instance, above=0, unit="requests per hour"
        )
    headroom = number("headroom", headroom, minimum=0, maximum=MAX_HEADROOM)
    if max_instances is None:
        min_instances = integer("min_instances", min_instances, minimum=1)
    else:
        min_instances, max_instances = integer_range(
            ("min_instances", "max_instances"), min_instances, max_instances, minimum=1
        )
    current = _hour_start(number("now", now, minimum=0, unit="seconds"))
    complete = [(t, c) for t, c in hourly if t < current]
    f = forecaster if forecaster is not None else Forecaster()
    f.fit(complete)
    capacity = capacity_per_instance
    learned = False
    if instances:
        by_hour = dict(complete)
        cap = learn_capacity((by_hour[t], n) for t, n in instances if t in by_hour)
        if cap is not None:
            capacity, learned = cap, True
    if not f.ready:
        return TrafficPrediction(
            generated_at=now,
            next_hour=None,
            hourly=(),
            recommended_instances=None,
            capacity_per_instance=capacity,
            capacity_learned=learned,
            history_hours=f.hours_seen,
            reactive_only=True,
            reason=(
                "no request history yet"
                if f.hours_seen == 0
                else f"history too short: {f.hours_seen} of {f.min_hours} hours needed"
            )
            + "; falling back to reactive scaling",
        )
    hours: list[HourlyForecast] = []
    for i in range(horizon):
        t = current + i * HOUR
        p = f.forecast(t)
        if p is None:
            continue
        rec = (
            None
            if capacity is None
            else recommend_instances(
                p,
                capacity,
                headroom=headroom,
                min_instances=min_instances,
                max_instances=max_instances,
            )
        )
        hours.append(HourlyForecast(t, p, rec))
    first = hours[0] if hours and hours[0].timestamp == current else None
    return TrafficPrediction(
        generated_at=now,
        next_hour=first.predicted if first else None,
        hourly=tuple(hours),
        recommended_instances=first.recommended_instances if first else None,
        capacity_per_instance=capacity,
        capacity_learned=learned,
        history_hours=f.hours_seen,
        reactive_only=first is None,
        reason="" if first else "no pattern learned for the coming hour yet",
    )
