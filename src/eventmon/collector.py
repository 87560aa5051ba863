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
from dataclasses import dataclass
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon.core import fold as _fold_module
from eventmon.core._native import cells, speedups
from eventmon.core.counter import Counter
from eventmon.core.exemplars import ExemplarStore, current_trace
from eventmon.core.histogram import DEFAULT_BUCKETS, HdrLayout, LatencyHistogram
from eventmon.core.journal import Journals, ThreadJournal
from eventmon.core.process import ProcessStats
from eventmon.core.registry import (
    OVERFLOW,
    UNMATCHED,
    LabelPolicy,
    LabelSets,
    family_names,
    request_labels,
    reserved_name_problem,
    validate_label_name,
    validate_metric_name,
)
from eventmon.core.sizes import SizeHistograms
from eventmon.core.user_histograms import (
    HistogramSnapshot,
    UserHistograms,
    check_histogram_bounds,
)
from eventmon.core.window import SlidingWindow
from eventmon.hooks import SlowRequestDispatcher, log_slow_request
from eventmon.snapshot import RealtimeMetrics
from eventmon.types import Clock, SlowRequestHook

__all__ = ["DEFAULT_QUANTILES", "MetricsCollector", "SeriesSnapshot"]

logger = logging.getLogger("eventmon")

#: Quantiles exported as gauges per endpoint.
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)

_MICROS = 1_000_000
_INF = math.inf
_method_label = LabelPolicy.method
# Past this a thread's pending entries hold over 100 MB before anybody folds them.
_MAX_JOURNAL_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class SeriesSnapshot:
    """One (method, endpoint, status_code) series as read at one moment."""

    method: str
    endpoint: str
    status_code: str
    labels: str  # the escaped label pairs, ready for the exposition formats
    count: int
    sum: float
    buckets: tuple[int, ...]  # per bound, not cumulative; the last is +Inf


class _Series:
    """Aggregates of one label set; written only under the journal lock."""

    __slots__ = ("bucket_counts", "endpoint", "hist", "labels", "method", "status", "sums")

    def __init__(
        self, method: str, endpoint: str, status: str, hist: LatencyHistogram, n_buckets: int
    ) -> None:
        self.method = method
        self.endpoint = endpoint
        self.status = status
        self.labels = request_labels(method, endpoint, status)
        self.hist = hist
        # Written in place by the fold (eventmon.core.fold).
        self.sums = cells("d", [0.0])
        self.bucket_counts = cells("q", [0] * (n_buckets + 1))

    @property
    def sum(self) -> float:
        return float(self.sums[0])

    @property
    def buckets(self) -> tuple[int, ...]:
        """Count per bound, not cumulative; the last is +Inf."""
        return tuple(self.bucket_counts)

    @property
    def count(self) -> int:
        # Derived rather than kept: one increment less per request in the fold.
        return sum(self.bucket_counts)


class MetricsCollector:
    """Request metrics for one process: counters, histograms, windows, hooks.

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
        self.bounds = bounds
        self.quantiles = tuple(quantiles)
        self._recorder: Any = None  # the C request path, when built (below)
        self.slow_threshold = slow_threshold  # validated by the property
        #: The clock every duration is read from; fixed at construction.
        self.clock = clock
        self.layout = HdrLayout(significant_digits=significant_digits)
        self.max_label_sets = max_label_sets
        #: The label policy every metric of this collector is written under.
        self.label_policy = LabelPolicy(max_label_sets)
        cuts, slot_of, bucket_of = _cut_points(self.layout, bounds)
        self._fold_batch = _fold_module.fold
        self._cuts: Sequence[float] = cells("d", cuts)
        self._slot_of: Sequence[int] = cells("q", slot_of)
        self._bucket_of: Sequence[int] = cells("q", bucket_of)
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._series_sets = self.label_policy.metric("http_requests_total", 3)
        self._endpoint_hists: dict[str, LatencyHistogram] = {}
        self._percentile_cache: dict[str, tuple[int, list[float]]] = {}
        self._endpoint_sets = self.label_policy.metric("http_request_duration_hdr_seconds", 1)
        now = clock()
        self._window = SlidingWindow(window, started=now)
        # Overall latency over the recent past: two histograms rotated every window.
        self._recent = LatencyHistogram(self.layout)
        self._recent_prev = LatencyHistogram(self.layout)
        self._recent_until = now + window
        self._journals = Journals(self._fold, journal_limit)
        self._journal_limit = journal_limit
        self._counters = Counter()  # user counters and eventmon's own
        self._counter_help: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._counter_sets: dict[str, LabelSets] = {}  # by family and by sample name
        self._gauges: dict[str, dict[tuple[str, ...], float]] = {}
        self._gauge_help: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._gauge_lock = threading.Lock()
        self._histograms = UserHistograms(self.label_policy)
        # Called with (name, value, label names, label values) per observe_histogram.
        self._histogram_listeners: list[
            Callable[[str, float, tuple[str, ...], tuple[str, ...]], object]
        ] = []
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
        """``(method, endpoint, status)`` -> bucket index -> ``(trace_id, seconds, unix time)``.

        Empty with exemplars off. The last bucket index is +Inf's.
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
        """Record one finished request.

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
        self, token: ThreadJournal, method: str, endpoint: str, status: int, start: float
    ) -> None:
        """Record the request begun with ``token`` at ``start`` (``clock()`` time).

        The request stops counting as in progress first, so that it does even if
        recording it then fails (adapters call this once per request, whatever raised).
        """
        token.finished += 1
        if not isinstance(status, int):
            raise TypeError(f"status must be an int, got {status!r}")
        end = self.clock()
        seconds = end - start
        if not 0.0 <= seconds < _INF:
            raise ValueError(_bad_seconds(seconds))
        entries = token.entries
        entries.append((method, endpoint, status, seconds, end))
        if seconds > self._slow_threshold:
            self._on_slow(method, endpoint, status, seconds)
        if len(entries) >= self._journal_limit:
            self._journals.drain_one(token)

    def _end_traced(
        self, token: ThreadJournal, method: str, endpoint: str, status: int, start: float
    ) -> None:
        # end() plus the exemplar; installed per instance by enable_exemplars().
        token.finished += 1
        if not isinstance(status, int):
            raise TypeError(f"status must be an int, got {status!r}")
        end = self.clock()
        seconds = end - start
        if not 0.0 <= seconds < _INF:
            raise ValueError(_bad_seconds(seconds))
        entries = token.entries
        entries.append((method, endpoint, status, seconds, end))
        trace_id = current_trace.get()
        if trace_id is not None and self._exemplars is not None:
            self._exemplars.offer(
                _method_label(method), endpoint, status, seconds, trace_id, end + self._wall_offset
            )
        if seconds > self._slow_threshold:
            self._on_slow(method, endpoint, status, seconds)
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

    def _on_slow(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        if type(endpoint) is not str:
            endpoint = self._bad_endpoint(endpoint)
        self._slow.inc(self._slow_sets.admit((_method_label(method), endpoint)))
        self._hooks.submit(method, endpoint, status, seconds)

    def request_started(self) -> None:
        """Count a request as in progress (adapters call this on entry)."""
        self._journals.mine().started += 1

    def request_finished(self) -> None:
        """Count a request as no longer in progress."""
        self._journals.mine().finished += 1

    # --------------------------------------------------------------- other writes

    def record_response_time(
        self, endpoint: str, ms: float, *, method: str = "GET", status_code: int = 200
    ) -> None:
        """Record a response time in milliseconds (the original API's unit)."""
        self.observe(method, endpoint, status_code, ms / 1000.0)

    def increment_counter(
        self, name: str, labels: Mapping[str, str] | None = None, amount: float = 1
    ) -> None:
        """Add ``amount`` to the counter ``name`` (exposed as ``<name>_total``).

        The first call defines the counter's label names; later calls must use
        the same names. Example: ``collector.increment_counter("db_connection_errors")``.
        """
        if not 0 <= amount < _INF:
            raise ValueError(
                f"a counter only goes up by a finite amount; amount must be >= 0 and"
                f" finite, got {amount!r}"
            )
        label_names, values = _split_labels(labels)
        known = self._counter_help.get(name)
        if known is None:
            known = self.define_counter(name, "", label_names)
        if known[1] != label_names:
            raise ConfigurationError(
                f"counter {name!r} has labels {list(known[1])}, not {list(label_names)}"
            )
        self._counters.inc((name, self._counter_sets[name].admit(values)), amount)

    def define_counter(
        self, name: str, help: str = "", label_names: Sequence[str] = ()
    ) -> tuple[str, tuple[str, ...]]:
        """Declare a counter (with its help text) before first use; idempotent."""
        family = name[:-6] if name.endswith("_total") else name
        if family not in self._counter_help:
            validate_metric_name(family)
            self._refuse_clash(name, "counter")
        names = tuple(validate_label_name(n) for n in label_names)
        entry = self._counter_help.setdefault(family, (help, names))
        if family != name:
            self._counter_help.setdefault(name, entry)
        sets = self.label_policy.metric(family, len(entry[1]))
        self._counter_sets[family] = self._counter_sets[name] = sets
        return entry

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Set the gauge ``name`` to ``value`` (not for the request path: takes a lock).

        NaN and ±infinity are kept and exported as Prometheus spells them
        (``NaN``, ``+Inf``, ``-Inf``).
        """
        if isinstance(value, (str, bytes)):
            raise TypeError(f"gauge {name!r}: value must be a number, got {value!r}")
        value = float(value)
        label_names, values = _split_labels(labels)
        with self._gauge_lock:
            if name not in self._gauge_help:
                validate_metric_name(name)
                self._refuse_clash(name, "gauge")
                for n in label_names:
                    validate_label_name(n)
                self._gauge_help[name] = ("", label_names)
            elif self._gauge_help[name][1] != label_names:
                raise ConfigurationError(
                    f"gauge {name!r} has labels {list(self._gauge_help[name][1])},"
                    f" not {list(label_names)}"
                )
            admitted = self.label_policy.metric(name, len(label_names)).admit(values)
            self._gauges.setdefault(name, {})[admitted] = value

    def define_histogram(
        self,
        name: str,
        help: str = "",
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        """Declare a histogram with its help text, label names and bucket bounds; idempotent.

        Defining it again with other label names or buckets raises
        :class:`ConfigurationError`. ``+Inf`` is added to ``buckets``.
        """
        bounds = check_histogram_bounds(name, buckets)
        if self._histograms.get(name) is None:
            validate_metric_name(name)
            self._refuse_clash(name, "histogram")
        self._histograms.define(name, help, label_names, bounds)

    def observe_histogram(
        self,
        name: str,
        value: float,
        labels: Mapping[str, str] | None = None,
        *,
        buckets: Sequence[float] | None = None,
    ) -> None:
        """Add ``value`` to the histogram ``name`` (exposed with ``_bucket``, ``_sum``, ``_count``).

        The first call defines it (label names from ``labels``; ``buckets``,
        default :data:`~eventmon.DEFAULT_BUCKETS`) unless :meth:`define_histogram`
        did. Takes a lock. Example:
        ``collector.observe_histogram("db_query_seconds", 0.012, {"table": "events"})``.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"histogram {name!r}: value must be a number, got {value!r}")
        # A histogram's _sum is a counter in OpenMetrics: it may not go down.
        if not 0 <= value < _INF:
            raise ValueError(f"histogram {name!r}: value must be finite and >= 0, got {value!r}")
        label_names, values = _split_labels(labels)
        known = self._histograms.get(name)
        if known is None or buckets is not None:
            self.define_histogram(
                name, "", label_names, DEFAULT_BUCKETS if buckets is None else buckets
            )
        elif known[0] != label_names:
            raise ConfigurationError(
                f"histogram {name!r} has labels {list(known[0])}, not {list(label_names)}"
            )
        self._histograms.observe(name, float(value), values)
        for listener in self._histogram_listeners:
            try:
                listener(name, float(value), label_names, values)
            except Exception:
                self.internal_error("histogram_listener")

    def add_histogram_listener(
        self, listener: Callable[[str, float, tuple[str, ...], tuple[str, ...]], object]
    ) -> None:
        """Also hand each :meth:`observe_histogram` value to ``listener``.

        ``listener(name, value, label_names, label_values)`` runs in the caller's
        thread (OpenTelemetry records every value so); one that raises is logged
        and counted, never propagated.
        """
        self._histogram_listeners.append(listener)

    def _refuse_clash(self, name: str, kind: str) -> None:
        """Refuse a new family whose names a built-in family or another user family uses.

        Prometheus rejects an exposition with two families of one name, so this
        fails when the metric is defined rather than at every scrape.
        """
        problem = reserved_name_problem(name, kind)
        if problem is not None:
            raise ConfigurationError(problem)
        mine = family_names(name, kind)
        defined = (
            [(n, "counter") for n in self.counter_names()]
            + [(n, "gauge") for n in list(self._gauge_help)]
            + [(n, "histogram") for n in self._histograms.names()]
        )
        base = name.removesuffix("_total") if kind == "counter" else name
        for other, other_kind in defined:
            if other_kind == kind and other == base:
                continue  # the same family
            if mine & family_names(other, other_kind):
                raise ConfigurationError(
                    f"{kind} name {name!r} clashes with the {other_kind} {other!r}"
                    " in the exposition; choose another name"
                )

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

    # --------------------------------------------------------------------- fold

    def _fold(self, batch: list[tuple[Any, ...]]) -> None:
        """Add journal entries to the aggregates; runs under the journal lock.

        The loop itself is :mod:`eventmon.core.fold` (compiled when it could be
        built); it stops at each rotation of the recent histogram.
        """
        fold = self._fold_batch
        window = self._window
        i = 0
        while True:
            i = fold(
                batch,
                i,
                self._series,
                self._new_series,
                self._cuts,
                self._slot_of,
                self._bucket_of,
                self._recent,
                self._recent_until,
                window.ring,
                window.size,
            )
            if i >= len(batch):
                return
            self._rotate_recent(batch[i][4])

    def _rotate_recent(self, now: float) -> None:
        size = self._window.size
        if now >= self._recent_until + size:
            self._recent_prev.reset()  # idle for over a window: nothing recent to keep
        else:
            self._recent_prev = self._recent
        self._recent = LatencyHistogram(self.layout)
        # Keep rotation instants on a fixed grid from start.
        periods = math.floor((now - self._recent_until) / size) + 1
        self._recent_until += periods * size

    def _new_series(self, method: str, endpoint: str, status: int) -> _Series:
        # The fold calls this for each key it has not seen: the label policy applies here.
        if type(endpoint) is not str:
            # Never stored under its own key: each such entry comes back here and counts.
            endpoint = self._bad_endpoint(endpoint)
            s = self._series.get((_method_label(method), endpoint, status))
            if s is not None:
                return s
        label = _method_label(method)
        if label != method:
            # A made-up method is never stored under its own key, so it cannot grow memory.
            s = self._series.get((label, endpoint, status))
            if s is not None:
                return s
        key = (label, endpoint, status)
        if self._series_sets.admit(key) is not key:
            okey = (OVERFLOW, OVERFLOW, -1)
            s = self._series.get(okey)
            if s is None:
                s = _Series(OVERFLOW, OVERFLOW, OVERFLOW, self._overflow_hist(), len(self.bounds))
                self._series[okey] = s
            return s
        hist = self._endpoint_hists.get(endpoint)
        if hist is None:
            one = (endpoint,)
            if self._endpoint_sets.admit(one) is one:
                hist = LatencyHistogram(self.layout)
                self._endpoint_hists[endpoint] = hist
            else:
                hist = self._overflow_hist()
        s = _Series(label, endpoint, str(status), hist, len(self.bounds))
        self._series[key] = s
        return s

    def _bad_endpoint(self, endpoint: object) -> str:
        """The label for an endpoint that is not a string (an app's resolver returned a
        route id, say): unmatched, counted, since a scrape could not write it."""
        try:
            raise TypeError(f"endpoint must be a str, got {type(endpoint).__name__} {endpoint!r}")
        except TypeError:
            self.internal_error("collector.labels")
        return UNMATCHED

    def _overflow_hist(self) -> LatencyHistogram:
        hist = self._endpoint_hists.get(OVERFLOW)
        if hist is None:
            hist = LatencyHistogram(self.layout)
            self._endpoint_hists[OVERFLOW] = hist
        return hist

    # -------------------------------------------------------------------- reads

    def flush(self) -> None:
        """Fold every thread's pending observations now (reads do this themselves)."""
        self._journals.drain()

    def series(self) -> list[SeriesSnapshot]:
        """Every request series with its count, sum and bucket counts."""
        with self._journals.lock:
            self._journals.drain()
            out = []
            for s in self._series.values():
                out.append(
                    SeriesSnapshot(
                        s.method, s.endpoint, s.status, s.labels, s.count, s.sum, s.buckets
                    )
                )
        return out

    def endpoints(self) -> list[str]:
        """Endpoints that have a percentile histogram."""
        with self._journals.lock:
            self._journals.drain()
            return list(self._endpoint_hists)

    def histogram(self, endpoint: str | None = None) -> LatencyHistogram:
        """A copy of one endpoint's latency histogram, or of all endpoints merged."""
        with self._journals.lock:
            self._journals.drain()
            if endpoint is not None:
                h = self._endpoint_hists.get(endpoint)
                return h.copy() if h is not None else LatencyHistogram(self.layout)
            merged = LatencyHistogram(self.layout)
            for h in self._endpoint_hists.values():
                merged.merge(h)
            return merged

    def recent_histogram(self) -> LatencyHistogram:
        """All endpoints' latencies over the last one to two windows."""
        with self._journals.lock:
            self._journals.drain()
            now = self.clock()
            if now >= self._recent_until:
                self._rotate_recent(now)
            h = self._recent.copy()
            h.merge(self._recent_prev)
            return h

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
        ps = [q * 100.0 for q in self.quantiles]
        cache = self._percentile_cache
        with self._journals.lock:
            self._journals.drain()
            out = {}
            for endpoint, h in self._endpoint_hists.items():
                if h.total:
                    cached = cache.get(endpoint)
                    if cached is not None and cached[0] == h.total:
                        out[endpoint] = cached[1]
                    else:
                        values = h.percentiles(ps)
                        cache[endpoint] = (h.total, values)
                        out[endpoint] = values
        return out

    def in_progress(self) -> int:
        """Requests in progress right now."""
        return self._journals.in_flight()

    def counters(self) -> dict[str, dict[tuple[str, ...], float]]:
        """User-defined counters: name -> label values -> total."""
        out: dict[str, dict[tuple[str, ...], float]] = {}
        for key, v in self._counters.items().items():
            name: str = key[0]  # type: ignore[index]
            values: tuple[str, ...] = key[1]  # type: ignore[index]
            family = name[:-6] if name.endswith("_total") else name
            per = out.setdefault(family, {})  # capped when written
            per[values] = per.get(values, 0) + v
        return out

    def counter_value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One counter's total; with ``labels=None``, summed over every label set."""
        family = name[:-6] if name.endswith("_total") else name
        per = self.counters().get(family, {})
        if labels is None:
            return float(sum(per.values()))
        return float(per.get(_split_labels(labels)[1], 0))

    @property
    def window_seconds(self) -> int:
        """Seconds covered by the realtime snapshot's sliding window."""
        return self._window.size

    def counter_names(self) -> set[str]:
        """Names of the counters defined so far (incremented or declared)."""
        return {n[:-6] if n.endswith("_total") else n for n in self._counter_help}

    def counter_labels(self, name: str) -> tuple[str, ...]:
        return self._counter_help.get(name, ("", ()))[1]

    def counter_help(self, name: str) -> str:
        """The help text given to :meth:`define_counter` (``""`` if none)."""
        return self._counter_help.get(name, ("", ()))[0]

    def gauges(self) -> dict[str, dict[tuple[str, ...], float]]:
        with self._gauge_lock:
            return {k: dict(v) for k, v in self._gauges.items()}

    def gauge_labels(self, name: str) -> tuple[str, ...]:
        return self._gauge_help.get(name, ("", ()))[1]

    def histograms(self) -> dict[str, HistogramSnapshot]:
        """User-defined histograms by name (see :meth:`observe_histogram`)."""
        return self._histograms.snapshot()

    def slow_requests(self) -> dict[tuple[str, str], int]:
        """Slow requests by (method, endpoint)."""
        return {k: int(v) for k, v in self._slow.items().items()}  # type: ignore[misc]

    def size_histograms(self) -> dict[int, dict[tuple[str, ...], tuple[list[int], float]]]:
        """Body sizes (:class:`~eventmon.core.sizes.SizeHistograms`): 0 request, 1 response."""
        return self.sizes.snapshot()

    def internal_errors(self) -> dict[str, int]:
        """Faults inside eventmon, by place."""
        return {str(k): int(v) for k, v in self._errors.items().items()}

    def total_requests(self) -> int:
        return sum(s.count for s in self.series())

    def get_realtime_metrics(self) -> RealtimeMetrics:
        """The realtime snapshot over the sliding window."""
        with self._journals.lock:
            self._journals.drain()
            now = self.clock()
            stats = self._window.stats(now)
            total = sum(s.count for s in self._series.values())
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

        Entries are ``(method, endpoint, status, seconds, end)``: for exporters that
        need every observation (OpenTelemetry). It runs under the journal lock, off
        the request path: it must be quick and must not read the collector. A
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
        """Wait for queued slow-request hooks to run (tests, shutdown)."""
        return self._hooks.flush(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop background threads; idempotent."""
        self._hooks.shutdown(timeout)


def _cut_points(
    layout: HdrLayout, bounds: tuple[float, ...]
) -> tuple[list[float], list[int], list[int]]:
    """Merged cut points of HDR slots and Prometheus bounds, for a one-bisect fold.

    For a value ``v`` in seconds, ``r = bisect_right(cuts, v)`` is its region;
    ``slot_of[r]`` is its HDR slot (the slot of ``int(v * 1e6)`` microseconds) and
    ``bucket_of[r]`` its Prometheus bucket (the first bound ``b`` with ``v <= b``).
    A bound's cut sits just above it, so a value equal to a bound stays in it.
    """
    # Slot i holds integer microseconds [value_at(i), value_at(i + 1)); since a value
    # v lands in int(v * 1e6), slot i starts at v = value_at(i) / 1e6 (slot 0 at -inf).
    starts = [(layout.value_at(i) / _MICROS, 0, i) for i in range(1, layout.counts_len)]
    tops = [(math.nextafter(b, math.inf), 1, k + 1) for k, b in enumerate(bounds)]
    top_slot = layout.index(layout.highest)  # values beyond the range clamp to it
    cuts: list[float] = []
    slot_of = [0]
    bucket_of = [0]
    slot = bucket = 0
    for value, kind, n in sorted(starts + tops):
        if kind == 0:
            slot = min(n, top_slot)
        else:
            bucket = n
        if cuts and cuts[-1] == value:
            slot_of[-1], bucket_of[-1] = slot, bucket
            continue
        cuts.append(value)
        slot_of.append(slot)
        bucket_of.append(bucket)
    return cuts, slot_of, bucket_of


def _bad_seconds(seconds: object) -> str:
    return f"seconds must be a finite number >= 0, got {seconds!r}"


def _split_labels(labels: Mapping[str, str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not labels:
        return (), ()
    items = sorted(labels.items())
    return tuple(k for k, _ in items), tuple(str(v) for _, v in items)


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
