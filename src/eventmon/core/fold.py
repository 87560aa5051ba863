"""The journal fold: where each recorded request reaches the aggregates.

Readers (and a writer whose journal is full) fold journal entries
``(method, endpoint, status, seconds, end)`` into the per-series bucket counts
and sums, the per-endpoint HDR histograms, the recent histogram and the
per-second window. It is the one loop that runs once per request, so it has two
implementations that must agree exactly:

* :func:`fold_python`, the reference, always available;
* ``eventmon.core._speedups.fold``, the same loop in C, built at install time
  when a C compiler is present (about four times faster: 152 against 592 ns
  per observation in the README's ``bench_core.py`` figures; see ``docs/design.md``).

:data:`fold` is the C one when it was built, unless the environment variable
``EVENTMON_PURE_PYTHON`` is set to a non-empty value; :data:`COMPILED` says
which. ``tests/core/test_fold.py`` runs both on the same batches.

Both take ``(batch, start, series, new_series, cuts, slot_of, bucket_of,
recent, recent_until, ring, size)`` and return ``stop``: they fold
``batch[start:stop]``, stopping early before the first entry that ended at or
after ``recent_until`` so that the caller can rotate the recent histogram.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from eventmon.core._native import speedups

__all__ = ["COMPILED", "fold", "fold_python"]

GROUP_SHIFT = 5  # LatencyHistogram.GROUP_SHIFT


def fold_python(  # noqa: PLR0917 - positional, like the C function
    batch: list[tuple[Any, ...]],
    start: int,
    series: dict[Any, Any],
    new_series: Callable[[str, str, int], Any],
    cuts: Sequence[float],
    slot_of: Sequence[int],
    bucket_of: Sequence[int],
    recent: Any,
    recent_until: float,
    ring: Any,
    size: int,
) -> int:
    """Fold ``batch[start:]``; the reference implementation (see the module docstring).

    One ``bisect`` into the merged cut points of the HDR slots and the Prometheus
    bounds gives both the HDR slot and the bucket of a value.
    """
    # Only the slots: the recent histogram's group totals are rebuilt when it is
    # read (RequestAggregates.recent_histogram merges it into a fresh copy).
    recent_counts = recent.counts
    # The current window slot covers [sec_start, sec_end); base is its offset in ring.
    sec_start = sec_end = -1.0
    base = 0
    for i in range(start, len(batch)):
        method, endpoint, status, seconds, end = batch[i]
        if end >= recent_until:
            return i
        s = series.get((method, endpoint, status))
        if s is None:
            s = new_series(method, endpoint, status)
        s.sums[0] += seconds
        region = bisect_right(cuts, seconds)
        s.bucket_counts[bucket_of[region]] += 1
        idx = slot_of[region]
        group = idx >> GROUP_SHIFT
        h = s.hist
        h.counts[idx] += 1
        h.groups[group] += 1
        recent_counts[idx] += 1
        # The sliding window: [second, requests, errors, latency sum] per second.
        if not sec_start <= end < sec_end:
            sec = int(end)
            base = (sec % size) * 4
            held = ring[base]
            if held != sec:
                if held > sec:
                    sec_start = sec_end = -1.0
                    continue  # ended before the window: in the totals only
                ring[base] = sec
                ring[base + 1] = ring[base + 2] = ring[base + 3] = 0.0
            sec_start = float(sec)
            sec_end = sec_start + 1.0
        ring[base + 1] += 1.0
        ring[base + 3] += seconds
        if status >= 500:
            ring[base + 2] += 1.0
    return len(batch)


#: The fold in use: the C one when it was built (see eventmon.core._native).
fold: Callable[..., int] = speedups.fold if speedups is not None else fold_python
COMPILED = speedups is not None
