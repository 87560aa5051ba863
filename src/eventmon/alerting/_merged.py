"""Rule values for a whole pre-fork instance, from the workers' merged counts.

With worker aggregation on, each worker's collector sees only its own slice of
the traffic. :class:`MergedSampler` reads the merged view instead (every worker,
live or exited, as ``/metrics`` shows it) and turns its cumulative counts into
windowed values by keeping a few past samples, as :class:`RuleMetrics` does for
counters: the value over the window is the current total minus the last sample
taken at or before the window's start.

Unlike one process, whose first look comes when it starts, a worker may first
look at an instance that has served for hours: so the first sample is only a
baseline, and every windowed value reads NaN (no data: comparisons are false)
until a later one. The engine takes that baseline when it starts, and every
worker keeps sampling while it does not lead, so a new leader has the history.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from eventmon.core.histogram import LatencyHistogram
from eventmon.core.process import ResourceLimits, instance_limits
from eventmon.snapshot import RealtimeMetrics

if TYPE_CHECKING:
    from eventmon.exporters.multiprocess import MergedView

__all__ = ["MergedSampler"]

_PCT = {"p50_response_time": 50.0, "p90_response_time": 90.0, "p95_response_time": 95.0,
        "p99_response_time": 99.0}  # fmt: skip

_REALTIME = [(n, n, ()) for n in (
    "active_connections", "requests_per_second", "avg_response_time", "error_rate",
    "memory_usage", "cpu_usage", "memory_rss_bytes",
    "p50_response_time", "p95_response_time", "p99_response_time",
)]  # fmt: skip
_T = TypeVar("_T")
Ref = tuple[str, str, tuple[tuple[str, str], ...]]


class _Totals(NamedTuple):
    requests: float
    errors: float
    latency: float  # seconds
    cpu: float  # seconds, every worker that ever ran


def _is_error(status: str) -> bool:
    """A 5xx (or higher), as the collector's window counts errors."""
    try:
        return int(status) >= 500
    except ValueError:
        return False


def _totals(view: MergedView) -> _Totals:
    requests = errors = 0
    latency = 0.0
    for s in view.series():
        requests += s.count
        latency += s.sum
        if _is_error(s.status_code):
            errors += s.count
    cpu = sum(p[1] for p in view.processes())
    return _Totals(float(requests), float(errors), latency, cpu)


def _advance(
    hist: deque[tuple[float, _T]], now: float, value: _T, window: float, step: float
) -> tuple[float, _T] | None:
    """Record ``value`` (at most one sample per ``step``); the baseline, None at first."""
    if not hist:
        hist.append((now, value))
        return None
    if now - hist[-1][0] >= step:
        hist.append((now, value))
    # Keep one sample at or before the window's start as the baseline.
    while len(hist) > 1 and hist[1][0] <= now - window:
        hist.popleft()
    return hist[0]


class MergedSampler:
    """Windowed rule values from a :class:`MergedView`'s cumulative counts.

    Args:
        window: seconds the windowed values cover (the collector's window).
        limits: what the instance may use, for ``cpu_usage`` and ``memory_usage``
            (default: the container's limits, else the host's).
        step: keep at most one past sample per this many seconds (a reader that
            samples every second, like the dashboard, keeps a few, not one per call).
    """

    def __init__(
        self, window: float, *, limits: ResourceLimits | None = None, step: float = 0.0
    ) -> None:
        self.window = window
        self.step = step
        self._limits = limits
        self._totals: deque[tuple[float, _Totals]] = deque()
        self._counters: dict[str, deque[tuple[float, float]]] = {}
        self._hists: dict[str | None, deque[tuple[float, LatencyHistogram]]] = {}
        self._steps = (window, step)
        #: seconds the last sample's windowed values cover, and the requests ever served
        self.span = 0.0
        self.total_requests = 0

    def sample(
        self,
        view: MergedView,
        refs: Iterable[Ref],
        now: float,
        *,
        builtin: Iterable[str],
        declared: Iterable[str],
        scale_out_gauge: str,
    ) -> dict[str, float]:
        """Values for ``(key, name, labels)`` triples, the instance's as of ``now``."""
        builtin = set(builtin)
        declared = set(declared)
        out: dict[str, float] = {}
        current = _totals(view)
        baseline = _advance(self._totals, now, current, self.window, self.step)
        first = baseline is None
        base_t, base = baseline or (now, current)
        span = max(now - base_t, 1.0)
        self.span = span
        self.total_requests = int(current.requests)
        d = _Totals(*(max(c - b, 0.0) for c, b in zip(current, base, strict=True)))
        counters = view.counters()
        gauges = view.gauges()
        limits = self._limits or instance_limits()
        # One window per endpoint and per counter per sample, however many refs read it.
        windows: dict[str | None, LatencyHistogram | None] = {}
        increases: dict[str, float] = {}
        for key, name, labels in refs:
            if key in out:
                continue
            if name == "active_connections":
                out[key] = float(view.in_progress())
            elif name in ("memory_rss_bytes", "memory_usage"):
                rss = float(sum(p[2] or 0 for p in view.processes()))
                total = limits.memory_bytes
                pct = rss / total * 100.0 if total > 0 else 0.0
                out[key] = rss if name == "memory_rss_bytes" else pct
            elif name in _PCT:
                endpoint = dict(labels).get("endpoint")
                if endpoint not in windows:
                    windows[endpoint] = self._window_histogram(view, endpoint, now)
                h = windows[endpoint]
                out[key] = math.nan if h is None else h.percentile(_PCT[name]) * 1000.0
            elif first and name in builtin and name != "scale_out_time":
                out[key] = math.nan
            elif name == "requests_per_second":
                out[key] = d.requests / span
            elif name == "error_rate":
                out[key] = d.errors / d.requests if d.requests else 0.0
            elif name == "availability":
                out[key] = 1.0 - (d.errors / d.requests if d.requests else 0.0)
            elif name == "avg_response_time":
                out[key] = d.latency / d.requests * 1000.0 if d.requests else 0.0
            elif name == "cpu_usage":
                cores = limits.cpu_cores
                out[key] = max(0.0, min(100.0, d.cpu / span / cores * 100.0)) if cores else 0.0
            elif name == "scale_out_time":
                vals = gauges.get(scale_out_gauge) or {}
                out[key] = max(vals.values()) if vals else 0.0
            elif name in gauges:
                out[key] = max(gauges[name].values()) if gauges[name] else math.nan
            elif name.endswith("_total") and name[:-6] in counters:
                out[key] = float(sum(counters[name[:-6]].values()))
            elif name.endswith("_total") and name[:-6] in declared:
                out[key] = 0.0
            else:
                if name not in increases:
                    counted = float(sum(counters.get(name, {}).values()))
                    increases[name] = self._increase(name, counted, now)
                out[key] = increases[name]
        return out

    def realtime(self, view: MergedView, now: float) -> RealtimeMetrics:
        """The instance's realtime snapshot (as ``get_realtime_metrics()`` for one process).

        Windowed figures read 0 until the second sample.
        """
        names = [name for name, _, _ in _REALTIME]
        v = self.sample(view, _REALTIME, now, builtin=names, declared=(), scale_out_gauge="")
        v = {k: 0.0 if math.isnan(x) else x for k, x in v.items()}
        return RealtimeMetrics(
            active_connections=int(v["active_connections"]),
            requests_per_second=v["requests_per_second"],
            average_response_time=v["avg_response_time"],
            error_rate=v["error_rate"],
            memory_usage=v["memory_usage"],
            cpu_usage=v["cpu_usage"],
            memory_rss_bytes=int(v["memory_rss_bytes"]),
            p50_response_time=v["p50_response_time"],
            p95_response_time=v["p95_response_time"],
            p99_response_time=v["p99_response_time"],
            total_requests=self.total_requests,
            window_seconds=min(self.span, self.window) if self.span else 0.0,
            timestamp=time.time(),
        )

    def _increase(self, name: str, total: float, now: float) -> float:
        # The instance may have counted for hours before the first look: NaN then.
        baseline = _advance(self._counters.setdefault(name, deque()), now, total, *self._steps)
        if baseline is None:
            return math.nan
        base = baseline[1]
        return total - base if total >= base else total  # a reset counts from zero

    def _window_histogram(
        self, view: MergedView, endpoint: str | None, now: float
    ) -> LatencyHistogram | None:
        """The latencies recorded over the window (``None``: every endpoint); None at first."""
        if endpoint is not None:
            current = view.histogram(endpoint)
        else:
            current = LatencyHistogram(view.layout)
            for ep in view.endpoints():
                current.merge(view.histogram(ep))
        baseline = _advance(self._hists.setdefault(endpoint, deque()), now, current, *self._steps)
        if baseline is None:
            return None
        base = baseline[1]
        diff = current.copy()
        counts = diff.counts
        for i, n in enumerate(base.counts):
            if n:
                counts[i] = max(counts[i] - n, 0)
        diff.rebuild_groups()
        return diff
