"""Request and response body sizes: two histograms by method, endpoint and status.

Opt-in (``size_metrics=True`` on an adapter): a request then costs a few dict
updates in this thread's own cells (:class:`~eventmon.core.counter.Counter`, no
lock); bucket counts and sums are added up when the page is rendered. The label
sets are capped by the collector's :class:`~eventmon.core.registry.LabelPolicy`.
Listeners (the OpenTelemetry bridge) receive each request's sizes as observed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from eventmon.core.counter import Counter
from eventmon.core.registry import LabelPolicy

__all__ = ["REQUEST_SIZE", "RESPONSE_SIZE", "SIZE_BUCKETS", "SIZE_HELP", "SizeHistograms"]

#: Bucket upper bounds in bytes: 100 B, 1 kB, 10 kB, 100 kB, 1 MB, 10 MB (+Inf added).
SIZE_BUCKETS: tuple[float, ...] = (100.0, 1e3, 1e4, 1e5, 1e6, 1e7)
REQUEST_SIZE = "http_request_size_bytes"
RESPONSE_SIZE = "http_response_size_bytes"
#: (family name, help text) of the two histograms, in the order of their kind (0, 1).
SIZE_HELP: tuple[tuple[str, str], ...] = (
    (REQUEST_SIZE, "HTTP request body size in bytes (Content-Length)."),
    (RESPONSE_SIZE, "HTTP response body size in bytes, as sent."),
)

_method_label = LabelPolicy.method

#: ``listener(method, endpoint, status, request bytes, response bytes)``; the endpoint as
#: given to :meth:`SizeHistograms.observe` (a template, or ``(template, *values)``).
SizeListener = Callable[[str, "str | tuple[str, ...]", int, int, int], object]


class SizeHistograms:
    """Byte sizes of request and response bodies per (method, endpoint, status)."""

    __slots__ = ("_cells", "_listeners", "_on_fault", "_sets")

    def __init__(
        self, policy: LabelPolicy, on_fault: Callable[[str], object] | None = None
    ) -> None:
        self._cells = Counter()
        self._sets = policy.metric(REQUEST_SIZE, 3)
        self._listeners: tuple[SizeListener, ...] = ()
        self._on_fault = on_fault

    def add_listener(self, listener: SizeListener) -> None:
        """Also hand each request's sizes to ``listener``, in the observing thread.

        One that raises is counted (``size_listener``) through ``on_fault``, never
        propagated: the request and the other listeners go on.
        """
        self._listeners = (*self._listeners, listener)

    def observe(
        self,
        method: str,
        endpoint: str | tuple[str, ...],
        status: int,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """Record one request's body sizes (negative sizes count as 0).

        ``endpoint`` may be ``(template, *extra label values)``: the label values
        are then (method, template, status, *extra values).
        """
        if type(endpoint) is str:
            key = self._sets.admit((_method_label(method), endpoint, str(status)))
        else:
            key = self._sets.admit((_method_label(method), endpoint[0], str(status), *endpoint[1:]))
        request_bytes = max(request_bytes, 0)
        response_bytes = max(response_bytes, 0)
        inc = self._cells.inc
        # Keys: (label values, 0 request / 1 response, bucket index or -1 for the sum).
        inc((key, 0, bisect_left(SIZE_BUCKETS, request_bytes)))
        inc((key, 0, -1), request_bytes)
        inc((key, 1, bisect_left(SIZE_BUCKETS, response_bytes)))
        inc((key, 1, -1), response_bytes)
        for listener in self._listeners:
            try:
                listener(method, endpoint, status, request_bytes, response_bytes)
            except Exception:
                if self._on_fault is not None:
                    self._on_fault("size_listener")

    def snapshot(self) -> dict[int, dict[tuple[str, ...], tuple[list[int], float]]]:
        """Per kind (0 request, 1 response): label values -> (counts per bound and +Inf, sum)."""
        out: dict[int, dict[tuple[str, ...], tuple[list[int], float]]] = {0: {}, 1: {}}
        width = len(SIZE_BUCKETS) + 1
        for entry, v in self._cells.items().items():
            key: tuple[str, ...] = entry[0]  # type: ignore[index]
            kind: int = entry[1]  # type: ignore[index]
            slot: int = entry[2]  # type: ignore[index]
            counts, total = out[kind].get(key) or ([0] * width, 0.0)
            if slot == -1:
                total += v
            else:
                counts[slot] += int(v)
            out[kind][key] = (counts, total)
        return out
