"""Every worker merged, read like a collector by the exporters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eventmon.core.aggregates import SeriesSnapshot
from eventmon.core.histogram import HdrLayout, LatencyHistogram
from eventmon.core.registry import extra_label_pairs, request_labels
from eventmon.core.user_histograms import HistogramSnapshot
from eventmon.exporters.multiprocess._state import _Merged

if TYPE_CHECKING:
    from eventmon.exporters.prometheus import ProcessSample


class MergedView:
    """All workers merged, read like a collector by :func:`render_families`."""

    def __init__(
        self,
        merged: _Merged,
        bounds: tuple[float, ...],
        quantiles: tuple[float, ...],
        layout: HdrLayout,
    ) -> None:
        self._m = merged
        self.bounds = bounds
        self.quantiles = quantiles
        self.layout = layout
        self.workers = merged.workers
        #: The workers' extra request label names (``header_labels``, ``label_callbacks``).
        self.extra_label_names = merged.extra_labels

    def series(self) -> list[SeriesSnapshot]:
        names = self.extra_label_names
        rows = self._m.series.items()
        return [
            SeriesSnapshot(
                method,
                endpoint,
                status,
                request_labels(method, endpoint, status) + extra_label_pairs(names, extra),
                count,
                total,
                tuple(buckets),
                tuple(extra),
            )
            for (method, endpoint, status, *extra), (count, total, buckets) in rows
        ]

    def endpoints(self) -> list[str]:
        return [ep for ep, h in self._m.hdr.items() if any(h.values())]

    def histogram(self, endpoint: str) -> LatencyHistogram:
        """One endpoint's latency histogram, summed over every worker."""
        h = LatencyHistogram(self.layout)
        for i, c in self._m.hdr.get(endpoint, {}).items():
            if c > 0:
                h.record_index(i, c)
        return h

    def percentiles_at(self, ps: Sequence[float]) -> dict[str, list[float]]:
        """Per endpoint, percentiles ``ps`` (0–100) in seconds, from the merged HDR counts."""
        out: dict[str, list[float]] = {}
        for endpoint in self._m.hdr:
            h = self.histogram(endpoint)
            if h.total:
                out[endpoint] = h.percentiles(ps)
        return out

    def endpoint_percentiles(self) -> dict[str, list[float]]:
        return self.percentiles_at([q * 100.0 for q in self.quantiles])

    def in_progress(self) -> int:
        return max(self._m.inflight, 0)

    def slow_requests(self) -> dict[tuple[str, ...], int]:
        return dict(self._m.slow)

    def internal_errors(self) -> dict[str, int]:
        return dict(self._m.errors)

    def counters(self) -> dict[str, dict[tuple[str, ...], float]]:
        return {k: dict(v) for k, v in self._m.counters.items()}

    def counter_labels(self, name: str) -> tuple[str, ...]:
        return self._m.counter_labels.get(name, ())

    def counter_help(self, name: str) -> str:
        """The help text a worker gave to ``define_counter`` (``""`` if none)."""
        return self._m.counter_help.get(name, "")

    def gauges(self) -> dict[str, dict[tuple[str, ...], float]]:
        return {k: dict(v) for k, v in self._m.gauges.items()}

    def gauge_labels(self, name: str) -> tuple[str, ...]:
        return self._m.gauge_labels.get(name, ("worker",))

    def histograms(self) -> dict[str, HistogramSnapshot]:
        out = {}
        for name, per in self._m.histograms.items():
            help_text, names, bounds = self._m.histogram_meta[name]
            samples = {k: (tuple(row[:-1]), float(row[-1])) for k, row in per.items()}
            out[name] = HistogramSnapshot(name, help_text, names, bounds, samples)
        return out

    def size_histograms(self) -> dict[int, dict[tuple[str, ...], tuple[list[int], float]]]:
        """Body sizes in bytes, summed over every worker; keyed 0 requests, 1 responses."""
        out: dict[int, dict[tuple[str, ...], tuple[list[int], float]]] = {0: {}, 1: {}}
        for (kind, *values), row in self._m.sizes.items():
            out[kind][tuple(values)] = ([int(c) for c in row[:-1]], float(row[-1]))
        return out

    def exemplars_by_series(
        self,
    ) -> dict[tuple[Any, str, str], dict[int, tuple[str, float, float]]]:
        """The newest exemplar per series and bucket over every worker (as a collector's)."""
        out: dict[tuple[Any, str, str], dict[int, tuple[str, float, float]]] = {}
        for (method, endpoint, status, *extra), per in self._m.exemplars.items():
            recorded: Any = (endpoint, *extra) if extra else endpoint
            out[(method, recorded, status)] = dict(per)
        return out

    def processes(self) -> list[ProcessSample]:
        """Per live worker (``worker="<pid>"``) CPU and memory; exited workers' CPU."""
        out = sorted(self._m.processes)
        out.append(('worker="exited"', self._m.cpu, None))
        return out
