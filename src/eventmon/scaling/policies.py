"""Scaling policies: turn a metric reading into a desired instance count.

Two policies ship, both with the same guard rails:

* :class:`StepPolicy` — one instance more above 70 % CPU, one fewer below 30 %.
* :class:`ProportionalPolicy` — the Kubernetes HPA formula
  ``ceil(n * current / target)``, ignored while ``|current/target - 1| <= tolerance``.

Guard rails (shared):

* **Stabilization windows** as in the HPA: every raw recommendation is kept with
  its time; a scale-down goes only as low as the *highest* recommendation of the
  last ``scale_down_stabilization`` seconds (default 300), a scale-up only as
  high as the *lowest* of the last ``scale_up_stabilization`` seconds (default 0).
* **Cooldowns**: no scale-up within ``scale_up_cooldown`` seconds of the last
  change, no scale-down within ``scale_down_cooldown`` seconds of it.
* **Clamps**: the answer is always within ``[min_instances, max_instances]``.
* **Bad input** (the metric missing, ``None``, NaN, infinite or negative) holds
  the current count (clamped) and says so in the reason.

Example::

    >>> p = StepPolicy(scale_down_stabilization=0)
    >>> p.recommend(4, {"cpu_percent": 85.0}).desired
    5
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from eventmon._exceptions import ConfigurationError
from eventmon._validate import integer, integer_range, number, seconds
from eventmon.types import Clock

__all__ = [
    "DEFAULT_MAX_INSTANCES",
    "DEFAULT_MIN_INSTANCES",
    "ProportionalPolicy",
    "Recommendation",
    "ScalingPolicy",
    "StepPolicy",
    "make_policy",
]

DEFAULT_MIN_INSTANCES = 2
DEFAULT_MAX_INSTANCES = 20

MetricValues = Mapping[str, float | None]


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A policy's answer: the count to run and why.

    ``raw`` is the count before stabilization and cooldowns; ``held`` is true
    when bad input made the policy keep the current count.
    """

    desired: int
    reason: str
    raw: int
    metric: float | None = None
    held: bool = False


@runtime_checkable
class ScalingPolicy(Protocol):
    """What the autoscaler asks: given ``current`` instances and metrics, how many?"""

    min_instances: int
    max_instances: int

    def recommend(self, current: int, metrics: MetricValues) -> Recommendation: ...


class _GuardedPolicy:
    """Stabilization windows, cooldowns, clamps and input checks for a raw rule."""

    def __init__(
        self,
        *,
        metric: str,
        min_instances: int,
        max_instances: int,
        scale_up_stabilization: float,
        scale_down_stabilization: float,
        scale_up_cooldown: float,
        scale_down_cooldown: float,
        clock: Clock,
    ) -> None:
        min_instances, max_instances = integer_range(
            ("min_instances", "max_instances"), min_instances, max_instances, minimum=1
        )
        if not isinstance(metric, str) or not metric:
            raise ConfigurationError(f"metric must be a non-empty name, got {metric!r}")
        self.metric = metric
        self.min_instances = min_instances
        self.max_instances = max_instances
        self.scale_up_stabilization = seconds(
            "scale_up_stabilization", scale_up_stabilization, allow_zero=True
        )
        self.scale_down_stabilization = seconds(
            "scale_down_stabilization", scale_down_stabilization, allow_zero=True
        )
        self.scale_up_cooldown = seconds("scale_up_cooldown", scale_up_cooldown, allow_zero=True)
        self.scale_down_cooldown = seconds(
            "scale_down_cooldown", scale_down_cooldown, allow_zero=True
        )
        self.clock = clock
        self._history: deque[tuple[float, int]] = deque()
        self._last_change: float | None = None
        self._last_seen: int | None = None
        self._last_desired: int | None = None

    def clamp(self, n: int) -> int:
        """``n`` limited to ``[min_instances, max_instances]``."""
        return max(self.min_instances, min(self.max_instances, n))

    def _raw(self, current: int, value: float) -> tuple[int, str]:
        raise NotImplementedError

    def recommend(self, current: int, metrics: MetricValues) -> Recommendation:
        """The count to run now, given ``current`` instances and a metric reading."""
        now = self.clock()
        if self._last_seen is not None and current not in (self._last_seen, self._last_desired):
            self._last_change = now  # somebody else changed the count: cool down too
        self._last_seen = current
        value = metrics.get(self.metric) if isinstance(metrics, Mapping) else None
        if (
            value is None
            or isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            held = self.clamp(current)
            return Recommendation(
                held,
                f"holding at {held}: {self.metric} is {value!r}, not a usable reading",
                raw=held,
                metric=None,
                held=True,
            )
        value = float(value)
        raw, why = self._raw(current, value)
        raw = self.clamp(raw)
        desired, why = self._stabilize(now, current, raw, why)
        desired = self.clamp(desired)
        if desired != current:
            self._last_change = now
        self._last_desired = desired
        return Recommendation(desired, why, raw=raw, metric=value)

    def _stabilize(self, now: float, current: int, raw: int, why: str) -> tuple[int, str]:
        hist = self._history
        hist.append((now, raw))
        keep = max(self.scale_up_stabilization, self.scale_down_stabilization)
        while hist and hist[0][0] < now - keep:
            hist.popleft()
        # HPA: the lowest recent recommendation bounds a rise, the highest a fall.
        up_since = now - self.scale_up_stabilization
        down_since = now - self.scale_down_stabilization
        up_bound = min((r for t, r in hist if t > up_since), default=raw)
        down_bound = max((r for t, r in hist if t > down_since), default=raw)
        up_bound = min(up_bound, raw)
        down_bound = max(down_bound, raw)
        desired = min(max(current, up_bound), down_bound)
        since = None if self._last_change is None else now - self._last_change
        if desired > current and since is not None and since < self.scale_up_cooldown:
            return current, f"{why}; scale-up cooling down ({since:.0f}s since last change)"
        if desired < current and since is not None and since < self.scale_down_cooldown:
            return current, f"{why}; scale-down cooling down ({since:.0f}s since last change)"
        if desired == current and raw != current:
            window = "scale-up" if raw > current else "scale-down"
            return current, f"{why}; held by the {window} stabilization window"
        return desired, why


class StepPolicy(_GuardedPolicy):
    """One step up above ``scale_up_above`` %, one step down below ``scale_down_below`` %.

    Between the two thresholds the count holds (the hysteresis band).

    Example::

        >>> StepPolicy(scale_down_stabilization=0).recommend(3, {"cpu_percent": 12}).desired
        2
    """

    def __init__(
        self,
        *,
        scale_up_above: float = 70.0,
        scale_down_below: float = 30.0,
        step: int = 1,
        metric: str = "cpu_percent",
        min_instances: int = DEFAULT_MIN_INSTANCES,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        scale_up_stabilization: float = 0.0,
        scale_down_stabilization: float = 300.0,
        scale_up_cooldown: float = 0.0,
        scale_down_cooldown: float = 0.0,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(
            metric=metric,
            min_instances=min_instances,
            max_instances=max_instances,
            scale_up_stabilization=scale_up_stabilization,
            scale_down_stabilization=scale_down_stabilization,
            scale_up_cooldown=scale_up_cooldown,
            scale_down_cooldown=scale_down_cooldown,
            clock=clock,
        )
        up = number("scale_up_above", scale_up_above, minimum=0)
        down = number("scale_down_below", scale_down_below, minimum=0)
        if down >= up:
            raise ConfigurationError(
                f"scale_down_below ({down:g}) must be lower than scale_up_above ({up:g}),"
                " or the count would flap"
            )
        self.scale_up_above = up
        self.scale_down_below = down
        self.step = integer("step", step, minimum=1)

    def _raw(self, current: int, value: float) -> tuple[int, str]:
        m = f"{self.metric} {value:.1f}"
        if value > self.scale_up_above:
            return current + self.step, f"{m} > {self.scale_up_above:g}"
        if value < self.scale_down_below:
            return current - self.step, f"{m} < {self.scale_down_below:g}"
        return current, f"{m} within [{self.scale_down_below:g}, {self.scale_up_above:g}]"


class ProportionalPolicy(_GuardedPolicy):
    """Kubernetes HPA: ``ceil(n * current / target)``, unless within ``tolerance``.

    Example::

        >>> ProportionalPolicy(target=50, scale_down_stabilization=0).recommend(
        ...     4, {"cpu_percent": 90}).desired
        8
    """

    def __init__(
        self,
        *,
        target: float = 70.0,
        tolerance: float = 0.1,
        metric: str = "cpu_percent",
        min_instances: int = DEFAULT_MIN_INSTANCES,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        scale_up_stabilization: float = 0.0,
        scale_down_stabilization: float = 300.0,
        scale_up_cooldown: float = 0.0,
        scale_down_cooldown: float = 0.0,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(
            metric=metric,
            min_instances=min_instances,
            max_instances=max_instances,
            scale_up_stabilization=scale_up_stabilization,
            scale_down_stabilization=scale_down_stabilization,
            scale_up_cooldown=scale_up_cooldown,
            scale_down_cooldown=scale_down_cooldown,
            clock=clock,
        )
        self.target = number("target", target, above=0)
        self.tolerance = number("tolerance", tolerance, minimum=0)

    def _raw(self, current: int, value: float) -> tuple[int, str]:
        ratio = value / self.target
        m = f"{self.metric} {value:.1f} / target {self.target:g} = {ratio:.2f}"
        # 1e-9: 77 / 70 is 1.1000000000000001, and must count as within 0.1.
        if abs(ratio - 1.0) <= self.tolerance + 1e-9:
            return current, f"{m}, within tolerance {self.tolerance:g}"
        n = max(current, 0)
        # round() first: 3 * 70 / 70 must not become 3.0000000001 and ceil to 4.
        return math.ceil(round(n * ratio, 9)), f"{m}: ceil({n} * {ratio:.2f})"


def make_policy(
    policy: str | ScalingPolicy,
    *,
    min_instances: int = DEFAULT_MIN_INSTANCES,
    max_instances: int = DEFAULT_MAX_INSTANCES,
    clock: Clock = time.monotonic,
) -> ScalingPolicy:
    """``"step"`` or ``"proportional"`` with default settings, or ``policy`` as is."""
    if isinstance(policy, str):
        if policy == "step":
            return StepPolicy(min_instances=min_instances, max_instances=max_instances, clock=clock)
        if policy in ("proportional", "hpa"):
            return ProportionalPolicy(
                min_instances=min_instances, max_instances=max_instances, clock=clock
            )
        raise ConfigurationError(
            f"policy must be 'step', 'proportional' or a ScalingPolicy, got {policy!r}"
        )
    if not callable(getattr(policy, "recommend", None)):
        raise ConfigurationError(f"policy {policy!r} has no recommend(current, metrics) method")
    return policy
