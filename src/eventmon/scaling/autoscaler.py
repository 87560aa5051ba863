"""AutoScalingManager: read load, ask a policy, apply the count, report what happened.

Every ``interval`` seconds, on a background thread::

    metrics source ─► policy ─► max(reactive, predictive floor) ─► backend.scale_to(n)
                                                                    └─► event: log, history,
                                                                        metrics, notifiers

Example, beside a gunicorn master::

    from eventmon.scaling import AutoScalingManager, LocalWorkersSource
    from eventmon.scaling.backends.gunicorn import GunicornBackend

    backend = GunicornBackend(pidfile="/run/gunicorn.pid")
    manager = AutoScalingManager(backend, LocalWorkersSource(lambda: backend.master_pid))
    manager.start()
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from eventmon._exceptions import ConfigurationError
from eventmon._validate import integer, integer_range, seconds
from eventmon.collector import MetricsCollector
from eventmon.scaling.backends.base import ScalingBackend
from eventmon.scaling.policies import (
    DEFAULT_MAX_INSTANCES,
    DEFAULT_MIN_INSTANCES,
    Recommendation,
    ScalingPolicy,
    make_policy,
)
from eventmon.scaling.sources import MetricsSource
from eventmon.types import Clock

__all__ = [
    "SCALE_OUT_OBJECTIVE",
    "AutoScalingManager",
    "ScaleEvent",
    "ScalingEventSink",
]

logger = logging.getLogger("eventmon.scaling")

#: The product's objective for a scale-out, in seconds (2 minutes).
SCALE_OUT_OBJECTIVE = 120.0


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """One change of the instance count.

    ``duration`` is the seconds from the first signal/request until the backend
    confirmed the new instances serving (for a scale-in: until the change was
    applied; draining goes on after). ``served`` is False when the backend gave
    up waiting. ``slow`` marks a scale-out slower than ``objective`` seconds or
    never confirmed.
    """

    from_instances: int
    to_instances: int
    reason: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    duration: float | None = None
    served: bool = True
    at: float = 0.0  # Unix time the change started
    backend: str = ""
    floor: int | None = None
    objective: float = SCALE_OUT_OBJECTIVE
    error: str | None = None

    @property
    def direction(self) -> str:
        """``"out"`` or ``"in"``."""
        return "out" if self.to_instances > self.from_instances else "in"

    @property
    def slow(self) -> bool:
        """A scale-out that missed the objective (or failed)."""
        if self.direction != "out":
            return False
        return (not self.served) or self.duration is None or self.duration > self.objective

    @property
    def labels(self) -> Mapping[str, str]:
        return {
            "backend": self.backend,
            "direction": self.direction,
            "slow": str(self.slow).lower(),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return {
            "from": self.from_instances,
            "to": self.to_instances,
            "direction": self.direction,
            "reason": self.reason,
            "metrics": dict(self.metrics),
            "duration": self.duration,
            "served": self.served,
            "slow": self.slow,
            "objective": self.objective,
            "at": self.at,
            "backend": self.backend,
            "floor": self.floor,
            "error": self.error,
        }


@runtime_checkable
class ScalingEventSink(Protocol):
    """Anything told about scaling events, e.g. the alerting notifiers' dispatcher."""

    def notify_scaling_event(self, event: Any) -> None: ...


class AutoScalingManager:
    """Turns a metrics source into an instance count applied through a backend.

    Args:
        backend: where the count is read and applied (:class:`ScalingBackend`).
        source: where load is read (:class:`MetricsSource`).
        policy: ``"step"`` (default: +1 above 70 % CPU, −1 below 30 %),
            ``"proportional"`` (HPA formula), or a :class:`ScalingPolicy`.
        min_instances, max_instances: hard bounds (default 2 and 20), applied
            after the policy and the floor.
        interval: seconds between evaluations on the background thread.
        floor_provider: ``floor(now) -> int | None``, a lower bound from the
            predictive model; the manager runs ``max(reactive, floor)``.
        notifiers: objects with ``notify_scaling_event(event)``.
        collector: where ``eventmon_instances`` and friends are exported.
        history_size: scaling events kept in :attr:`history`.
        scale_out_objective: seconds a scale-out may take before it is slow.
        on_slow_scale_out: called with the event when a scale-out is slow.
        clock: monotonic clock; ``wall_clock`` stamps events.
    """

    def __init__(
        self,
        backend: ScalingBackend,
        source: MetricsSource,
        *,
        policy: str | ScalingPolicy = "step",
        min_instances: int = DEFAULT_MIN_INSTANCES,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        interval: float = 15.0,
        floor_provider: Callable[[float], int | None] | None = None,
        notifiers: Iterable[ScalingEventSink] = (),
        collector: MetricsCollector | None = None,
        history_size: int = 1000,
        scale_out_objective: float = SCALE_OUT_OBJECTIVE,
        on_slow_scale_out: Callable[[ScaleEvent], object] | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        for name, obj, method in (
            ("backend", backend, "scale_to"),
            ("backend", backend, "current"),
            ("source", source, "read"),
        ):
            if not callable(getattr(obj, method, None)):
                raise ConfigurationError(f"{name} {obj!r} has no {method}() method")
        interval = seconds("interval", interval)
        history_size = integer("history_size", history_size, minimum=1)
        scale_out_objective = seconds("scale_out_objective", scale_out_objective)
        min_instances, max_instances = integer_range(
            ("min_instances", "max_instances"), min_instances, max_instances, minimum=1
        )
        if collector is not None and not isinstance(collector, MetricsCollector):
            raise ConfigurationError(f"collector must be a MetricsCollector, got {collector!r}")
        if floor_provider is not None and not callable(floor_provider):
            raise ConfigurationError("floor_provider must be callable: floor(now) -> int | None")
        sinks = list(notifiers)
        for n in sinks:
            if not callable(getattr(n, "notify_scaling_event", None)):
                raise ConfigurationError(f"notifier {n!r} has no notify_scaling_event(event)")
        self.policy = make_policy(
            policy, min_instances=min_instances, max_instances=max_instances, clock=clock
        )
        self.backend = backend
        self.source = source
        self.min_instances = min_instances
        self.max_instances = max_instances
        self.interval = float(interval)
        self.floor_provider = floor_provider
        self.notifiers = sinks
        self.collector = collector
        self.scale_out_objective = float(scale_out_objective)
        self.on_slow_scale_out = on_slow_scale_out
        self.clock = clock
        self.wall_clock = wall_clock
        self.history: deque[ScaleEvent] = deque(maxlen=history_size)
        self.last_recommendation: Recommendation | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        if collector is not None:
            collector.define_counter(
                "eventmon_scaling_events", "Instance count changes by direction.", ("direction",)
            )
            collector.define_counter(
                "eventmon_slow_scale_outs", "Scale-outs slower than the objective."
            )
            collector.define_counter(
                "eventmon_scaling_errors", "Failed scaling evaluations by stage.", ("stage",)
            )

    # ---------------------------------------------------------------- evaluation

    def evaluate(self) -> ScaleEvent | None:
        """One round: read, decide, apply. Returns the event if the count changed.

        Never raises: every failure is logged, counted, and holds the count.
        """
        with self._lock:
            try:
                return self._evaluate()
            except Exception:
                self._fault("evaluate")
                return None

    def _evaluate(self) -> ScaleEvent | None:
        try:
            current = int(self.backend.current())
        except Exception:
            self._fault("backend")
            return None
        self._gauge("eventmon_instances", current)
        try:
            metrics = dict(self.source.read())
        except Exception as e:
            logger.warning("eventmon: metrics unavailable, holding at %d: %s", current, e)
            self._count_error("source")
            metrics = {}
        rec = self.policy.recommend(current, metrics)
        self.last_recommendation = rec
        if rec.held:
            logger.warning("eventmon: %s", rec.reason)
        desired, reason = rec.desired, rec.reason
        floor = self._floor()
        if floor is not None and floor > desired:
            desired, reason = floor, f"predictive floor {floor} (reactive: {rec.reason})"
        bounded = max(self.min_instances, min(self.max_instances, desired))
        if bounded != desired:
            reason = f"{reason}; clamped to [{self.min_instances}, {self.max_instances}]"
        desired = bounded
        self._gauge("eventmon_desired_instances", desired)
        if desired == current:
            return None
        return self._apply(current, desired, reason, metrics, floor)

    def _floor(self) -> int | None:
        if self.floor_provider is None:
            return None
        try:
            f = self.floor_provider(self.wall_clock())
        except Exception:
            self._fault("floor")
            return None
        if f is None:
            return None
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f):
            logger.warning("eventmon: ignoring predictive floor %r (not a number)", f)
            return None
        return math.ceil(f)

    def _apply(
        self,
        current: int,
        desired: int,
        reason: str,
        metrics: Mapping[str, Any],
        floor: int | None,
    ) -> ScaleEvent:
        at = self.wall_clock()
        start = self.clock()
        error = None
        try:
            served = bool(self.backend.scale_to(desired))
        except Exception as e:
            self._fault("backend")
            served, error = False, f"{type(e).__name__}: {e}"
        duration = self.clock() - start
        numbers = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        event = ScaleEvent(
            from_instances=current,
            to_instances=desired,
            reason=reason,
            metrics=numbers,
            duration=duration,
            served=served,
            at=at,
            backend=str(getattr(self.backend, "name", type(self.backend).__name__)),
            floor=floor,
            objective=self.scale_out_objective,
            error=error,
        )
        self._record(event)
        return event

    def _record(self, event: ScaleEvent) -> None:
        self.history.append(event)
        level = logging.WARNING if (event.slow or event.error) else logging.INFO
        logger.log(
            level,
            "eventmon: scaled %s %d -> %d in %.1fs%s (%s)",
            event.direction,
            event.from_instances,
            event.to_instances,
            event.duration or 0.0,
            "" if event.served else " NOT confirmed serving",
            event.reason,
        )
        if self.collector is not None:
            try:
                self.collector.increment_counter(
                    "eventmon_scaling_events", {"direction": event.direction}
                )
                if event.error is None:
                    self.collector.set_gauge("eventmon_instances", event.to_instances)
                if event.direction == "out" and event.duration is not None:
                    self.collector.set_gauge("eventmon_last_scale_out_seconds", event.duration)
                if event.slow:
                    self.collector.increment_counter("eventmon_slow_scale_outs")
            except Exception:
                self._fault("export")
        for sink in self.notifiers:
            try:
                sink.notify_scaling_event(event)
            except Exception:
                self._fault("notify")
        if event.slow and self.on_slow_scale_out is not None:
            try:
                self.on_slow_scale_out(event)
            except Exception:
                self._fault("notify")

    def _gauge(self, name: str, value: float) -> None:
        if self.collector is not None:
            try:
                self.collector.set_gauge(name, value)
            except Exception:
                self._fault("export")

    def _count_error(self, stage: str) -> None:
        if self.collector is not None:
            with contextlib.suppress(Exception):  # the count is best effort
                self.collector.increment_counter("eventmon_scaling_errors", {"stage": stage})

    def _fault(self, stage: str) -> None:
        """Log the current exception and count it; never raises."""
        self._count_error(stage)
        if self.collector is not None:
            self.collector.internal_error(f"autoscaler.{stage}")
        else:
            logger.exception("eventmon: autoscaler %s failed (count held)", stage)

    # ---------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Evaluate now and every ``interval`` seconds on a daemon thread (idempotent)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="eventmon-autoscaler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the thread, waiting up to ``timeout`` for a scaling in progress (idempotent)."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.evaluate()
            self._stop.wait(self.interval)

    def __enter__(self) -> AutoScalingManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
