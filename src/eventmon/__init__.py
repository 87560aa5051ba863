"""eventmon: request metrics, alerts and auto-scaling for Python web apps.

One line of middleware gives latency histograms with exact percentiles and
Prometheus buckets, request counters, and a realtime snapshot::

    from eventmon.asgi import EventmonMiddleware
    app.add_middleware(EventmonMiddleware)

    import eventmon
    eventmon.get_realtime_metrics().to_dict()

``import eventmon`` imports no web framework and no exporter library.
"""

from __future__ import annotations

from eventmon._exceptions import (
    AcceleratorWarning,
    ConfigurationError,
    EventmonError,
    RuleError,
)
from eventmon.collector import (
    MetricsCollector,
    SeriesSnapshot,
    default_collector,
    set_default_collector,
)
from eventmon.core.histogram import DEFAULT_BUCKETS, DEFAULT_BUCKETS_MS, LatencyHistogram
from eventmon.snapshot import RealtimeMetrics

__version__ = "0.1.0"


def get_realtime_metrics() -> RealtimeMetrics:
    """The realtime snapshot of the process-wide collector."""
    return default_collector().get_realtime_metrics()


getRealtimeMetrics = get_realtime_metrics  # the original JavaScript API's name


def increment_counter(name: str, labels: dict[str, str] | None = None, amount: float = 1) -> None:
    """Add to a counter of the process-wide collector, e.g. ``db_connection_errors``."""
    default_collector().increment_counter(name, labels, amount)


__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_BUCKETS_MS",
    "AcceleratorWarning",
    "ConfigurationError",
    "EventmonError",
    "LatencyHistogram",
    "MetricsCollector",
    "RealtimeMetrics",
    "RuleError",
    "SeriesSnapshot",
    "__version__",
    "default_collector",
    "getRealtimeMetrics",
    "get_realtime_metrics",
    "increment_counter",
    "set_default_collector",
]
