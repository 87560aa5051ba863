"""The dashboard's JSON documents: the snapshot, its history samples, the endpoint table.

Pure functions of the figures they are given; :class:`~eventmon.dashboard.Dashboard`
decides where the figures come from (one collector or every worker merged) and caches.
The fields are documented in docs/dashboard.md.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from eventmon import __version__
from eventmon.core._native import ACCELERATOR, REASON

if TYPE_CHECKING:
    from eventmon.snapshot import RealtimeMetrics

__all__ = [
    "API_VERSION",
    "SORT_KEYS",
    "endpoint_rows",
    "endpoints_page",
    "history_point",
    "snapshot",
]

#: Bumped when a field of the JSON API changes meaning or disappears.
API_VERSION = 1

SORT_KEYS = ("endpoint", "count", "errors", "error_rate", "mean_ms", "p50_ms", "p95_ms", "p99_ms")


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _round(x: float, digits: int = 3) -> float:
    return round(_finite(float(x)), digits)


def snapshot(
    rt: RealtimeMetrics, *, endpoint_count: int, workers: int | None, started: float
) -> dict[str, Any]:
    """The ``api/snapshot`` document; ``workers`` is None without worker aggregation."""
    return {
        "apiVersion": API_VERSION,
        **{k: (_round(v) if isinstance(v, float) else v) for k, v in rt.to_dict().items()},
        "endpointCount": endpoint_count,
        # Worker aggregation: the figures are every worker's, merged.
        "aggregated": workers is not None,
        "workers": workers if workers is not None else 1,
        "uptimeSeconds": _round(time.time() - started, 1),
        # Which eventmon, and whether its C accelerator runs ("c") or not ("python").
        "version": __version__,
        "accelerator": ACCELERATOR,
        "acceleratorReason": REASON,
    }


def history_point(doc: dict[str, Any]) -> dict[str, float]:
    """The part of a snapshot document the charts plot."""
    return {
        "t": doc["timestamp"],
        "rps": doc["requestsPerSecond"],
        "avg": doc["averageResponseTime"],
        "p50": doc["p50ResponseTime"],
        "p95": doc["p95ResponseTime"],
        "p99": doc["p99ResponseTime"],
        "errorRate": doc["errorRate"],
        "active": doc["activeConnections"],
        "cpu": doc["cpuUsage"],
        "memory": doc["memoryUsage"],
    }


def endpoint_rows(source: Any) -> list[dict[str, Any]]:
    """One row per endpoint (count, errors, error rate, mean and percentiles).

    ``source`` is a collector or a merged view: both have ``series()``, ``quantiles``,
    ``endpoint_percentiles()`` and ``histogram(endpoint)``.
    """
    agg: dict[str, list[float]] = {}
    for s in source.series():
        row = agg.get(s.endpoint)
        if row is None:
            row = agg[s.endpoint] = [0, 0, 0.0]
        row[0] += s.count
        row[2] += s.sum
        if s.status_code.isdigit() and int(s.status_code) >= 500:
            row[1] += s.count
    quantiles = tuple(source.quantiles)
    pct = source.endpoint_percentiles()
    idx = {q: quantiles.index(q) for q in (0.5, 0.95, 0.99) if q in quantiles}
    rows: list[dict[str, Any]] = []
    for endpoint, (count, errors, total) in agg.items():
        values = pct.get(endpoint)
        row_doc: dict[str, Any] = {
            "endpoint": endpoint,
            "count": int(count),
            "errors": int(errors),
            "error_rate": _round(errors / count, 4) if count else 0.0,
            "mean_ms": _round(total / count * 1000.0) if count else 0.0,
        }
        for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
            i = idx.get(q)
            row_doc[key] = (
                _round(values[i] * 1000.0) if values is not None and i is not None else None
            )
        if idx.get(0.95) is None:
            row_doc["p95_ms"] = _round(source.histogram(endpoint).percentile(95) * 1000.0)
        rows.append(row_doc)
    return rows


def endpoints_page(
    rows: list[dict[str, Any]], *, page: int, per_page: int, sort: str, order: str, q: str
) -> dict[str, Any]:
    """The ``api/endpoints`` document: a sorted, filtered page of ``rows``."""
    if q:
        needle = q.lower()
        rows = [r for r in rows if needle in r["endpoint"].lower()]
    reverse = order != "asc"
    if sort == "endpoint":
        rows = sorted(rows, key=lambda r: r["endpoint"], reverse=reverse)
    else:
        rows = sorted(
            rows,
            key=lambda r: (r[sort] is not None, r[sort] or 0, r["endpoint"]),
            reverse=reverse,
        )
    total = len(rows)
    pages = max(1, math.ceil(total / per_page))
    page = min(max(1, page), pages)
    start = (page - 1) * per_page
    return {
        "total": total,
        "page": page,
        "pages": pages,
        "perPage": per_page,
        "sort": sort,
        "order": "desc" if reverse else "asc",
        "endpoints": rows[start : start + per_page],
    }
