"""The alert engine: evaluates rules every few seconds, Prometheus-style, and notifies.

States follow Prometheus: a rule whose condition turns true is *pending*; once
it has held for ``for`` it is *firing* and a notification goes out; while it
keeps firing the notification is repeated every ``repeat_interval``; when the
condition clears (after ``keep_firing_for``, if set) it is *resolved* and a
resolved notice goes out. Evaluation runs on a background thread
(:meth:`AlertEngine.start`) or an asyncio task (:meth:`AlertEngine.lifespan`);
it never raises into the app: faults are logged and counted.

Under worker aggregation (``EVENTMON_MULTIPROC_DIR``) every worker may start an
engine: the loops elect one evaluator per directory (an ``flock`` on
``engine.lock``), which reads the instance's merged figures and alone notifies;
the others keep sampling so that one of them can take over within ``interval``
(:mod:`eventmon.alerting._leadership`).

Example::

    engine = AlertEngine(collector, default_rules(), notifiers=[SlackNotifier(url)])
    engine.start()                      # or: Starlette(lifespan=engine.lifespan)
    ...
    engine.alerts()                     # [AlertStatus(name="high_error_rate", state="firing", ...)]
    engine.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Literal

from eventmon._exceptions import ConfigurationError, RuleError
from eventmon._validate import seconds
from eventmon.alerting._leadership import EVALUATOR_GAUGE, Leadership
from eventmon.alerting._states import Alert, AlertStatus, adopt, status_from_dict, unknown
from eventmon.alerting.metrics import DB_CONNECTION_ERRORS, SCALE_OUT_GAUGE, RuleMetrics
from eventmon.alerting.notifiers.base import AlertNotice, Notifier, ScalingEvent
from eventmon.alerting.notifiers.dispatcher import NotificationDispatcher
from eventmon.alerting.rules import AlertRule, check_unique
from eventmon.collector import MetricsCollector, default_collector
from eventmon.types import Clock

__all__ = ["EVALUATOR_GAUGE", "AlertEngine", "AlertStatus"]


class AlertEngine:
    """Evaluates alert rules against a collector and sends what changes to the notifiers.

    Args:
        collector: the metrics (default: the process-wide collector).
        rules: :class:`AlertRule` s (e.g. ``default_rules()`` or ``load_rules(path)``).
            Unknown metrics, bad units and duplicate names raise RuleError here.
        notifiers: channels, or give ``dispatcher`` to share one.
        interval: seconds between evaluations on the background thread/task.
        repeat_interval: seconds after which a still-firing alert is sent again.
        declare: counters/gauges the app will create later that rules may name.
        clock: monotonic seconds (default: the collector's clock).
        wall_clock: Unix seconds, for the times in notifications.
    """

    def __init__(
        self,
        collector: MetricsCollector | None = None,
        rules: Iterable[AlertRule] = (),
        *,
        notifiers: Iterable[Notifier] = (),
        dispatcher: NotificationDispatcher | None = None,
        interval: float = 15.0,
        repeat_interval: float = 4 * 3600.0,
        declare: Iterable[str] = (),
        clock: Clock | None = None,
        wall_clock: Clock = time.time,
    ) -> None:
        self.interval = seconds("interval", interval)
        self.repeat_interval = seconds("repeat_interval", repeat_interval)
        if collector is not None and not isinstance(collector, MetricsCollector):
            raise ConfigurationError(f"collector must be a MetricsCollector, got {collector!r}")
        if dispatcher is not None and not isinstance(dispatcher, NotificationDispatcher):
            raise ConfigurationError(
                f"dispatcher must be a NotificationDispatcher, got {dispatcher!r}"
            )
        if isinstance(declare, str):
            raise ConfigurationError(f"declare must be a list of names, got the string {declare!r}")
        for clock_arg, what in ((clock, "clock"), (wall_clock, "wall_clock")):
            if clock_arg is not None and not callable(clock_arg):
                raise ConfigurationError(f"{what} must be a function returning seconds")
        self.collector = collector or default_collector()
        self.clock: Clock = clock or self.collector.clock
        self.wall_clock = wall_clock
        self.metrics = RuleMetrics(self.collector, declare=declare, clock=self.clock)
        notifiers = list(notifiers)
        if dispatcher is None:
            dispatcher = NotificationDispatcher(
                notifiers, on_error=self.collector.record_internal_error
            )
        else:
            for n in notifiers:
                dispatcher.add(n)
        self.dispatcher = dispatcher
        self._alerts: dict[str, Alert] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = 0
        self._leadership = Leadership(self.collector)
        self.evaluations = 0
        self._hold_until = 0  # evaluations count up to which adopted alerts wait for data
        for rule in check_unique(rules):
            self.add_rule(rule)

    # ----------------------------------------------------------------- rules

    def add_rule(self, rule: AlertRule) -> None:
        """Add a rule; raises RuleError if it names an unknown metric or repeats a name."""
        if not isinstance(rule, AlertRule):
            raise ConfigurationError(f"expected an AlertRule, got {rule!r}")
        if rule.name in self._alerts:
            raise RuleError(f"a rule named {rule.name!r} already exists")
        try:
            condition = rule.parsed.bind(self.metrics.catalog())
        except RuleError as e:
            raise RuleError(f"rule {rule.name!r}: {e}") from None
        if any(m.name == DB_CONNECTION_ERRORS for m in condition.metrics) and (
            DB_CONNECTION_ERRORS not in self.collector.counter_names()
        ):
            # Exported from the start (at 0), so the same rule in Prometheus sees
            # the series before the first error. Only this counter: for others
            # the app's first increment decides the label names.
            self.collector.increment_counter(DB_CONNECTION_ERRORS, amount=0)
        with self._lock:
            self._alerts[rule.name] = Alert(rule, condition)

    @property
    def rules(self) -> list[AlertRule]:
        return [a.rule for a in self._alerts.values()]

    # ------------------------------------------------------------ evaluation

    def evaluate(self, now: float | None = None) -> list[AlertNotice]:
        """Evaluate every rule once; return (and dispatch) the notices it produced."""
        now = self.clock() if now is None else now
        wall = self.wall_clock()
        with self._lock:
            alerts = list(self._alerts.values())
            refs = {m.key: (m.key, m.name, m.labels) for a in alerts for m in a.condition.metrics}
            values = self.metrics.sample(refs.values())
            notices: list[AlertNotice] = []
            for a in alerts:
                if a.adopted:
                    # Taken over: it waits for data rather than resolve on NaN.
                    if self.evaluations < self._hold_until and unknown(a, values):
                        continue
                    a.adopted = False
                try:
                    active = a.condition.evaluate(values)
                except Exception:
                    self.collector.internal_error(f"alert_rule:{a.rule.name}")
                    continue
                a.value = a.condition.first_value(values)
                notice = self._step(a, active, now, wall)
                if notice is not None:
                    notices.append(notice)
            self.evaluations += 1
        for n in notices:
            self.dispatcher.dispatch(n)
        return notices

    def _step(self, a: Alert, active: bool, now: float, wall: float) -> AlertNotice | None:
        rule = a.rule
        if active:
            a.clear_since = None
            if a.state in ("inactive", "resolved"):
                a.state = "pending"
                a.active_since = now
                a.wall["active_since"] = wall
                a.resolved_at = None
            if a.state == "pending" and now - (a.active_since or now) >= rule.for_seconds:
                a.state = "firing"
                a.fired_at = now
                a.wall["fired_at"] = wall
                a.last_sent = now
                a.wall["last_sent"] = wall
                return self._notice(a, "firing", wall)
            if a.state == "firing" and now - (a.last_sent or now) >= self.repeat_interval:
                a.last_sent = now
                a.wall["last_sent"] = wall
                return self._notice(a, "firing", wall, repeat=True)
            return None
        if a.state == "pending":
            a.state = "inactive"
            a.active_since = None
            return None
        if a.state == "firing":
            if a.clear_since is None:
                a.clear_since = now
            if now - a.clear_since < rule.keep_firing_seconds:
                if now - (a.last_sent or now) >= self.repeat_interval:
                    a.last_sent = now
                    a.wall["last_sent"] = wall
                    return self._notice(a, "firing", wall, repeat=True)
                return None
            a.state = "resolved"
            a.resolved_at = now
            a.wall["resolved_at"] = wall
            a.clear_since = None
            a.last_sent = now
            a.wall["last_sent"] = wall
            return self._notice(a, "resolved", wall)
        return None

    def _notice(
        self, a: Alert, status: Literal["firing", "resolved"], wall: float, repeat: bool = False
    ) -> AlertNotice:
        rule = a.rule
        return AlertNotice(
            name=rule.name,
            status=status,
            severity=rule.severity,
            labels=dict(rule.labels),
            annotations=dict(rule.annotations),
            value=a.value,
            starts_at=a.wall.get("active_since", wall),
            ends_at=wall if status == "resolved" else None,
            condition=rule.condition,
            repeat=repeat,
        )

    def alerts(self) -> list[AlertStatus]:
        """Every rule's alert state as of the last evaluation.

        Under worker aggregation, in a worker whose loop does not lead: the
        leader's, as it published them at its last evaluation.
        """
        docs = self._leadership.published()
        if docs is not None:
            try:
                return [status_from_dict(d) for d in docs]
            except (TypeError, ValueError):
                pass  # damaged: this worker's own (inactive) states rather than nothing
        return self._own_alerts()

    def _publish(self) -> None:
        if self.collector.multiprocess is not None:
            alerts = [dataclasses.asdict(s) for s in self._own_alerts()]
            self._leadership.publish(alerts, self.wall_clock())

    def _own_alerts(self) -> list[AlertStatus]:
        with self._lock:
            out = []
            for a in self._alerts.values():
                w = a.wall
                out.append(
                    AlertStatus(
                        name=a.rule.name,
                        state=a.state,
                        severity=a.rule.severity,
                        labels=a.rule.all_labels,
                        annotations=dict(a.rule.annotations),
                        value=a.value,
                        active_since=w.get("active_since") if a.active_since is not None else None,
                        fired_at=w.get("fired_at") if a.state == "firing" else None,
                        last_notified=w.get("last_sent"),
                        resolved_at=w.get("resolved_at") if a.state == "resolved" else None,
                    )
                )
            return out

    def firing(self) -> list[str]:
        """Names of the alerts firing now."""
        return [s.name for s in self.alerts() if s.state == "firing"]

    def notify_scaling_event(self, event: ScalingEvent | Mapping[str, Any] | Any) -> None:
        """Send an autoscaler event to the notifiers; a scale-out's duration feeds
        ``scale_out_time``."""
        ev = ScalingEvent.coerce(event)
        if ev.direction == "out" and ev.duration is not None:
            self.collector.set_gauge(SCALE_OUT_GAUGE, ev.duration)
        self.dispatcher.dispatch(ev)

    # ------------------------------------------------------------ leadership

    @property
    def leading(self) -> bool:
        """Whether this engine's loop evaluates and notifies.

        Always true in one process. Under worker aggregation, true in the one
        worker whose loop holds the directory's evaluator lock (``engine.lock``).
        """
        return self._leadership.leading

    def _lead(self) -> bool:
        """Take or keep the evaluator lock if aggregated; whether to evaluate now."""
        leading, took_over = self._leadership.poll()
        if took_over:
            now, wall = self.clock(), self.wall_clock()
            handed = self._leadership.handed_over(wall, max_age=3 * self.interval + 5.0)
            with self._lock:
                # Another worker led until now: whatever this engine held is stale.
                for name, a in self._alerts.items():
                    self._alerts[name] = Alert(a.rule, a.condition)
                if adopt(self._alerts, handed, now, wall):
                    # A fresh worker's windows have no history: for its next two
                    # evaluations, an alert taken over waits for data (not NaN).
                    self._hold_until = self.evaluations + 2
        return leading

    def _follow(self) -> None:
        """Sample without evaluating: keeps the windows' history for a takeover."""
        if self.collector.multiprocess is None:
            return
        with self._lock:
            refs = {m.key: (m.key, m.name, m.labels) for a in self._alerts.values()
                    for m in a.condition.metrics}  # fmt: skip
            if refs:
                self.metrics.sample(refs.values())

    def _resign(self) -> None:
        self._leadership.resign()

    # ---------------------------------------------------------------- thread

    def _safe_evaluate(self) -> None:
        try:
            if self._lead():
                self.evaluate()
                self._publish()
            else:
                self._follow()
        except Exception:
            self.collector.internal_error("alert_engine")

    def _prime(self) -> None:
        """At start: take the lead if free, and the merged windows' baseline."""
        try:
            self._lead()
            self._follow()
        except Exception:
            self.collector.internal_error("alert_engine")

    def _run(self) -> None:
        self._prime()
        while not self._stop.wait(self.interval):
            self._safe_evaluate()

    def start(self) -> None:
        """Evaluate every ``interval`` seconds on a daemon thread; idempotent."""
        with self._lock:
            t = self._thread
            if t is not None and t.is_alive() and self._pid == os.getpid():
                return
            self._stop = threading.Event()
            self._leadership.resume()
            self._thread = threading.Thread(target=self._run, name="eventmon-alerts", daemon=True)
            self._pid = os.getpid()
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop evaluating and deliver queued notifications (up to ``timeout``); idempotent."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self._thread = None
        self._resign()
        self.dispatcher.shutdown(timeout)

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    # --------------------------------------------------------------- asyncio

    async def run_async(self) -> None:
        """Evaluate every ``interval`` seconds until cancelled (off the event loop)."""
        self._leadership.resume()
        await asyncio.to_thread(self._prime)
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self._safe_evaluate)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """An ASGI lifespan: ``Starlette(lifespan=engine.lifespan)``; stops on shutdown."""
        task = asyncio.create_task(self.run_async(), name="eventmon-alerts")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._resign()
            await asyncio.to_thread(self.dispatcher.shutdown, 5.0)
