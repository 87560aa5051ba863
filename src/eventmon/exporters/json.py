"""JSON exporter: the realtime snapshot plus per-endpoint figures, for dashboards.

:func:`snapshot_json` returns a plain ``dict`` that ``json.dumps`` accepts: the
camelCase realtime snapshot (``RealtimeMetrics.to_dict()``) under ``realtime``,
and per endpoint the request count, 5xx count and share, and p50/p95/p99 in
milliseconds from the HDR histograms (since start). Under worker aggregation
(:mod:`eventmon.exporters.multiprocess`) counts and percentiles are those of all
workers merged; the realtime window stays this worker's own.

Example::

    >>> from eventmon import MetricsCollector
    >>> c = MetricsCollector(slow_hooks=())
    >>> c.observe("GET", "/events/{event_id}", 200, 0.020)
    >>> snapshot_json(c)["endpoints"]["/events/{event_id}"]["count"]
    1
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventmon._exceptions import ConfigurationError
from eventmon.exporters.base import ExportSnapshot, take_snapshot

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector

__all__ = ["JsonExporter", "snapshot_json", "snapshot_to_json"]


def snapshot_json(collector: MetricsCollector) -> dict[str, Any]:
    """The realtime snapshot and per-endpoint count, error rate and p50/p95/p99 (ms)."""
    return snapshot_to_json(take_snapshot(collector))


def snapshot_to_json(snapshot: ExportSnapshot) -> dict[str, Any]:
    """The JSON document of an :class:`~eventmon.exporters.base.ExportSnapshot`."""
    per: dict[str, list[int]] = {}
    for s in snapshot.series:
        acc = per.setdefault(s.endpoint, [0, 0])
        acc[0] += s.count
        if s.status_code.isdigit() and int(s.status_code) >= 500:
            acc[1] += s.count
    endpoints: dict[str, dict[str, Any]] = {}
    for endpoint in sorted(per):
        count, errors = per[endpoint]
        p50, p95, p99 = snapshot.percentiles.get(endpoint, (0.0, 0.0, 0.0))
        endpoints[endpoint] = {
            "count": count,
            "errorCount": errors,
            "errorRate": errors / count if count else 0.0,
            "p50ResponseTime": p50 * 1000.0,
            "p95ResponseTime": p95 * 1000.0,
            "p99ResponseTime": p99 * 1000.0,
        }
    return {
        "timestamp": snapshot.timestamp,
        "workers": snapshot.workers,
        "totalRequests": sum(v[0] for v in per.values()),
        "inProgress": snapshot.in_progress,
        "realtime": snapshot.realtime.to_dict(),
        "endpoints": endpoints,
        "counters": {
            name: [
                {
                    "labels": dict(zip(snapshot.counter_labels.get(name, ()), k, strict=False)),
                    "value": v,
                }
                for k, v in sorted(values.items())
            ]
            for name, values in sorted(snapshot.counters.items())
        },
        "histograms": {
            name: [
                {
                    "labels": dict(zip(h.label_names, k, strict=False)),
                    "buckets": [[b, c] for b, c in zip(h.bounds, accumulate(counts), strict=False)],
                    "sum": total,
                    "count": sum(counts),
                }
                for k, (counts, total) in sorted(h.samples.items())
            ]
            for name, h in sorted(snapshot.histograms.items())
        },
    }


class JsonExporter:
    """An :class:`~eventmon.exporters.base.Exporter` writing the JSON document.

    Args:
        sink: a path (written atomically: temp file then rename) or a callable
            taking the document (a ``dict``).
    """

    def __init__(self, sink: str | Path | Callable[[dict[str, Any]], object]) -> None:
        if not (callable(sink) or isinstance(sink, (str, Path))):
            raise ConfigurationError(f"sink must be a path or a callable, got {sink!r}")
        self.sink = sink
        self.last: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def export(self, snapshot: ExportSnapshot) -> None:
        """Turn ``snapshot`` into the JSON document and hand it to the sink."""
        with self._lock:
            if self._closed:
                return
            doc = snapshot_to_json(snapshot)
            self.last = doc
            if callable(self.sink):
                self.sink(doc)
                return
            path = Path(self.sink)
            tmp = path.with_name(f".{path.name}.{time.monotonic_ns()}.tmp")
            tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
            tmp.replace(path)

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Nothing is buffered: always ``True``."""
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting snapshots; idempotent."""
        with self._lock:
            self._closed = True
