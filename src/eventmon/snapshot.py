"""The realtime snapshot: what a dashboard or an alert rule reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["RealtimeMetrics"]

_CAMEL = {
    "active_connections": "activeConnections",
    "requests_per_second": "requestsPerSecond",
    "average_response_time": "averageResponseTime",
    "error_rate": "errorRate",
    "memory_usage": "memoryUsage",
    "cpu_usage": "cpuUsage",
    "memory_rss_bytes": "memoryRssBytes",
    "p50_response_time": "p50ResponseTime",
    "p95_response_time": "p95ResponseTime",
    "p99_response_time": "p99ResponseTime",
    "total_requests": "totalRequests",
    "window_seconds": "windowSeconds",
    "timestamp": "timestamp",
}


@dataclass(frozen=True, slots=True)
class RealtimeMetrics:
    """Live figures over the collector's sliding window (default 60 s).

    Times are in milliseconds; rates are shares (0.05 = 5 %); usages are percent.
    ``to_dict()`` gives the camelCase keys a JavaScript dashboard expects::

        >>> RealtimeMetrics(3, 120.5, 42.0, 0.01, 35.2, 12.5).to_dict()["requestsPerSecond"]
        120.5
    """

    active_connections: int
    """Requests in progress right now."""
    requests_per_second: float
    """Completed requests per second over the window."""
    average_response_time: float
    """Mean response time over the window, in milliseconds."""
    error_rate: float
    """Share of requests in the window that ended in a 5xx status (0–1)."""
    memory_usage: float
    """Resident memory of this process, percent of physical memory."""
    cpu_usage: float
    """CPU used by this process since the previous reading, percent of the machine."""
    memory_rss_bytes: int = 0
    """Resident memory of this process in bytes."""
    p50_response_time: float = 0.0
    """Median response time (ms) over the last one to two windows."""
    p95_response_time: float = 0.0
    """95th percentile response time (ms) over the last one to two windows."""
    p99_response_time: float = 0.0
    """99th percentile response time (ms) over the last one to two windows."""
    total_requests: int = 0
    """Requests observed since the collector started."""
    window_seconds: float = 60.0
    """Span the rates were computed over (shorter while the first window fills)."""
    timestamp: float = 0.0
    """Wall-clock time (Unix seconds) the snapshot was taken."""

    def to_dict(self) -> dict[str, Any]:
        """The snapshot with camelCase keys (activeConnections, requestsPerSecond, ...)."""
        return {_CAMEL[k]: v for k, v in asdict(self).items()}

    @property
    def availability(self) -> float:
        """Share of requests in the window that did not fail with a 5xx (0–1)."""
        return 1.0 - self.error_rate
