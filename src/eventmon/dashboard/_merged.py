"""Where the dashboard's figures come from under worker aggregation.

Every worker's state merged (:class:`~eventmon.exporters.multiprocess.MergedView`),
read at most twice a second however many viewers poll, and a
:class:`~eventmon.alerting._merged.MergedSampler` that turns its cumulative
counts into the snapshot's windowed rates.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventmon.alerting._merged import MergedSampler
    from eventmon.collector import MetricsCollector
    from eventmon.exporters.multiprocess import MergedView
    from eventmon.snapshot import RealtimeMetrics

__all__ = ["MergedFigures"]


class MergedFigures:
    """The merged view of ``collector``'s aggregation directory, cached for ``ttl`` seconds."""

    def __init__(self, collector: MetricsCollector, ttl: float) -> None:
        self.collector = collector
        self.ttl = ttl
        self._lock = threading.Lock()
        self._view: tuple[float, MergedView] | None = None
        self._sampler: MergedSampler | None = None

    def view(self, now: float) -> MergedView | None:
        """Every worker merged, or None without worker aggregation."""
        agg = self.collector.multiprocess
        if agg is None:
            return None
        with self._lock:
            cached = self._view
            if cached is not None and now - cached[0] < self.ttl:
                return cached[1]
        view: MergedView = agg.view()
        with self._lock:
            self._view = (now, view)
        return view

    def realtime(self, view: MergedView, now: float) -> RealtimeMetrics:
        """The realtime snapshot of ``view``: rates over the collector's window."""
        from eventmon.alerting._merged import MergedSampler

        window = float(self.collector.window_seconds)
        with self._lock:
            if self._sampler is None:
                # A sample per 1/12 window is plenty for a window's rate; not one per call.
                self._sampler = MergedSampler(window, step=window / 12)
            return self._sampler.realtime(view, now)
