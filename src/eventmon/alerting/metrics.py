"""The metrics alert rules read, sampled from a :class:`~eventmon.MetricsCollector`.

Built in (units in brackets; ``{endpoint="..."}`` selects one endpoint):

* from the realtime snapshot: ``avg_response_time`` [ms], ``error_rate`` [share],
  ``availability`` [share], ``requests_per_second``, ``active_connections``,
  ``cpu_usage`` [percent], ``memory_usage`` [percent], ``memory_rss_bytes``;
* percentiles over the last one to two windows: ``p50_response_time``,
  ``p90_response_time``, ``p95_response_time``, ``p99_response_time`` [ms];
* ``scale_out_time`` [s]: how long the last scale-out took (set by the autoscaler);
* every counter the app counts: ``<name>`` is its increase over the window
  (so an alert clears once errors stop) and ``<name>_total`` its running total;
  every gauge the app sets, by name (the largest value across label sets).

With worker aggregation on (``EVENTMON_MULTIPROC_DIR``) every value is the
instance's: read from the workers' merged counts (:mod:`eventmon.alerting._merged`).

``db_connection_errors`` always exists; count one with
:func:`count_db_connection_error`, or let :func:`instrument_sqlalchemy` do it.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from eventmon.alerting._merged import _PCT, MergedSampler
from eventmon.alerting.expr import MetricInfo
from eventmon.collector import MetricsCollector, default_collector
from eventmon.core.histogram import LatencyHistogram

__all__ = [
    "BUILTIN_METRICS",
    "DB_CONNECTION_ERRORS",
    "SCALE_OUT_GAUGE",
    "RuleMetrics",
    "count_db_connection_error",
    "instrument_sqlalchemy",
]

DB_CONNECTION_ERRORS = "db_connection_errors"
#: gauge the autoscaler's events set: seconds the last scale-out took
SCALE_OUT_GAUGE = "eventmon_last_scale_out_seconds"  # the autoscaler exports it too

_SNAPSHOT = frozenset(
    {
        "avg_response_time",
        "error_rate",
        "availability",
        "requests_per_second",
        "active_connections",
        "cpu_usage",
        "memory_usage",
        "memory_rss_bytes",
    }
)
_EP = frozenset({"endpoint"})

BUILTIN_METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("avg_response_time", "ms", help="mean response time over the window"),
        MetricInfo("error_rate", "ratio", help="share of requests that ended in a 5xx"),
        MetricInfo("availability", "ratio", help="share of requests that did not end in a 5xx"),
        MetricInfo("requests_per_second", "", help="completed requests per second"),
        MetricInfo("active_connections", "", help="requests in progress"),
        MetricInfo("cpu_usage", "percent", help="CPU of this process, percent of the machine"),
        MetricInfo("memory_usage", "percent", help="resident memory, percent of the machine"),
        MetricInfo("memory_rss_bytes", "bytes", help="resident memory in bytes"),
        MetricInfo("scale_out_time", "s", help="seconds the last scale-out took"),
        *(MetricInfo(n, "ms", _EP, help=f"p{int(p)} response time") for n, p in _PCT.items()),
    )
}


def count_db_connection_error(collector: MetricsCollector | None = None, amount: int = 1) -> None:
    """Count a failed database connection (the ``db_connection_errors`` metric)."""
    (collector or default_collector()).increment_counter(DB_CONNECTION_ERRORS, amount=amount)


def instrument_sqlalchemy(engine: Any, collector: MetricsCollector | None = None) -> None:
    """Count connection failures of a SQLAlchemy ``Engine`` as ``db_connection_errors``.

    Listens to SQLAlchemy's ``handle_error`` event and counts the errors it
    flags as disconnects or that happen while connecting.
    """
    from sqlalchemy import event

    target = collector or default_collector()
    target.increment_counter(DB_CONNECTION_ERRORS, amount=0)  # exported from the start

    def on_error(ctx: Any) -> None:
        connecting = getattr(ctx, "is_pre_ping", False) or getattr(ctx, "connection", 1) is None
        if ctx.is_disconnect or connecting:
            target.increment_counter(DB_CONNECTION_ERRORS)

    event.listen(engine, "handle_error", on_error)


class RuleMetrics:
    """Samples the collector into the flat ``{metric key: value}`` mapping rules read.

    Counter increases and per-endpoint percentiles need the past, so this keeps
    a few samples per metric that rules read (at most one window's worth).

    Args:
        collector: where to read from.
        declare: names of counters or gauges the app will count or set later
            (a rule may name them before the first increment).
        clock: monotonic seconds; the collector's clock by default.
    """

    def __init__(
        self,
        collector: MetricsCollector,
        *,
        declare: Iterable[str] = (),
        clock: Any = None,
    ) -> None:
        self.collector = collector
        self.clock = clock or collector.clock
        self.window = float(collector.window_seconds)
        self.declared = set(declare) | {DB_CONNECTION_ERRORS}
        self._lock = threading.Lock()
        self._counter_hist: dict[str, deque[tuple[float, float]]] = {}
        self._ep_hist: dict[str, deque[tuple[float, LatencyHistogram]]] = {}
        self._merged: MergedSampler | None = None

    def catalog(self) -> dict[str, MetricInfo]:
        """Every metric a rule may name right now."""
        out = dict(BUILTIN_METRICS)
        counters = set(self.collector.counters()) | self.collector.counter_names()
        for name in self.declared | {n[:-6] if n.endswith("_total") else n for n in counters}:
            if name not in out:
                out[name] = MetricInfo(name, "", help=f"increase of counter {name} over the window")
                out[name + "_total"] = MetricInfo(name + "_total", "", help=f"counter {name}")
        for name in self.collector.gauges():
            out.setdefault(name, MetricInfo(name, "", help=f"gauge {name}"))
        return out

    def kind(self, name: str) -> str:
        """``builtin``, ``counter``, ``counter_total`` or ``gauge``."""
        if name in BUILTIN_METRICS:
            return "builtin"
        if name in self.collector.gauges():
            return "gauge"
        if name.endswith("_total") and name[:-6] in self.catalog():
            return "counter_total"
        return "counter"

    def sample(
        self, refs: Iterable[tuple[str, str, tuple[tuple[str, str], ...]]]
    ) -> dict[str, float]:
        """Values for ``(key, name, labels)`` triples, read once from the collector."""
        with self._lock:
            return self._sample(list(refs))

    def _sample(self, refs: list[tuple[str, str, tuple[tuple[str, str], ...]]]) -> dict[str, float]:
        now = self.clock()
        c = self.collector
        if c.multiprocess is not None:
            # Worker aggregation: the instance's figures, not this worker's slice.
            if self._merged is None:
                self._merged = MergedSampler(self.window)
            return self._merged.sample(
                c.multiprocess.view(),
                refs,
                now,
                builtin=BUILTIN_METRICS,
                declared=self.declared,
                scale_out_gauge=SCALE_OUT_GAUGE,
            )
        out: dict[str, float] = {}
        names = {name for _, name, _ in refs}
        snap = None
        if names & _SNAPSHOT:
            snap = c.get_realtime_metrics()
        recent: list[float] | None = None
        counters = c.counters() if names - set(BUILTIN_METRICS) else {}
        gauges = c.gauges() if names - set(BUILTIN_METRICS) else {}
        for key, name, labels in refs:
            if key in out:
                continue
            if snap is not None and name in _SNAPSHOT and name != "availability":
                attr = "average_response_time" if name == "avg_response_time" else name
                out[key] = float(getattr(snap, attr))
            elif snap is not None and name == "availability":
                out[key] = 1.0 - snap.error_rate
            elif name in _PCT:
                endpoint = dict(labels).get("endpoint")
                if endpoint is None:
                    if recent is None:
                        recent = c.recent_histogram().percentiles(list(_PCT.values()))
                    out[key] = recent[list(_PCT).index(name)] * 1000.0
                else:
                    h = self._endpoint_window(endpoint, now)
                    out[key] = h.percentile(_PCT[name]) * 1000.0
            elif name == "scale_out_time":
                vals = gauges.get(SCALE_OUT_GAUGE) or c.gauges().get(SCALE_OUT_GAUGE) or {}
                out[key] = max(vals.values()) if vals else 0.0
            elif name in gauges:
                out[key] = max(gauges[name].values()) if gauges[name] else math.nan
            elif name.endswith("_total") and name[:-6] in counters:
                out[key] = float(sum(counters[name[:-6]].values()))
            elif name.endswith("_total") and name[:-6] in self.declared:
                out[key] = 0.0
            else:
                total = float(sum(counters.get(name, {}).values()))
                out[key] = self._increase(name, total, now)
        return out

    def _increase(self, name: str, total: float, now: float) -> float:
        hist = self._counter_hist.get(name)
        if hist is None:
            # Counted before the first look: count it as new during the first window.
            hist = self._counter_hist[name] = deque([(now, 0.0)])
        hist.append((now, total))
        # Keep one sample at or before the window's start as the baseline.
        while len(hist) > 1 and hist[1][0] <= now - self.window:
            hist.popleft()
        base = hist[0][1]
        return total - base if total >= base else total  # a reset counts from zero

    def _endpoint_window(self, endpoint: str, now: float) -> LatencyHistogram:
        current = self.collector.histogram(endpoint)
        hist = self._ep_hist.get(endpoint)
        if hist is None:
            hist = self._ep_hist[endpoint] = deque([(now, LatencyHistogram(current.layout))])
        hist.append((now, current))
        while len(hist) > 1 and hist[1][0] <= now - self.window:
            hist.popleft()
        base = hist[0][1]
        diff = current.copy()
        counts = diff.counts
        for i, n in enumerate(base.counts):
            if n:
                counts[i] -= n
        diff.rebuild_groups()
        return diff

    def values_for(
        self, refs: Mapping[str, tuple[str, tuple[tuple[str, str], ...]]]
    ) -> dict[str, float]:
        """Like :meth:`sample`, from ``{key: (name, labels)}``."""
        return self.sample((k, n, lbl) for k, (n, lbl) in refs.items())
