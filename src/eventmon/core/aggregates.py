"""The request aggregates: what the journal fold writes and the readers read.

Per ``(method, endpoint, status_code)`` series a count, a sum and Prometheus
bucket counts; per endpoint an HDR histogram; over all endpoints a "recent"
histogram (the last one to two windows) and the per-second sliding window.
:class:`RequestAggregates` holds them and applies the collector's label policy
(:class:`~eventmon.core.registry.LabelPolicy`) to request series in one place,
``RequestAggregates._new_series``.

Not thread-safe by itself: :meth:`RequestAggregates.fold` runs under the journal
lock (:class:`~eventmon.core.journal.Journals` calls it), and the read methods
are called by :class:`~eventmon.collector.MetricsCollector` under that lock
right after it has drained the journals.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon.core import fold as _fold_module
from eventmon.core._native import cells
from eventmon.core.histogram import HdrLayout, LatencyHistogram
from eventmon.core.registry import (
    OVERFLOW,
    UNMATCHED,
    LabelPolicy,
    extra_label_pairs,
    request_labels,
)
from eventmon.core.window import SlidingWindow, WindowStats
from eventmon.types import Clock

__all__ = ["RequestAggregates", "SeriesSnapshot", "check_buckets"]

_MICROS = 1_000_000
_method_label = LabelPolicy.method


def check_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    """Bucket upper bounds as floats: positive, finite seconds, strictly increasing.

    Anything else raises :class:`~eventmon.ConfigurationError` saying what to give.
    """
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
    if not bounds or any(not math.isfinite(b) or b <= 0 for b in bounds):
        raise ConfigurationError(f"buckets must be positive finite seconds, got {buckets!r}")
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ConfigurationError(f"buckets must be strictly increasing, got {buckets!r}")
    return bounds


@dataclass(frozen=True, slots=True)
class SeriesSnapshot:
    """One (method, endpoint, status_code) series as read at one moment; ``sum`` in seconds."""

    method: str
    endpoint: str
    status_code: str
    labels: str  # the escaped label pairs, ready for the exposition formats
    count: int
    sum: float
    buckets: tuple[int, ...]  # per bound, not cumulative; the last is +Inf
    extra: tuple[str, ...] = ()
    """Values of the collector's ``extra_label_names`` (header or callback labels)."""


class _Series:
    """Aggregates of one label set; written only under the journal lock."""

    __slots__ = (
        "bucket_counts",
        "endpoint",
        "extra",
        "hist",
        "labels",
        "method",
        "status",
        "sums",
    )

    def __init__(  # noqa: PLR0917 - built in one place, by _new_series
        self,
        method: str,
        endpoint: str,
        status: str,
        hist: LatencyHistogram,
        n_buckets: int,
        extra: tuple[str, ...] = (),
        extra_names: tuple[str, ...] = (),
    ) -> None:
        self.method = method
        self.endpoint = endpoint
        self.status = status
        self.extra = extra
        self.labels = request_labels(method, endpoint, status) + extra_label_pairs(
            extra_names, extra
        )
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


class RequestAggregates:
    """The request series table, the endpoint histograms and the sliding window.

    Args:
        layout: the HDR layout of every latency histogram.
        bounds: Prometheus bucket upper bounds in seconds (validated by the collector).
        label_policy: the collector's label policy.
        window: seconds covered by the sliding window and the recent histogram.
        clock: monotonic clock in seconds (read at construction and by
            :meth:`recent_histogram`).
        on_fault: ``on_fault(where)`` logs and counts the exception being handled
            (the collector's ``internal_error``).
    """

    def __init__(
        self,
        layout: HdrLayout,
        bounds: tuple[float, ...],
        *,
        label_policy: LabelPolicy,
        window: int,
        clock: Clock,
        on_fault: Callable[[str], None],
    ) -> None:
        self.layout = layout
        self.bounds = bounds
        self.clock = clock
        self._on_fault = on_fault
        cuts, slot_of, bucket_of = _cut_points(layout, bounds)
        #: The fold loop: :data:`eventmon.core.fold.fold` (tests swap in the other one).
        self.fold_batch: Callable[..., int] = _fold_module.fold
        self.cuts: Sequence[float] = cells("d", cuts)
        self.slot_of: Sequence[int] = cells("q", slot_of)
        self.bucket_of: Sequence[int] = cells("q", bucket_of)
        # Keyed as the fold sees entries: (method, endpoint, status_code), the endpoint
        # a (template, *extra values) tuple when extra labels are on.
        self.series_table: dict[tuple[str, Any, int], _Series] = {}
        self.series_sets = label_policy.metric("http_requests_total", 3)
        self.endpoint_hists: dict[str, LatencyHistogram] = {}
        self._percentile_cache: dict[str, tuple[int, list[float]]] = {}
        self.endpoint_sets = label_policy.metric("http_request_duration_hdr_seconds", 1)
        now = clock()
        self.window = SlidingWindow(window, started=now)
        # Overall latency over the recent past: two histograms rotated every window.
        self.recent = LatencyHistogram(layout)
        self.recent_prev = LatencyHistogram(layout)
        self.recent_until = now + window
        #: Names of the extra request labels (``header_labels``, ``label_callbacks``);
        #: set by :meth:`MetricsCollector.use_extra_labels`. Empty: none.
        self.extra_names: tuple[str, ...] = ()

    def use_extra_names(self, names: tuple[str, ...], where: str = "") -> None:
        """Label request series with the extra label ``names`` too (empty: no change).

        Other names than those set before are refused: the series table has one shape.
        """
        known = self.extra_names
        if not names or names == known:
            return
        if known:
            raise ConfigurationError(
                f"this collector already records the extra labels {list(known)} for another"
                f" adapter, not {list(names)}{where}; give both the same"
                " header_labels/label_callbacks names, or each its own collector"
            )
        self.extra_names = names

    def labelled(self, endpoint: object) -> tuple[str, tuple[str, ...], bool]:
        """(route template, extra label values, whether ``endpoint`` was a well-formed
        ``(template, *values)``) of a recorded endpoint; never raises."""
        names = self.extra_names
        if type(endpoint) is str:
            return endpoint, ("",) * len(names), False
        if (
            type(endpoint) is tuple
            and names
            and len(endpoint) == len(names) + 1
            and all(type(v) is str for v in endpoint)
        ):
            return endpoint[0], endpoint[1:], True
        return self.bad_endpoint(endpoint), ("",) * len(names), False

    # --------------------------------------------------------------------- fold

    def fold(self, batch: list[tuple[Any, ...]]) -> None:
        """Add journal entries ``(method, endpoint, status_code, seconds, end)``.

        Runs under the journal lock. The loop itself is :mod:`eventmon.core.fold`
        (compiled when it could be built); it stops at each rotation of the recent
        histogram.
        """
        fold = self.fold_batch
        window = self.window
        i = 0
        while True:
            i = fold(
                batch,
                i,
                self.series_table,
                self._new_series,
                self.cuts,
                self.slot_of,
                self.bucket_of,
                self.recent,
                self.recent_until,
                window.ring,
                window.size,
            )
            if i >= len(batch):
                return
            self._rotate_recent(batch[i][4])

    def _rotate_recent(self, now: float) -> None:
        size = self.window.size
        if now >= self.recent_until + size:
            self.recent_prev.reset()  # idle for over a window: nothing recent to keep
        else:
            self.recent_prev = self.recent
        self.recent = LatencyHistogram(self.layout)
        # Keep rotation instants on a fixed grid from start.
        periods = math.floor((now - self.recent_until) / size) + 1
        self.recent_until += periods * size

    def _new_series(self, method: str, endpoint: Any, status: int) -> _Series:
        # The fold calls this for each key it has not seen: the label policy applies here.
        table = self.series_table
        names = self.extra_names
        key_endpoint: Any = endpoint
        extra: tuple[str, ...] = ()
        if type(endpoint) is not str or names:
            # A bad endpoint, or (with extra labels) a (template, *values) key or a plain
            # template, which shares the series whose values are all "".
            endpoint, extra, well_formed = self.labelled(endpoint)
            if not well_formed:
                # Never stored under its own key: each such entry comes back here and counts.
                key_endpoint = (endpoint, *extra) if names else endpoint
                s = table.get((_method_label(method), key_endpoint, status))
                if s is not None:
                    return s
        label = _method_label(method)
        if label != method:
            # A made-up method is never stored under its own key, so it cannot grow memory.
            s = table.get((label, key_endpoint, status))
            if s is not None:
                return s
        key = (label, key_endpoint, status)
        if self.series_sets.admit(key) is not key:
            okey = (OVERFLOW, OVERFLOW, -1)
            s = table.get(okey)
            if s is None:
                s = _Series(
                    OVERFLOW,
                    OVERFLOW,
                    OVERFLOW,
                    self._overflow_hist(),
                    len(self.bounds),
                    (OVERFLOW,) * len(names),
                    names,
                )
                table[okey] = s
            return s
        hist = self.endpoint_hists.get(endpoint)
        if hist is None:
            one = (endpoint,)
            if self.endpoint_sets.admit(one) is one:
                hist = LatencyHistogram(self.layout)
                self.endpoint_hists[endpoint] = hist
            else:
                hist = self._overflow_hist()
        s = _Series(label, endpoint, str(status), hist, len(self.bounds), extra, names)
        table[key] = s
        return s

    def bad_endpoint(self, endpoint: object) -> str:
        """The label for an endpoint that is not a string (an app's resolver returned a
        route id, say): unmatched, counted, since a scrape could not write it."""
        try:
            raise TypeError(f"endpoint must be a str, got {type(endpoint).__name__} {endpoint!r}")
        except TypeError:
            self._on_fault("collector.labels")
        return UNMATCHED

    def _overflow_hist(self) -> LatencyHistogram:
        hist = self.endpoint_hists.get(OVERFLOW)
        if hist is None:
            hist = LatencyHistogram(self.layout)
            self.endpoint_hists[OVERFLOW] = hist
        return hist

    # ------------------------------------------------- reads (under the journal lock)

    def series(self) -> list[SeriesSnapshot]:
        """Every request series with its count, sum (seconds) and bucket counts."""
        return [
            SeriesSnapshot(
                s.method, s.endpoint, s.status, s.labels, s.count, s.sum, s.buckets, s.extra
            )
            for s in self.series_table.values()
        ]

    def total_requests(self) -> int:
        """Requests folded so far, over every series."""
        return sum(s.count for s in self.series_table.values())

    def endpoints(self) -> list[str]:
        """Endpoints that have a percentile histogram."""
        return list(self.endpoint_hists)

    def histogram(self, endpoint: str | None = None) -> LatencyHistogram:
        """A copy of one endpoint's latency histogram (seconds), or of all merged."""
        if endpoint is not None:
            h = self.endpoint_hists.get(endpoint)
            return h.copy() if h is not None else LatencyHistogram(self.layout)
        merged = LatencyHistogram(self.layout)
        for h in self.endpoint_hists.values():
            merged.merge(h)
        return merged

    def recent_histogram(self) -> LatencyHistogram:
        """All endpoints' latencies (seconds) over the last one to two windows."""
        now = self.clock()
        if now >= self.recent_until:
            self._rotate_recent(now)
        h = self.recent.copy()
        h.merge(self.recent_prev)
        return h

    def window_stats(self, now: float) -> WindowStats:
        """Totals of the sliding window up to ``now`` (``clock()`` seconds)."""
        return self.window.stats(now)

    def endpoint_percentiles(self, quantiles: Sequence[float]) -> dict[str, list[float]]:
        """Per endpoint that served something, ``quantiles`` (0–1) in seconds.

        An endpoint that served nothing since the previous call reuses its figures,
        so a scrape of many quiet endpoints costs little.
        """
        ps = [q * 100.0 for q in quantiles]
        cache = self._percentile_cache
        out = {}
        for endpoint, h in self.endpoint_hists.items():
            if h.total:
                cached = cache.get(endpoint)
                if cached is not None and cached[0] == h.total:
                    out[endpoint] = cached[1]
                else:
                    values = h.percentiles(ps)
                    cache[endpoint] = (h.total, values)
                    out[endpoint] = values
        return out


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
