"""The Exporter protocol and the periodic loop that feeds exporters.

An exporter receives an :class:`ExportSnapshot` (everything eventmon knows at one
moment: the realtime snapshot, every request series, per-endpoint percentiles,
user counters) and sends it somewhere. :class:`PeriodicExportLoop` takes a
snapshot every ``interval`` seconds on a daemon thread and hands it to each
exporter; a failing exporter is logged and counted
(``eventmon_internal_errors_total{where="export.<Name>"}``), never raised into
the application, and never stops the others.

Example::

    loop = PeriodicExportLoop(collector, [JsonExporter("/run/app/metrics.json")], interval=5)
    loop.start()
    ...
    loop.shutdown()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from eventmon._exceptions import ConfigurationError

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector
    from eventmon.core.aggregates import SeriesSnapshot
    from eventmon.core.user_histograms import HistogramSnapshot
    from eventmon.snapshot import RealtimeMetrics

__all__ = ["ExportSnapshot", "Exporter", "PeriodicExportLoop", "metrics_view", "take_snapshot"]

logger = logging.getLogger("eventmon")

_PERCENTILES = (50.0, 95.0, 99.0)


@dataclass(frozen=True, slots=True)
class ExportSnapshot:
    """What eventmon knows at one moment, as exporters see it.

    Times are seconds except in ``realtime`` (milliseconds, like the dashboard's
    API). ``percentiles`` maps an endpoint to its (p50, p95, p99) since start.
    ``workers`` is the number of worker processes merged (1 without aggregation).
    ``histograms``: your histograms (:meth:`~eventmon.MetricsCollector.observe_histogram`).
    """

    timestamp: float
    realtime: RealtimeMetrics
    series: tuple[SeriesSnapshot, ...]
    bounds: tuple[float, ...]
    percentiles: Mapping[str, tuple[float, float, float]]
    in_progress: int
    counters: Mapping[str, Mapping[tuple[str, ...], float]]
    counter_labels: Mapping[str, tuple[str, ...]]
    slow_requests: Mapping[tuple[str, ...], int]
    workers: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)
    histograms: Mapping[str, HistogramSnapshot] = field(default_factory=dict)


@runtime_checkable
class Exporter(Protocol):
    """Something that sends snapshots somewhere; ``shutdown`` is idempotent."""

    def export(self, snapshot: ExportSnapshot) -> None:
        """Send one snapshot (may raise: the loop logs and counts it)."""

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Send anything buffered; ``True`` if done within ``timeout`` seconds."""

    def shutdown(self, timeout: float = 10.0) -> None:
        """Flush and release resources; later calls do nothing."""


def metrics_view(collector: MetricsCollector) -> Any:
    """What a scrape or an export reads: the collector, or all workers merged.

    With worker aggregation on (:mod:`eventmon.exporters.multiprocess`) this is the
    merged state of every worker, live and exited; otherwise the collector itself.
    """
    mp = getattr(collector, "multiprocess", None)
    if mp is not None:
        return mp.view()
    return collector


def _endpoint_percentiles(view: Any, ps: Sequence[float]) -> dict[str, list[float]]:
    at = getattr(view, "percentiles_at", None)
    if at is not None:
        result: dict[str, list[float]] = at(ps)
        return result
    out = {}
    for endpoint in view.endpoints():
        h = view.histogram(endpoint)
        if h.total:
            out[endpoint] = h.percentiles(ps)
    return out


def take_snapshot(collector: MetricsCollector) -> ExportSnapshot:
    """Read everything exporters need, merged over workers when aggregation is on."""
    view = metrics_view(collector)
    counters = view.counters()
    return ExportSnapshot(
        timestamp=time.time(),
        realtime=collector.get_realtime_metrics(),
        series=tuple(view.series()),
        bounds=tuple(view.bounds),
        percentiles={
            ep: (v[0], v[1], v[2]) for ep, v in _endpoint_percentiles(view, _PERCENTILES).items()
        },
        in_progress=view.in_progress(),
        counters=counters,
        counter_labels={name: tuple(view.counter_labels(name)) for name in counters},
        slow_requests=view.slow_requests(),
        workers=int(getattr(view, "workers", 1)),
        histograms=view.histograms(),
    )


class PeriodicExportLoop:
    """Every ``interval`` seconds, snapshot the collector and export to each exporter.

    Runs on a daemon thread started by :meth:`start`. :meth:`export_once` does
    one round on the caller's thread (tests, shutdown). :meth:`shutdown` stops
    the thread, runs a last round, and shuts every exporter down; idempotent.
    """

    def __init__(
        self,
        collector: MetricsCollector,
        exporters: Iterable[Exporter],
        *,
        interval: float = 10.0,
    ) -> None:
        if not (isinstance(interval, (int, float)) and interval > 0):
            raise ConfigurationError(f"interval must be a number of seconds > 0, got {interval!r}")
        self.exporters = list(exporters)
        for e in self.exporters:
            if not isinstance(e, Exporter):
                raise ConfigurationError(
                    f"{e!r} is not an Exporter: it needs export(), force_flush() and shutdown()"
                )
        self.collector = collector
        self.interval = float(interval)
        self.rounds = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._shut = False

    def start(self) -> PeriodicExportLoop:
        """Start the background thread (once); returns ``self``."""
        with self._lock:
            if self._thread is None and not self._shut:
                self._thread = threading.Thread(
                    target=self._run, name="eventmon-export", daemon=True
                )
                self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.export_once()

    def export_once(self) -> int:
        """One round now; returns how many exporters failed. Never raises."""
        try:
            snapshot = take_snapshot(self.collector)
        except Exception:
            self.failures += 1
            self.collector.internal_error("export.snapshot")
            return len(self.exporters)
        failed = 0
        for exporter in self.exporters:
            try:
                exporter.export(snapshot)
            except Exception:
                failed += 1
                self.collector.internal_error(f"export.{type(exporter).__name__}")
        self.rounds += 1
        self.failures += failed
        return failed

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Export now and flush every exporter; ``False`` if any did not finish."""
        deadline = time.monotonic() + timeout
        ok = self.export_once() == 0
        for exporter in self.exporters:
            try:
                ok = exporter.force_flush(max(0.0, deadline - time.monotonic())) and ok
            except Exception:
                ok = False
                self.collector.internal_error(f"export.{type(exporter).__name__}.flush")
        return ok

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the thread, export a last time, shut exporters down; idempotent."""
        with self._lock:
            if self._shut:
                return
            self._shut = True
            thread = self._thread
        deadline = time.monotonic() + timeout
        self._stop.set()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.export_once()
        for exporter in self.exporters:
            try:
                exporter.shutdown(max(0.0, deadline - time.monotonic()))
            except Exception:
                self.collector.internal_error(f"export.{type(exporter).__name__}.shutdown")
