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

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon.core._native import speedups
from eventmon.core.aggregates import RequestAggregates, SeriesSnapshot
from eventmon.core.counter import Counter
from eventmon.core.exemplars import ExemplarStore, current_trace
from eventmon.core.histogram import DEFAULT_BUCKETS, HdrLayout, LatencyHistogram
from eventmon.core.journal import Journals, ThreadJournal
from eventmon.core.process import ProcessStats
from eventmon.core.registry import LabelPolicy
from eventmon.core.sizes import SizeHistograms
from eventmon.core.user_histograms import HistogramSnapshot
from eventmon.core.user_metrics import HistogramListener, UserMetrics
from eventmon.hooks import SlowRequestDispatcher, log_slow_request
from eventmon.snapshot import RealtimeMetrics
from eventmon.types import Clock, SlowRequestHook

__all__ = ["DEFAULT_QUANTILES", "MetricsCollector", "SeriesSnapshot"]

logger = logging.getLogger("eventmon")

#: Quantiles exported as gauges per endpoint.
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)

_INF = math.inf
_method_label = LabelPolicy.method
# Past this a thread's pending entries hold over 100 MB before anybody folds them.
_MAX_JOURNAL_LIMIT = 1_000_000


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
        if isinstance(buckets, (str, bytes)):
            raise ConfigurationError(
                f"buckets must be a list of seconds such as [0.1, 0.5, 1], got {buckets!r}"
            )
        try:
            bounds = tuple(float(b) for b in buckets)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"buckets must be positive finite seconds, got {buckets!r}"
            ) from None
        if not callable(clock):
            raise ConfigurationError(
                f"clock must be callable, returning seconds (e.g. time.perf_counter), got {clock!r}"
            )
        if not bounds or any(not math.isfinite(b) or b <= 0 for b in bounds):
            raise ConfigurationError(f"buckets must be positive finite seconds, got {buckets!r}")
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ConfigurationError(f"buckets must be strictly increasing, got {buckets!r}")
        if (
            not isinstance(journal_limit, int)
            or isinstance(journal_limit, bool)
            or not 1 <= journal_limit <= _MAX_JOURNAL_LIMIT
        ):
            raise ConfigurationError(
                f"journal_limit must be a whole number from 1 to {_MAX_JOURNAL_LIMIT:,},"
                f" got {journal_limit!r}"
            )
        for q in quantiles:
            if not 0 < q < 1:
                raise ConfigurationError(f"quantiles must be between 0 and 1, got {q!r}")
        #: Prometheus bucket upper bounds, in seconds (+Inf implied).
        self.bounds = bounds
        #: Quantiles (0–1) exported per endpoint.
        self.quantiles = tuple(quantiles)
        self._recorder: Any = None  # the C request path, when built (below)
        self.slow_threshold = slow_threshold  # validated by the property
        #: The clock every duration is read from (seconds); fixed at construction.
        self.clock = clock
        self.layout = HdrLayout(significant_digits=significant_digits)
        self.max_label_sets = max_label_sets
        #: The label policy every metric of this collector is written under.
        self.label_policy = LabelPolicy(max_label_sets)
        self._aggregates = RequestAggregates(
            self.layout,
            bounds,
            label_policy=self.label_policy,
            window=window,
            clock=clock,
            on_fault=self.internal_error,
        )
        self._journals = Journals(self._aggregates.fold, journal_limit)
        self._journal_limit = journal_limit
        self._user = UserMetrics(self.label_policy, self.internal_error)
        self._slow = Counter()
        self._slow_sets = self.label_policy.metric("http_slow_requests_total", 2)
        self._errors = Counter()  # internal faults by place
        self._error_sets = self.label_policy.metric("eventmon_internal_errors_total", 1)
        self._error_log_budget: dict[str, int] = {}
        #: Request and response body sizes, written by adapters with ``size_metrics=True``.
        self.sizes = SizeHistograms(self.label_policy)
        self._process = ProcessStats()
        hooks = [log_slow_request] if slow_hooks is None else list(slow_hooks)
        self._hooks = SlowRequestDispatcher(hooks, on_error=self.record_internal_error)
        #: Wall-clock time (Unix seconds) the collector was created.
        self.started = time.time()
        if speedups is not None:
            # The request path in C. A subclass that overrides a method keeps it.
            self._recorder = speedups.Recorder(
                self._journals.local,
                self._journals.mine,
                self._journals.drain_one,
                self._on_slow,
                clock,
                self._slow_threshold,
                journal_limit,
            )
            for name in ("begin", "end", "observe"):
                if getattr(type(self), name) is getattr(MetricsCollector, name):
                    vars(self)[name] = getattr(self._recorder, name)
        #: The worker aggregator when this collector's workers are merged
        #: (:mod:`eventmon.exporters.multiprocess`); ``None`` in single-process mode.
        self.multiprocess: Any = None
        #: A ``prometheus_client`` registry served on this collector's pages too
        #: (:func:`eventmon.exporters.promclient.serve_alongside`); ``None``: none.
        self.extra_registry: Any = None
        self._exemplars: ExemplarStore | None = None
        self._wall_offset = 0.0
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
        names = tuple(names)
        known = self._aggregates.extra_names
        if not names or names == known:
            return
        if known:
            raise ConfigurationError(
                f"this collector already records the extra labels {list(known)} for another"
                f" adapter, not {list(names)}{where}; give both the same"
                " header_labels/label_callbacks names, or each its own collector"
            )
        with self._journals.lock:  # not while a fold reads them
            self._aggregates.extra_names = names

    @property
    def exemplars(self) -> bool:
        """Whether exemplars are kept (see :meth:`enable_exemplars`)."""
        return self._exemplars is not None

    def enable_exemplars(self) -> None:
        """Keep the trace id of the latest traced request per series and bucket.

        Shown on the ``_bucket`` samples of OpenMetrics scrapes. The trace id is
        the one an adapter noted for the request (the active OpenTelemetry span,
        else the ``traceparent`` header; see :mod:`eventmon.core.exemplars`).
        Requests then take the Python request path, which also stores the exemplar;
        with exemplars off nothing of this runs. Idempotent.
        """
        if self._exemplars is not None:
            return
        # Wall time of an end instant without another clock read per request.
        self._wall_offset = time.time() - self.clock()
        self._exemplars = ExemplarStore(
            self.bounds, max(self.max_label_sets, 1) * (len(self.bounds) + 1)
        )
        if type(self).end is MetricsCollector.end:
            vars(self)["end"] = self._end_traced
        if type(self).observe is MetricsCollector.observe:
            vars(self)["observe"] = self._observe_traced

    def exemplars_by_series(
        self,
    ) -> dict[tuple[str, str, str], dict[int, tuple[str, float, float]]]:
        """``(method, endpoint, status_code)`` -> bucket -> ``(trace_id, seconds, unix time)``.

        Empty with exemplars off. The last bucket index is +Inf's. With extra labels
        the endpoint is as recorded, ``(template, *values)``.
        """
        store = self._exemplars
        return store.by_series() if store is not None else {}

    @property
    def slow_threshold(self) -> float:
        """Seconds above which a request is slow (settable)."""
        return self._slow_threshold

    @slow_threshold.setter
    def slow_threshold(self, seconds: float) -> None:
        if not (isinstance(seconds, (int, float)) and seconds >= 0):
            raise ConfigurationError(
                f"slow_threshold must be a number of seconds >= 0, got {seconds!r}"
            )
        self._slow_threshold = float(seconds)
        if self._recorder is not None:
            self._recorder.slow_threshold = float(seconds)

    # ------------------------------------------------------------------ hot path
    # With the C accelerator built, begin, end and observe are replaced per
    # instance by eventmon.core._speedups.Recorder's; these are the reference.

    def observe(self, method: str, endpoint: str, status_code: int, seconds: float) -> None:
        """Record one finished request that took ``seconds``.

        ``endpoint`` should be a route template (``/events/{event_id}``), never a
        raw path; ``seconds`` is the full duration including the response body.
        """
        if not isinstance(status_code, int):
            raise TypeError(f"status_code must be an int, got {status_code!r}")
        # One chained comparison: refuses NaN, infinities, negatives and non-numbers.
        if not 0.0 <= seconds < _INF:
            raise ValueError(_bad_seconds(seconds))
        slow = seconds > self._slow_threshold
        try:
            journal = self._journals.local.journal
        except AttributeError:
            journal = self._journals.mine()
        entries = journal.entries
        entries.append((method, endpoint, status_code, seconds, self.clock()))
        if slow:
            self._on_slow(method, endpoint, status_code, seconds)
        if len(entries) >= self._journal_limit:
            self._journals.drain_one(journal)

    def begin(self) -> ThreadJournal:
        """Count a request as in progress; returns the token to pass to :meth:`end`.

        Adapters call ``begin()`` on entry and ``end(token, ...)`` once the last
        body byte is out: together they read the clock twice and append once.
        """
        try:
            journal: ThreadJournal = self._journals.local.journal
        except AttributeError:
            journal = self._journals.mine()
        journal.started += 1
        return journal

    def end(
        self, token: ThreadJournal, method: str, endpoint: str, status_code: int, start: float
    ) -> None:
        """Record the request begun with ``token`` at ``start`` (``clock()`` seconds).

        The request stops counting as in progress first, so that it does even if
        recording it then fails (adapters call this once per request, whatever raised).
        """
        token.finished += 1
        if not isinstance(status_code, int):
            raise TypeError(f"status must be an int, got {status_code!r}")
        end = self.clock()
        seconds = end - start
        if not 0.0 <= seconds < _INF:
            raise ValueError(_bad_seconds(seconds))
        entries = token.entries
        entries.append((method, endpoint, status_code, seconds, end))
        if seconds > self._slow_threshold:
            self._on_slow(method, endpoint, status_code, seconds)
        if len(entries) >= self._journal_limit:
            self._journals.drain_one(token)

    def _end_traced(
        self, token: ThreadJournal, method: str, endpoint: str, status_code: int, start: float
    ) -> None:
        # end() plus the exemplar; installed per instance by enable_exemplars().
        token.finished += 1
        if not isinstance(status_code, int):
            raise TypeError(f"status must be an int, got {status_code!r}")
        end = self.clock()
        seconds = end - start
        if not 0.0 <= seconds < _INF:
            raise ValueError(_bad_seconds(seconds))
        entries = token.entries
        entries.append((method, endpoint, status_code, seconds, end))
        trace_id = current_trace.get()
        if trace_id is not None and self._exemplars is not None:
            self._exemplars.offer(
                _method_label(method),
                endpoint,
                status_code,
                seconds,
                trace_id,
                end + self._wall_offset,
            )
        if seconds > self._slow_threshold:
            self._on_slow(method, endpoint, status_code, seconds)
        if len(entries) >= self._journal_limit:
            self._journals.drain_one(token)

    def _observe_traced(self, method: str, endpoint: str, status_code: int, seconds: float) -> None:
        # observe() plus the exemplar of the context's trace, if any.
        MetricsCollector.observe(self, method, endpoint, status_code, seconds)
        trace_id = current_trace.get()
        if trace_id is not None and self._exemplars is not None:
            self._exemplars.offer(
                _method_label(method),
                endpoint,
                status_code,
                seconds,
                trace_id,
                self.clock() + self._wall_offset,
            )

    def _on_slow(self, method: str, endpoint: str, status_code: int, seconds: float) -> None:
        if type(endpoint) is str and not self._aggregates.extra_names:
            self._slow.inc(self._slow_sets.admit((_method_label(method), endpoint)))
        else:
            # Labelled by (method, template, *extra values); hooks get the template.
            endpoint, extra, _ = self._aggregates.labelled(endpoint)
            self._slow.inc(self._slow_sets.admit((_method_label(method), endpoint, *extra)))
        self._hooks.submit(method, endpoint, status_code, seconds)

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
        self._errors.inc(self._error_sets.admit((where,))[0])

    def internal_error(self, where: str) -> None:
        """Log the current exception (rate-limited) and count it; never raises."""
        try:
            where = self._error_sets.admit((where,))[0]
            self._errors.inc(where)
            seen = self._error_log_budget.get(where, 0)
            self._error_log_budget[where] = seen + 1
            # The first ten of a kind in full, then one in a thousand: a fault on
            # every request must not flood the host's logs.
            if seen < 10 or seen % 1000 == 0:
                logger.exception("eventmon: internal error in %s (request not affected)", where)
        except Exception:  # pragma: no cover - logging itself failed
            pass

    # -------------------------------------------------------------------- reads
    # Each read drains the journals and reads the aggregates under the journal lock.

    def flush(self) -> None:
        """Fold every thread's pending observations now (reads do this themselves)."""
        self._journals.drain()

    def series(self) -> list[SeriesSnapshot]:
        """Every request series with its count, sum (seconds) and bucket counts."""
        with self._journals.lock:
            self._journals.drain()
            return self._aggregates.series()

    def endpoints(self) -> list[str]:
        """Endpoints that have a percentile histogram."""
        with self._journals.lock:
            self._journals.drain()
            return self._aggregates.endpoints()

    def histogram(self, endpoint: str | None = None) -> LatencyHistogram:
        """A copy of one endpoint's latency histogram (seconds), or of all endpoints merged."""
        with self._journals.lock:
            self._journals.drain()
            return self._aggregates.histogram(endpoint)

    def recent_histogram(self) -> LatencyHistogram:
        """All endpoints' latencies (seconds) over the last one to two windows."""
        with self._journals.lock:
            self._journals.drain()
            return self._aggregates.recent_histogram()

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
        with self._journals.lock:
            self._journals.drain()
            return self._aggregates.endpoint_percentiles(self.quantiles)

    def in_progress(self) -> int:
        """Requests in progress right now."""
        return self._journals.in_flight()

    @property
    def window_seconds(self) -> int:
        """Seconds covered by the realtime snapshot's sliding window."""
        return self._aggregates.window.size

    def slow_requests(self) -> dict[tuple[str, ...], int]:
        """Slow requests by (method, endpoint), then the extra label values if any."""
        return {k: int(v) for k, v in self._slow.items().items()}  # type: ignore[misc]

    def size_histograms(self) -> dict[int, dict[tuple[str, ...], tuple[list[int], float]]]:
        """Body sizes in bytes (:class:`~eventmon.core.sizes.SizeHistograms`).

        Keyed 0 for requests, 1 for responses.
        """
        return self.sizes.snapshot()

    def internal_errors(self) -> dict[str, int]:
        """Faults inside eventmon, by place."""
        return {str(k): int(v) for k, v in self._errors.items().items()}

    def total_requests(self) -> int:
        """Requests recorded since the collector started."""
        with self._journals.lock:
            self._journals.drain()
            return self._aggregates.total_requests()

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
        with self._journals.lock:
            previous = self._journals.fold

            def fold(batch: list[tuple[Any, ...]]) -> None:
                previous(batch)
                try:
                    listener(batch)
                except Exception:
                    self.internal_error("fold_listener")

            self._journals.fold = fold

    def flush_hooks(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds for queued slow-request hooks to run (tests, shutdown)."""
        return self._hooks.flush(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop background threads, waiting up to ``timeout`` seconds; idempotent."""
        self._hooks.shutdown(timeout)


def _bad_seconds(seconds: object) -> str:
    return f"seconds must be a finite number >= 0, got {seconds!r}"


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
