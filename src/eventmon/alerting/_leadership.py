"""Which worker's alert engine evaluates under worker aggregation, and what the others show.

Every worker may start an :class:`~eventmon.alerting.AlertEngine`. Its loop polls a
:class:`Leadership` at each tick: the one worker holding the directory's evaluator lock
(``engine.lock``, see :mod:`eventmon.exporters.multiprocess._leader`) evaluates, notifies
and publishes its alerts' states to ``alerts.json``; the others read that file, so every
worker's dashboard shows the same alerts. Without worker aggregation an engine always leads.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector
    from eventmon.exporters.multiprocess._leader import EvaluatorLock

__all__ = ["EVALUATOR_GAUGE", "Leadership"]

#: Gauge set under worker aggregation: 1 in the worker whose engine evaluates, 0 elsewhere.
EVALUATOR_GAUGE = "eventmon_alert_evaluator"

logger = logging.getLogger("eventmon.alerting")


class Leadership:
    """One engine's part in the election of the evaluator of ``collector``'s directory."""

    def __init__(self, collector: MetricsCollector) -> None:
        self.collector = collector
        self._lock: EvaluatorLock | None = None
        self._leading = False
        self._resigned = False  # stopping: an evaluation still running must not lead again
        # poll() against resign()/resume() from another thread (stop(), a lifespan's end).
        self._mutex = threading.Lock()
        self._mutex_pid = os.getpid()

    @property
    def leading(self) -> bool:
        """Whether this engine evaluates: always in one process, else while it holds the lock."""
        if self.collector.multiprocess is None:
            return True
        return self._leading and self._lock is not None and self._lock.held

    def _guard(self) -> threading.Lock:
        if self._mutex_pid != os.getpid():  # a forked child: the parent's may have been held
            self._mutex = threading.Lock()
            self._mutex_pid = os.getpid()
        return self._mutex

    def poll(self) -> tuple[bool, bool]:
        """Take or keep the lock if aggregated: (whether to evaluate now, whether that is new)."""
        with self._guard():
            return self._poll()

    def _poll(self) -> tuple[bool, bool]:
        if self._resigned:
            return False, False
        agg = self.collector.multiprocess
        lock = self._lock
        if agg is None:
            if lock is not None:
                lock.release()
                self._lock = None
            return True, False
        if lock is None or lock.directory != agg.directory:
            from eventmon.exporters.multiprocess._leader import EvaluatorLock

            if lock is not None:
                lock.release()
            lock = self._lock = EvaluatorLock(agg.directory)
        leading = lock.poll()
        took_over = leading and not self._leading
        if took_over:
            logger.info("eventmon: pid %d now evaluates the alert rules", os.getpid())
        self._leading = leading
        self.collector.set_gauge(EVALUATOR_GAUGE, 1.0 if leading else 0.0)
        return leading, took_over

    def resign(self) -> None:
        """Release the lock for good (the engine stops): another worker takes over at
        its next tick, and an evaluation of this engine still running cannot take it
        back. :meth:`resume` undoes it when the engine starts again."""
        with self._guard():
            self._resign()

    def _resign(self) -> None:
        self._resigned = True
        lock = self._lock
        if lock is not None:
            lock.close()
            if self._leading and self.collector.multiprocess is not None:
                self.collector.set_gauge(EVALUATOR_GAUGE, 0.0)
        self._leading = False

    def resume(self) -> None:
        """Let this engine take part in the election again (it starts)."""
        with self._guard():
            self._resume()

    def _resume(self) -> None:
        self._resigned = False
        lock = self._lock
        if lock is not None:
            lock.reopen()

    def publish(self, alerts: list[dict[str, Any]], at: float) -> None:
        """Write the leader's alert states for the other workers (aggregated only).

        ``at``: the Unix time of the evaluation they come from.
        """
        agg = self.collector.multiprocess
        if agg is not None:
            from eventmon.exporters.multiprocess._leader import publish_alerts

            publish_alerts(agg.directory, alerts, at)

    def handed_over(self, now: float, max_age: float) -> list[dict[str, Any]]:
        """The previous leader's alert states, for a worker that has just taken over.

        Empty unless aggregated and the file was written at most ``max_age`` seconds
        before ``now`` (Unix times): an older file is not the last leader's word but
        an earlier server's, and adopting it would revive alerts long over.
        """
        agg = self.collector.multiprocess
        if agg is None:
            return []
        from eventmon.exporters.multiprocess._leader import read_published_alerts

        published = read_published_alerts(agg.directory)
        if published is None or published[0] is None or not 0 <= now - published[0] <= max_age:
            return []
        return published[1]

    def published(self) -> list[dict[str, Any]] | None:
        """The leader's published alert states, in a worker whose loop follows; else None."""
        agg = self.collector.multiprocess
        if agg is None or self._lock is None or self.leading:
            return None
        from eventmon.exporters.multiprocess._leader import read_alerts

        return read_alerts(agg.directory)
