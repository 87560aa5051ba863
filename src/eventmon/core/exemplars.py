"""Exemplars: the trace of one recent request per histogram bucket.

Off unless asked for (``MetricsCollector(exemplars=True)`` or a middleware's
``exemplars=True``), and then cheap: the adapter notes the request's trace id
in a context variable when the request enters the app; when the request ends
the collector keeps ``(trace_id, seconds, unix time)`` for the series and bucket
the duration fell in, overwriting the one before. A scrape in OpenMetrics shows
them on the ``_bucket`` samples; the text format 0.0.4 has no exemplars.

The trace id comes from the active OpenTelemetry span when there is one (and
``opentelemetry-api`` is installed), else from the W3C ``traceparent`` request
header. Only sampled traces are kept: an exemplar pointing at a trace the tracer
dropped leads nowhere.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

__all__ = [
    "ExemplarStore",
    "current_trace",
    "exemplars_per_shown_bucket",
    "request_trace_id",
    "trace_id_from_traceparent",
]

#: The trace id of the request being served in this context, noted by the adapters.
current_trace: ContextVar[str | None] = ContextVar("eventmon_trace_id", default=None)

_HEX = frozenset("0123456789abcdef")
_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16
_otel: Any = None  # opentelemetry.trace once looked up; False when not installed


def trace_id_from_traceparent(header: str | bytes | None) -> str | None:
    """The trace id of a W3C ``traceparent`` header if valid and sampled, else ``None``.

    ``00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`` gives
    ``4bf92f3577b34da6a3ce929d0e0e4736``.
    """
    if header is None:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    header = header.strip()
    # version-traceid-parentid-flags; a later version may append fields after flags.
    if len(header) < 55 or header[2] != "-" or header[35] != "-" or header[52] != "-":
        return None
    version = header[:2]
    if version == "ff" or (version == "00" and len(header) != 55):
        return None
    if len(header) > 55 and header[55] != "-":
        return None
    trace_id = header[3:35]
    parent = header[36:52]
    flags = header[53:55]
    if not _HEX.issuperset(version + trace_id + parent + flags):
        return None
    if trace_id == _NO_TRACE or parent == _NO_SPAN or not int(flags, 16) & 1:
        return None
    return trace_id


def otel_trace_id() -> str | None:
    """The trace id of the active OpenTelemetry span if valid and sampled, else ``None``."""
    global _otel
    if _otel is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _otel = False
        else:
            _otel = trace
    if _otel is False:
        return None
    ctx = _otel.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return format(ctx.trace_id, "032x")


def request_trace_id(traceparent: str | bytes | None) -> str | None:
    """The active OpenTelemetry span's trace id, else the ``traceparent`` header's."""
    return otel_trace_id() or trace_id_from_traceparent(traceparent)


class ExemplarStore:
    """The latest ``(trace_id, seconds, unix time)`` per request series and bucket.

    Written from the request threads without a lock (one dict store, atomic
    under the GIL); at most ``max_entries`` keys, past which only keys already
    held are updated, so memory stays bounded whatever the traffic.
    """

    __slots__ = ("_latest", "bounds", "max_entries")

    def __init__(self, bounds: tuple[float, ...], max_entries: int) -> None:
        self.bounds = bounds
        self.max_entries = max_entries
        self._latest: dict[tuple[str, str, int, int], tuple[str, float, float]] = {}

    def offer(  # noqa: PLR0917 - once per traced request: no keyword parsing
        self, method: str, endpoint: str, status: int, seconds: float, trace_id: str, at: float
    ) -> None:
        """Keep this request as its bucket's exemplar (``at``: unix time it ended)."""
        # bisect_left: the first bound >= seconds, as a value equal to a bound counts in it.
        key = (method, endpoint, status, bisect_left(self.bounds, seconds))
        latest = self._latest
        if len(latest) < self.max_entries or key in latest:
            latest[key] = (trace_id, seconds, at)

    def by_series(self) -> dict[tuple[str, str, str], dict[int, tuple[str, float, float]]]:
        """``(method, endpoint, status)`` -> bucket index -> exemplar (last index: +Inf)."""
        out: dict[tuple[str, str, str], dict[int, tuple[str, float, float]]] = {}
        for (method, endpoint, status, k), ex in list(self._latest.items()):
            out.setdefault((method, endpoint, str(status)), {})[k] = ex
        return out


def exemplars_per_shown_bucket(
    per: Mapping[int, tuple[str, float, float]], shown: int
) -> list[tuple[str, float, float] | None]:
    """One series' exemplar for each of ``shown`` bounds and then +Inf (``None`` if none).

    ``per``: bucket index -> exemplar, as :meth:`ExemplarStore.by_series` gives it.
    Buckets past the shown bounds (the ``"ms"`` unit shows six) all fall in +Inf:
    the latest of their exemplars goes there.
    """
    inf = max((per[k] for k in per if k >= shown), key=lambda e: e[2], default=None)
    return [*(per.get(k) for k in range(shown)), inf]
