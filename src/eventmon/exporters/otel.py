"""OpenTelemetry: eventmon's request metrics flow into a ``MeterProvider``.

Every request eventmon observes is recorded, with the exact duration eventmon
measured (seconds, not rounded), on the stable HTTP semantic-convention
instrument ``http.server.request.duration`` with the attributes ``http.route``,
``http.request.method``, ``http.response.status_code``, ``url.scheme`` and,
for 5xx, ``error.type``; extra request labels (``header_labels``,
``label_callbacks``) follow as attributes of their own names, with the
collector's label cap. ``http.server.active_requests`` reports requests in
progress. With ``size_metrics=True`` on an adapter, body sizes are recorded on
``http.server.request.body.size`` and ``http.server.response.body.size`` (bytes,
the same attributes). Your counters, gauges and histograms (``increment_counter``,
``set_gauge``, ``observe_histogram``) follow as OpenTelemetry counters, gauges
and histograms of the same names (a histogram's own buckets advised), with
their labels as attributes.
Any reader then works: the Prometheus reader, OTLP, the in-memory reader.

The request path is not touched: the collector hands each folded batch of
observations to this bridge (a deque append), and the bridge records them
into OpenTelemetry when a reader collects (from the observable instrument's
callback) or when :meth:`OTelBridge.export` runs in a
:class:`~eventmon.exporters.base.PeriodicExportLoop`. Needs
``pip install eventmon[otel]``; imported lazily.

Example::

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    OTelBridge(collector, provider)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from eventmon._exceptions import ConfigurationError
from eventmon.core.registry import KNOWN_METHODS, OVERFLOW, UNMATCHED, counter_help_text
from eventmon.core.sizes import SIZE_BUCKETS

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector
    from eventmon.exporters.base import ExportSnapshot

__all__ = ["SEMCONV_DURATION_BUCKETS", "OTelBridge"]

#: The explicit bucket boundaries the HTTP semantic conventions advise (seconds).
SEMCONV_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip

# The same methods as the collector's label policy; OpenTelemetry spells "other" _OTHER.
_KNOWN_METHODS = KNOWN_METHODS


class OTelBridge:
    """Feeds a collector's observations into an OpenTelemetry ``MeterProvider``.

    Args:
        collector: the eventmon collector to read.
        meter_provider: where to record (default: the global provider).
        max_pending: observations buffered between two collections; past it the
            oldest are dropped and counted (``eventmon_internal_errors_total``).
        max_routes: distinct ``http.route`` values; others become ``__overflow__``.
        url_scheme: the ``url.scheme`` attribute of every request: ``"http"``
            (default) or ``"https"`` when this server itself terminates TLS
            (eventmon does not keep the scheme per request).
    """

    def __init__(
        self,
        collector: MetricsCollector,
        meter_provider: Any = None,
        *,
        max_pending: int = 1_000_000,
        max_routes: int = 1000,
        url_scheme: str = "http",
    ) -> None:
        if max_pending < 1 or max_routes < 1:
            raise ConfigurationError("max_pending and max_routes must be whole numbers >= 1")
        if url_scheme not in ("http", "https"):
            raise ConfigurationError(f"url_scheme must be 'http' or 'https', got {url_scheme!r}")
        self.url_scheme = url_scheme
        from opentelemetry import metrics
        from opentelemetry.metrics import CallbackOptions, Observation

        self._observation = Observation
        self.collector = collector
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        from eventmon import __version__

        meter = provider.get_meter("eventmon", __version__)
        self._duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=list(SEMCONV_DURATION_BUCKETS),
        )

        def active(options: CallbackOptions) -> Iterable[Any]:
            self.drain()
            return [Observation(self.collector.in_progress())]

        meter.create_observable_up_down_counter(
            "http.server.active_requests",
            callbacks=[active],
            unit="{request}",
            description="Number of active HTTP server requests.",
        )
        sizes = list(SIZE_BUCKETS)
        self._request_size = meter.create_histogram(
            "http.server.request.body.size",
            unit="By",
            description="Size of HTTP server request bodies.",
            explicit_bucket_boundaries_advisory=sizes,
        )
        self._response_size = meter.create_histogram(
            "http.server.response.body.size",
            unit="By",
            description="Size of HTTP server response bodies.",
            explicit_bucket_boundaries_advisory=sizes,
        )
        self._meter = meter
        # User counters and gauges, as synchronous instruments fed from the
        # collector's totals when a reader collects: an observable instrument
        # cannot be created while the SDK is collecting, a synchronous one can.
        self._counters: dict[str, Any] = {}
        self._counted: dict[tuple[str, tuple[str, ...]], float] = {}
        self._gauges: dict[str, Any] = {}
        self._histograms: dict[str, Any] = {}
        self._histogram_sets: dict[str, set[tuple[str, ...]]] = {}
        self.max_pending = max_pending
        self.max_routes = max_routes
        self.dropped = 0
        self._pending: deque[tuple[Any, ...]] = deque()
        self._pending_sizes: deque[tuple[Any, ...]] = deque()
        self._attrs: dict[tuple[str, Any, int], dict[str, Any]] = {}
        self._routes: set[str] = set()
        self._extra_sets: set[tuple[str, ...]] = set()
        self._drain_lock = threading.Lock()
        self._closed = False
        collector.add_fold_listener(self._on_batch)
        collector.add_histogram_listener(self._on_histogram)
        collector.sizes.add_listener(self._on_sizes)

    def _on_sizes(
        self, method: str, endpoint: Any, status: int, request_bytes: int, response_bytes: int
    ) -> None:
        # In the request's thread: only a deque append (recorded at the next drain).
        if self._closed:
            return
        pending = self._pending_sizes
        pending.append((method, endpoint, status, request_bytes, response_bytes))
        if len(pending) > self.max_pending:
            pending.popleft()
            self.dropped += 1
            self.collector.record_internal_error("otel.dropped")

    def _on_histogram(
        self, name: str, value: float, label_names: tuple[str, ...], values: tuple[str, ...]
    ) -> None:
        # Each value as it is observed: OpenTelemetry aggregates it itself, exactly.
        if self._closed:
            return
        hist = self._histograms.get(name)
        if hist is None:
            known = self.collector._user.user_histograms.get(name)
            bounds = list(known[1]) if known is not None else None
            hist = self._meter.create_histogram(
                name, description=f"Histogram {name}.", explicit_bucket_boundaries_advisory=bounds
            )
            self._histograms[name] = hist
        seen = self._histogram_sets.setdefault(name, set())
        if values not in seen:
            # The collector's label cap, so that no label value grows memory here either.
            if len(seen) >= self.collector.max_label_sets:
                values = tuple(OVERFLOW for _ in values)
            else:
                seen.add(values)
        hist.record(value, dict(zip(label_names, values, strict=False)))

    def _on_batch(self, batch: list[tuple[Any, ...]]) -> None:
        # Runs under the collector's journal lock: only a deque extend.
        if self._closed:
            return
        pending = self._pending
        pending.extend(batch)
        over = len(pending) - self.max_pending
        if over > 0:
            for _ in range(over):
                pending.popleft()
            self.dropped += over
            self.collector.record_internal_error("otel.dropped")

    def _attributes(self, method: str, endpoint: Any, status: int) -> dict[str, Any]:
        key = (method, endpoint, status)
        attrs = self._attrs.get(key)
        if attrs is None:
            extra: tuple[str, ...] = ()
            if type(endpoint) is tuple:  # (template, *extra label values)
                endpoint, *values = endpoint
                extra = self._admit_extra(tuple(values))
            elif type(endpoint) is not str:
                endpoint = UNMATCHED  # as the collector records it
            attrs = {
                "http.request.method": method if method in _KNOWN_METHODS else "_OTHER",
                "http.response.status_code": status,
                "url.scheme": self.url_scheme,
            }
            if endpoint != UNMATCHED:  # semconv: omit the route when none matched
                if endpoint not in self._routes and len(self._routes) >= self.max_routes:
                    endpoint = OVERFLOW
                else:
                    self._routes.add(endpoint)
                attrs["http.route"] = endpoint
            if status >= 500:
                attrs["error.type"] = str(status)
            attrs.update(zip(self.collector.extra_label_names, extra, strict=False))
            if len(self._attrs) < 10 * self.max_routes:
                self._attrs[key] = attrs
        return attrs

    def _admit_extra(self, values: tuple[str, ...]) -> tuple[str, ...]:
        """``values``, or all ``__overflow__`` past the collector's label cap."""
        seen = self._extra_sets
        if values not in seen:
            if len(seen) >= self.collector.max_label_sets:
                return tuple(OVERFLOW for _ in values)
            seen.add(values)
        return values

    def drain(self) -> int:
        """Record every pending observation into OpenTelemetry now; returns how many."""
        if self._closed:
            return 0
        try:
            self.collector.flush()
        except Exception:
            self.collector.internal_error("otel.flush")
        n = 0
        with self._drain_lock:
            pending = self._pending
            record = self._duration.record
            attributes = self._attributes
            while pending:
                method, endpoint, status, seconds, _ = pending.popleft()
                record(seconds, attributes(method, endpoint, status))
                n += 1
            sizes = self._pending_sizes
            while sizes:
                method, endpoint, status, request_bytes, response_bytes = sizes.popleft()
                attrs = attributes(method, endpoint, status)
                self._request_size.record(request_bytes, attrs)
                self._response_size.record(response_bytes, attrs)
            try:
                self._user_metrics()
            except Exception:
                self.collector.internal_error("otel.user_metrics")
        return n

    def _user_metrics(self) -> None:
        """Bring the user counters and gauges up to the collector's values."""
        c = self.collector
        counted = self._counted
        for name, per in c.counters().items():
            counter = self._counters.get(name)
            if counter is None:
                counter = self._meter.create_counter(name, description=counter_help_text(c, name))
                self._counters[name] = counter
            label_names = c.counter_labels(name)
            for values, total in per.items():
                key = (name, values)
                delta = total - counted.get(key, 0.0)
                if delta > 0:
                    counter.add(delta, dict(zip(label_names, values, strict=False)))
                    counted[key] = total
        for name, per_g in c.gauges().items():
            gauge = self._gauges.get(name)
            if gauge is None:
                gauge = self._meter.create_gauge(name, description=f"Gauge {name}.")
                self._gauges[name] = gauge
            label_names = c.gauge_labels(name)
            for values, value in per_g.items():
                gauge.set(value, dict(zip(label_names, values, strict=False)))

    # Exporter protocol: usable in a PeriodicExportLoop for push-style readers.
    def export(self, snapshot: ExportSnapshot) -> None:
        """Record what is pending (the snapshot itself is not needed)."""
        self.drain()

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Record what is pending; ``True``."""
        self.drain()
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        """Record what is pending and stop; idempotent."""
        if not self._closed:
            self.drain()
            self._closed = True
            self._pending.clear()
