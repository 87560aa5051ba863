"""MetricsCollector: the one object every adapter, exporter and engine talks to.

The request path (:meth:`MetricsCollector.observe`) appends one tuple to the
current thread's journal. Everything else — bucket counts, HDR histograms,
sliding windows, label caps — is worked out when somebody reads: a scrape, the
realtime snapshot, the alert engine. See :mod:`eventmon.core.journal` for why
that is exact under any number of threads without a lock on the request path.

Example::

    >>> c = MetricsCollector()
    >>> c.observe("GET", "/events/{event_id}", 200, 0.042)
    >>> c.get_realtime_metrics().average_response_time
    42.0
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon.core.aggregates import RequestAggregates, SeriesSnapshot, check_buckets
from eventmon.core.exemplars import ExemplarStore
from eventmon.core.faults import InternalErrors, SlowRequests
from eventmon.core.histogram import DEFAULT_BUCKETS, HdrLayout, LatencyHistogram
from eventmon.core.journal import Journals, ThreadJournal
from eventmon.core.process import ProcessStats
from eventmon.core.registry import LabelPolicy
from eventmon.core.request_path import RequestPath, check_journal_limit, check_slow_threshold
from eventmon.core.sizes import SizeHistograms
from eventmon.core.user_histograms import HistogramSnapshot
from eventmon.core.user_metrics import HistogramListener, UserMetrics
from eventmon.hooks import SlowRequestDispatcher, log_slow_request
from eventmon.snapshot import RealtimeMetrics
from eventmon.types import Clock, SlowRequestHook

__all__ = ["DEFAULT_QUANTILES", "MetricsCollector", "SeriesSnapshot"]

#: Quantiles exported as gauges per endpoint.
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)


class MetricsCollector:
    """Request metrics for one process: counters, histograms, windows, hooks.

    A facade: the request path (below) appends to per-thread journals
    (:mod:`eventmon.core.journal`); reads fold them into the request aggregates
    (:class:`~eventmon.core.aggregates.RequestAggregates`); the metrics an
    application defines are :class:`~eventmon.core.user_metrics.UserMetrics`.

    Args:
        window: seconds covered by the realtime snapshot's rates (default 60).
        buckets: Prometheus bucket upper bounds in seconds (default 0.1, 5, 15,
            50, 100, 500 ms, 1, 2.5, 5, 10 s), strictly increasing; +Inf is added.
        max_label_sets: cap on label sets per metric (request series, endpoints
            with a percentile histogram, slow requests, internal errors, each user
            counter and gauge); past it new sets are written to one overflow set
            (:class:`~eventmon.core.registry.LabelPolicy`).
        slow_threshold: seconds above which a request is slow (default 1.0).
        slow_hooks: callables ``(method, endpoint, status_code, seconds)`` run
            on a background thread for each slow request; ``None`` installs the
            default hook, which logs a warning; ``()`` installs none.
        significant_digits: HDR precision (2 = within 1 %, 26.8 KB per endpoint).
        quantiles: percentiles exported as gauges per endpoint (0–1).
        clock: monotonic clock in seconds; injected by tests.
        journal_limit: requests a thread records before it folds them itself
            (1 to 1,000,000; default 1024); reads fold whatever is pending.
        exemplars: keep, per series and bucket, the trace id of the latest traced
            request and show it in OpenMetrics scrapes (off by default; see
            :meth:`enable_exemplars`).
    """

    def __init__(
        self,
        *,
        window: int = 60,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        max_label_sets: int = 1000,
        slow_threshold: float = 1.0,
        slow_hooks: Iterable[SlowRequestHook] | None = None,
        significant_digits: int = 2,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        clock: Clock = time.perf_counter,
        journal_limit: int = 1024,
        exemplars: bool = False,
    ) -> None:
        if not isinstance(exemplars, bool):
            raise ConfigurationError(f"exemplars must be True or False, got {exemplars!r}")
        bounds = check_buckets(buckets)
        if not callable(clock):
            raise ConfigurationError(
                f"clock must be callable, returning seconds (e.g. time.perf_counter), got {clock!r}"
            )
        check_journal_limit(journal_limit)
        for q in quantiles:
            if not 0 < q < 1:
                raise ConfigurationError(f"quantiles must be between 0 and 1, got {q!r}")
        #: Prometheus bucket upper bounds, in seconds (+Inf implied).
        self.bounds = bounds
        #: Quantiles (0–1) exported per endpoint.
        self.quantiles = tuple(quantiles)
        slow_threshold = check_slow_threshold(slow_threshold)
        #: The clock every duration is read from (seconds); fixed at construction.
        self.clock = clock
        self.layout = HdrLayout(significant_digits=significant_digits)
        self.max_label_sets = max_label_sets
        #: The label policy every metric of this collector is written under.
        self.label_policy = LabelPolicy(max_label_sets)
        self._errors = InternalErrors(self.label_policy)
        self._aggregates = RequestAggregates(
            self.layout,
            bounds,
            label_policy=self.label_policy,
            window=window,
            clock=clock,
            on_fault=self.internal_error,
        )
        self._journals = Journals(self._aggregates.fold, journal_limit)
        self._user = UserMetrics(self.label_policy, self.internal_error)
        hooks = [log_slow_request] if slow_hooks is None else list(slow_hooks)
        self._hooks = SlowRequestDispatcher(hooks, on_error=self.record_internal_error)
        self._slow = SlowRequests(self.label_policy, self._aggregates, self._hooks)
        #: Request and response body sizes, written by adapters with ``size_metrics=True``.
        self.sizes = SizeHistograms(self.label_policy, self.internal_error)
        self._process = ProcessStats()
        #: Wall-clock time (Unix seconds) the collector was created.
        self.started = time.time()
        self._path = RequestPath(
            self._journals, self._slow.record, clock, slow_threshold, journal_limit
        )
        self._recorder: Any = self._path.recorder()  # the same path in C, if built
        # The request path's bound methods go on the instance: no layer in between
        # per request. A subclass that overrides a method keeps it.
        fastest = self._path if self._recorder is None else self._recorder
        for name in ("begin", "end", "observe"):
            if getattr(type(self), name) is getattr(MetricsCollector, name):
                vars(self)[name] = getattr(fastest, name)
        #: The worker aggregator when this collector's workers are merged
        #: (:mod:`eventmon.exporters.multiprocess`); ``None`` in single-process mode.
        self.multiprocess: Any = None
        #: A ``prometheus_client`` registry served on this collector's pages too
        #: (:func:`eventmon.exporters.promclient.serve_alongside`); ``None``: none.
        self.extra_registry: Any = None
        if exemplars:
            self.enable_exemplars()

    @property
    def extra_label_names(self) -> tuple[str, ...]:
        """Names of the labels adapters add to each request series besides method,
        endpoint and status (``header_labels``, ``label_callbacks``); empty: none."""
        return self._aggregates.extra_names

    def use_extra_labels(self, names: Sequence[str], *, where: str = "") -> None:
        """Record requests with the extra labels ``names`` (adapters call this at start-up).

        An adapter then records each request's endpoint as ``(template, *values)``, the
        values in the order of ``names``; the series keep the values, the per-endpoint
        percentiles sum over them. A plain string endpoint (another adapter without
        extra labels, or :meth:`observe` called directly) gets ``""`` for each.
        Another adapter declaring other names on this collector is refused.
        """
        with self._journals.lock:  # not while a fold reads them
            self._aggregates.use_extra_names(tuple(names), where)

    @property
    def exemplars(self) -> bool:
        """Whether exemplars are kept (see :meth:`enable_exemplars`)."""
        return self._path.exemplars is not None

    def enable_exemplars(self) -> None:
        """Keep the trace id of the latest traced request per series and bucket.

        Shown on the ``_bucket`` samples of OpenMetrics scrapes. The trace id is
        the one an adapter noted for the request (the active OpenTelemetry span,
        else the ``traceparent`` header; see :mod:`eventmon.core.exemplars`).
        Requests then take the Python request path, which also stores the exemplar;
        with exemplars off nothing of this runs. Idempotent.
        """
        if self._path.exemplars is not None:
            return
        capacity = max(self.max_label_sets, 1) * (len(self.bounds) + 1)
        self._path.trace(ExemplarStore(self.bounds, capacity))
        if type(self).end is MetricsCollector.end:
            vars(self)["end"] = self._path.end_traced
        if type(self).observe is MetricsCollector.observe:
            vars(self)["observe"] = self._path.observe_traced

    def exemplars_by_series(
        self,
    ) -> dict[tuple[str, str, str], dict[int, tuple[str, float, float]]]:
        """``(method, endpoint, status_code)`` -> bucket -> ``(trace_id, seconds, unix time)``.

        Empty with exemplars off. The last bucket index is +Inf's. With extra labels
        the endpoint is as recorded, ``(template, *values)``.
        """
        store = self._path.exemplars
        return store.by_series() if store is not None else {}

    @property
    def slow_threshold(self) -> float:
        """Seconds above which a request is slow (settable)."""
        return self._path.slow_threshold

    @slow_threshold.setter
    def slow_threshold(self, seconds: float) -> None:
        self._path.slow_threshold = seconds = check_slow_threshold(seconds)
        if self._recorder is not None:
            self._recorder.slow_threshold = seconds

    # ------------------------------------------------------------------ hot path
    # __init__ puts the request path's own bound methods (eventmon.core.request_path,
    # or its C twin) on each instance; these run when a subclass calls super().

    def observe(self, method: str, endpoint: str, status_code: int, seconds: float) -> None:
        """Record one finished request that took ``seconds``.

        ``endpoint`` should be a route template (``/events/{event_id}``), never a
        raw path; ``seconds`` is the full duration including the response body.
        """
        self._path.observe(method, endpoint, status_code, seconds)

    def begin(self) -> ThreadJournal:
        """Count a request as in progress; returns the token to pass to :meth:`end`.

        Adapters call ``begin()`` on entry and ``end(token, ...)`` once the last
        body byte is out: together they read the clock twice and append once.
        """
        return self._path.begin()

    def end(
        self, token: ThreadJournal, method: str, endpoint: str, status_code: int, start: float
    ) -> None:
        """Record the request begun with ``token`` at ``start`` (``clock()`` seconds).

        The request stops counting as in progress first, so that it does even if
        recording it then fails (adapters call this once per request, whatever raised).
        """
        self._path.end(token, method, endpoint, status_code, start)

    def request_started(self) -> None:
        """Count a request as in progress (adapters call this on entry)."""
        self._journals.mine().started += 1

    def request_finished(self) -> None:
        """Count a request as no longer in progress."""
        self._journals.mine().finished += 1

    def record_response_time(
        self, endpoint: str, ms: float, *, method: str = "GET", status_code: int = 200
    ) -> None:
        """Record a response time in milliseconds (the original API's unit)."""
        self.observe(method, endpoint, status_code, ms / 1000.0)

    # ------------------------------------------------- user metrics (UserMetrics)

    def increment_counter(
        self, name: str, labels: Mapping[str, str] | None = None, amount: float = 1
    ) -> None:
        """Add ``amount`` to the counter ``name`` (exposed as ``<name>_total``).

        The first call defines the counter's label names; later calls must use
        the same names. Example: ``collector.increment_counter("db_connection_errors")``.
        """
        self._user.increment_counter(name, labels, amount)

    def define_counter(
        self, name: str, help: str = "", label_names: Sequence[str] = ()
    ) -> tuple[str, tuple[str, ...]]:
        """Declare a counter (with its help text) before first use; idempotent."""
        return self._user.define_counter(name, help, label_names)

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Set the gauge ``name`` to ``value`` (not for the request path: takes a lock).

        NaN and ±infinity are kept and exported as Prometheus spells them
        (``NaN``, ``+Inf``, ``-Inf``).
        """
        self._user.set_gauge(name, value, labels)

    def define_histogram(
        self,
        name: str,
        help: str = "",
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        """Declare a histogram with its help text, label names and bucket bounds; idempotent.

        ``buckets`` are in the histogram's own unit (the default ones are seconds,
        for a ``*_seconds`` name); ``+Inf`` is added. Defining it again with other
        label names or buckets raises :class:`ConfigurationError`.
        """
        self._user.define_histogram(name, help, label_names, buckets)

    def observe_histogram(
        self,
        name: str,
        value: float,
        labels: Mapping[str, str] | None = None,
        *,
        buckets: Sequence[float] | None = None,
    ) -> None:
        """Add ``value`` to the histogram ``name`` (exposed with ``_bucket``, ``_sum``, ``_count``).

        ``value`` is in the histogram's own unit (seconds for a ``*_seconds`` name).
        The first call defines it (label names from ``labels``; ``buckets``,
        default :data:`~eventmon.DEFAULT_BUCKETS`) unless :meth:`define_histogram`
        did. Takes a lock. Example:
        ``collector.observe_histogram("db_query_seconds", 0.012, {"table": "events"})``.
        """
        self._user.observe_histogram(name, value, labels, buckets=buckets)

    def add_histogram_listener(self, listener: HistogramListener) -> None:
        """Also hand each :meth:`observe_histogram` value to ``listener``.

        ``listener(name, value, label_names, label_values)`` runs in the caller's
        thread (OpenTelemetry records every value so); one that raises is logged
        and counted, never propagated.
        """
        self._user.add_histogram_listener(listener)

    def counters(self) -> dict[str, dict[tuple[str, ...], float]]:
        """User-defined counters: name -> label values -> total."""
        return self._user.counters()

    def counter_value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One counter's total; with ``labels=None``, summed over every label set."""
        return self._user.counter_value(name, labels)

    def counter_names(self) -> set[str]:
        """Names of the counters defined so far (incremented or declared)."""
        return self._user.counter_names()

    def counter_labels(self, name: str) -> tuple[str, ...]:
        """A counter's label names (``()`` if it has none or is undefined)."""
        return self._user.counter_labels(name)

    def counter_help(self, name: str) -> str:
        """The help text given to :meth:`define_counter` (``""`` if none)."""
        return self._user.counter_help(name)

    def gauges(self) -> dict[str, dict[tuple[str, ...], float]]:
        """User-defined gauges: name -> label values -> value."""
        return self._user.gauges()

    def gauge_labels(self, name: str) -> tuple[str, ...]:
        """A gauge's label names (``()`` if it has none or is undefined)."""
        return self._user.gauge_labels(name)

    def histograms(self) -> dict[str, HistogramSnapshot]:
        """User-defined histograms by name (see :meth:`observe_histogram`)."""
        return self._user.histograms()

    # ------------------------------------------------------ eventmon's own faults

    def add_slow_request_hook(self, hook: SlowRequestHook) -> None:
        """Also call ``hook(method, endpoint, status_code, seconds)`` for slow requests."""
        if not callable(hook):
            raise ConfigurationError(f"a slow-request hook must be callable, got {hook!r}")
        self._hooks.add_hook(hook)

    def record_internal_error(self, where: str) -> None:
        """Count a fault inside eventmon (the caller has logged it)."""
        self._errors.count(where)

    def internal_error(self, where: str) -> None:
        """Log the current exception (rate-limited) and count it; never raises."""
        self._errors.report(where)

    # -------------------------------------------------------------------- reads
    # Each read drains the journals and reads the aggregates under the journal lock
    # (Journals.read).

    def flush(self) -> None:
        """Fold every thread's pending observations now (reads do this themselves)."""
        self._journals.drain()

    def series(self) -> list[SeriesSnapshot]:
        """Every request series with its count, sum (seconds) and bucket counts."""
        return self._journals.read(self._aggregates.series)

    def endpoints(self) -> list[str]:
        """Endpoints that have a percentile histogram."""
        return self._journals.read(self._aggregates.endpoints)

    def histogram(self, endpoint: str | None = None) -> LatencyHistogram:
        """A copy of one endpoint's latency histogram (seconds), or of all endpoints merged."""
        return self._journals.read(self._aggregates.histogram, endpoint)

    def recent_histogram(self) -> LatencyHistogram:
        """All endpoints' latencies (seconds) over the last one to two windows."""
        return self._journals.read(self._aggregates.recent_histogram)

    def percentile(self, endpoint: str, p: float) -> float:
        """Percentile ``p`` (0–100) of ``endpoint``'s response time, in milliseconds.

        Over everything the endpoint has served; 0.0 if it has served nothing.
        """
        return self.histogram(endpoint).percentile(p) * 1000.0

    def endpoint_percentiles(self) -> dict[str, list[float]]:
        """Per endpoint, the configured quantiles in seconds (one pass per endpoint).

        An endpoint that served nothing since the previous call reuses its figures,
        so a scrape of many quiet endpoints costs little.
        """
        return self._journals.read(self._aggregates.endpoint_percentiles, self.quantiles)

    def in_progress(self) -> int:
        """Requests in progress right now."""
        return self._journals.in_flight()

    @property
    def window_seconds(self) -> int:
        """Seconds covered by the realtime snapshot's sliding window."""
        return self._aggregates.window.size

    def slow_requests(self) -> dict[tuple[str, ...], int]:
        """Slow requests by (method, endpoint), then the extra label values if any."""
        return self._slow.counts()

    def size_histograms(self) -> dict[int, dict[tuple[str, ...], tuple[list[int], float]]]:
        """Body sizes in bytes (:class:`~eventmon.core.sizes.SizeHistograms`).

        Keyed 0 for requests, 1 for responses.
        """
        return self.sizes.snapshot()

    def internal_errors(self) -> dict[str, int]:
        """Faults inside eventmon, by place."""
        return self._errors.counts()

    def total_requests(self) -> int:
        """Requests recorded since the collector started."""
        return self._journals.read(self._aggregates.total_requests)

    def get_realtime_metrics(self) -> RealtimeMetrics:
        """The realtime snapshot over the sliding window (response times in milliseconds)."""
        with self._journals.lock:
            self._journals.drain()
            stats = self._aggregates.window_stats(self.clock())
            total = self._aggregates.total_requests()
        p50, p95, p99 = self.recent_histogram().percentiles((50, 95, 99))
        rss, mem_pct = self._process.memory()
        return RealtimeMetrics(
            active_connections=self.in_progress(),
            requests_per_second=stats.requests_per_second,
            average_response_time=stats.mean_latency * 1000.0,
            error_rate=stats.error_rate,
            memory_usage=mem_pct,
            cpu_usage=self._process.cpu_percent(),
            memory_rss_bytes=rss,
            p50_response_time=p50 * 1000.0,
            p95_response_time=p95 * 1000.0,
            p99_response_time=p99 * 1000.0,
            total_requests=total,
            window_seconds=stats.seconds,
            timestamp=time.time(),
        )

    getRealtimeMetrics = get_realtime_metrics

    def add_fold_listener(self, listener: Callable[[list[tuple[Any, ...]]], object]) -> None:
        """Also hand each folded batch of journal entries to ``listener``.

        Entries are ``(method, endpoint, status_code, seconds, end)``: for exporters
        that need every observation (OpenTelemetry). It runs under the journal lock,
        off the request path: it must be quick and must not read the collector. A
        listener that raises is logged and counted, never propagated.
        """
        self._journals.add_fold_listener(listener, self.internal_error)

    def flush_hooks(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds for queued slow-request hooks to run (tests, shutdown)."""
        return self._hooks.flush(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop background threads, waiting up to ``timeout`` seconds; idempotent."""
        self._hooks.shutdown(timeout)


_default: MetricsCollector | None = None
_default_lock = threading.Lock()


def default_collector() -> MetricsCollector:
    """The process-wide collector that adapters use unless given another.

    With ``EVENTMON_MULTIPROC_DIR`` set (a pre-fork server's workers), it is
    created with worker aggregation on (:func:`eventmon.exporters.multiprocess.enable`).
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                collector = MetricsCollector()
                if os.environ.get("EVENTMON_MULTIPROC_DIR"):
                    # Imported here: multiprocess builds on this module, not the reverse.
                    from eventmon.exporters.multiprocess import enable

                    enable(collector)
                _default = collector
    return _default


def set_default_collector(collector: MetricsCollector) -> None:
    """Replace the process-wide collector (before adapters are created)."""
    global _default
    _default = collector


__all__ += ["default_collector", "set_default_collector"]
