"""Latency histograms: HdrHistogram log-linear counts for exact-enough percentiles.

Values are recorded as whole microseconds in an array laid out exactly like a
standard HdrHistogram with ``lowest_discernible_value=1``, so a histogram can be
handed to the ``hdrhistogram`` package (:meth:`LatencyHistogram.to_hdrhistogram`)
for its compressed encoding, decoding and merging, and read back from it.

With the default two significant digits every recorded value lands in a bucket
whose width is at most 1/128 of its value (plus the 1 µs unit), so a percentile
is within 0.8 % of the exact sample percentile. The counts array for the default
range (1 µs to one hour) has 3,328 slots (26.6 KB) plus 105 group totals: 26.8 KB.

Example::

    >>> h = LatencyHistogram()
    >>> for ms in range(1, 101):
    ...     h.record(ms / 1000)
    >>> round(h.percentile(95), 3)
    0.095
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from eventmon._exceptions import ConfigurationError
from eventmon.core._native import cells

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["DEFAULT_BUCKETS", "DEFAULT_BUCKETS_MS", "HdrLayout", "LatencyHistogram"]

#: The Prometheus bucket bounds of the product specification: 0.1, 5, 15, 50, 100, 500 ms
#: (what ``unit="ms"`` exports).
DEFAULT_BUCKETS_MS: tuple[float, ...] = (0.1, 5.0, 15.0, 50.0, 100.0, 500.0)
#: The default bounds in seconds, Prometheus's base unit: the specified ones, then 1, 2.5,
#: 5 and 10 s, without which ``histogram_quantile`` reads 0.5 s for any slower request.
DEFAULT_BUCKETS: tuple[float, ...] = (0.0001, 0.005, 0.015, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0)

_MICROS = 1_000_000


class HdrLayout:
    """Index arithmetic of an HdrHistogram with lowest discernible value 1.

    ``index(v)`` and ``value_at(i)`` follow the reference implementation so that
    counts can move to and from the ``hdrhistogram`` package slot by slot.
    """

    __slots__ = (
        "counts_len",
        "half_count",
        "half_count_magnitude",
        "highest",
        "significant_digits",
        "sub_bucket_mask",
    )

    def __init__(self, highest: int = 3_600 * _MICROS, significant_digits: int = 2) -> None:
        if not 1 <= significant_digits <= 5:
            raise ConfigurationError(
                f"significant_digits must be between 1 and 5, got {significant_digits!r}"
            )
        if highest < 2:
            raise ConfigurationError(f"highest trackable value must be >= 2, got {highest!r}")
        self.significant_digits = significant_digits
        self.highest = highest
        largest_single_unit = 2 * 10**significant_digits
        sub_bucket_count_magnitude = math.ceil(math.log2(largest_single_unit))
        self.half_count_magnitude = max(sub_bucket_count_magnitude, 1) - 1
        sub_bucket_count = 1 << (self.half_count_magnitude + 1)
        self.half_count = sub_bucket_count >> 1
        self.sub_bucket_mask = sub_bucket_count - 1
        # Buckets needed to reach `highest`, as in the reference implementation.
        smallest_untrackable = sub_bucket_count
        buckets_needed = 1
        while smallest_untrackable <= highest:
            smallest_untrackable <<= 1
            buckets_needed += 1
        self.counts_len = (buckets_needed + 1) << self.half_count_magnitude

    def index(self, value: int) -> int:
        """The counts slot of a value in microseconds (clamped into range)."""
        if value < 0:
            value = 0
        elif value > self.highest:
            value = self.highest
        bucket = (value | self.sub_bucket_mask).bit_length() - self.half_count_magnitude - 1
        return ((bucket + 1) << self.half_count_magnitude) + (value >> bucket) - self.half_count

    def value_at(self, index: int) -> int:
        """The lowest value (µs) that lands in slot ``index``."""
        bucket = (index >> self.half_count_magnitude) - 1
        sub_bucket = (index & (self.half_count - 1)) + self.half_count
        if bucket < 0:
            sub_bucket -= self.half_count
            bucket = 0
        return sub_bucket << bucket

    def highest_equivalent(self, index: int) -> int:
        """The highest value (µs) that lands in slot ``index``."""
        bucket = max((index >> self.half_count_magnitude) - 1, 0)
        return self.value_at(index) + (1 << bucket) - 1


DEFAULT_LAYOUT = HdrLayout()


class LatencyHistogram:
    """Counts of latencies in HdrHistogram slots; percentiles in seconds.

    Not thread-safe on its own: the collector only writes to it while folding
    journals under its lock. Use it directly for offline analysis or tests.
    """

    __slots__ = ("counts", "groups", "layout")

    #: Slots per group; ``groups[i >> GROUP_SHIFT]`` totals a run of 32 slots, so a
    #: percentile bisects ~100 group totals and then one group, not 3,328 slots.
    GROUP_SHIFT = 5

    def __init__(self, layout: HdrLayout = DEFAULT_LAYOUT) -> None:
        self.layout = layout
        # Invariant: groups[g] is the sum of counts[g * 32 : g * 32 + 32]; code
        # that writes counts directly calls rebuild_groups(). Groups are cells()
        # so that the compiled fold can write them in place.
        self.counts = array("q", bytes(8 * layout.counts_len))
        self.groups = cells("q", [0] * ((layout.counts_len >> self.GROUP_SHIFT) + 1))

    @property
    def total(self) -> int:
        """How many values were recorded."""
        return sum(self.groups)

    def record(self, seconds: float, count: int = 1) -> None:
        """Record a latency in seconds (``count`` times)."""
        self.record_index(self.layout.index(int(seconds * _MICROS)), count)

    def record_index(self, index: int, count: int = 1) -> None:
        """Add ``count`` to slot ``index`` (for code that computed the slot itself)."""
        self.counts[index] += count
        self.groups[index >> self.GROUP_SHIFT] += count

    def rebuild_groups(self) -> None:
        """Recompute the group totals from the slots (after writing ``counts`` directly)."""
        size = 1 << self.GROUP_SHIFT
        counts = self.counts
        groups = self.groups
        for g in range(len(groups)):
            groups[g] = sum(counts[g * size : g * size + size])

    def record_many(self, samples: Iterable[float]) -> None:
        """Record every latency (seconds) of ``samples``."""
        for s in samples:
            self.record(s)

    def percentile(self, p: float) -> float:
        """The latency (seconds) at percentile ``p`` (0–100); 0.0 when empty.

        Nearest-rank definition: the smallest recorded value such that at least
        ``p`` % of the values are <= it, reported as the top of its slot, so the
        result is never below the exact sample percentile.
        """
        return self.percentiles((p,))[0]

    def percentiles(self, ps: Iterable[float]) -> list[float]:
        """Several percentiles in one pass over the counts."""
        wanted = list(ps)
        for p in wanted:
            if not 0.0 <= p <= 100.0:
                raise ValueError(f"percentile must be within 0..100, got {p!r}")
        cum_groups = list(accumulate(self.groups))
        total = cum_groups[-1]
        if total == 0:
            return [0.0] * len(wanted)
        shift = self.GROUP_SHIFT
        size = 1 << shift
        counts = self.counts
        layout = self.layout
        out = []
        inner_of: dict[int, list[int]] = {}
        for p in wanted:
            rank = max(1, math.ceil(p / 100.0 * total - 1e-9))
            # The group holding the rank-th value, then the slot inside it.
            g = bisect_left(cum_groups, rank)
            seen = cum_groups[g - 1] if g else 0
            start = g << shift
            inner = inner_of.get(g)
            if inner is None:
                inner = inner_of[g] = list(accumulate(counts[start : start + size]))
            index = start + bisect_left(inner, rank - seen)
            out.append(layout.highest_equivalent(index) / _MICROS)
        return out

    def mean(self) -> float:
        """Mean latency (seconds) by slot midpoints; 0.0 when empty."""
        if self.total == 0:
            return 0.0
        layout = self.layout
        acc = 0.0
        for i, c in enumerate(self.counts):
            if c:
                acc += c * (layout.value_at(i) + layout.highest_equivalent(i)) / 2
        return acc / self.total / _MICROS

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s counts to this histogram (same layout required)."""
        if other.layout.counts_len != self.layout.counts_len:
            raise ValueError("cannot merge histograms with different layouts")
        counts = self.counts
        for i, c in enumerate(other.counts):
            if c:
                counts[i] += c
        self.rebuild_groups()

    def copy(self) -> LatencyHistogram:
        """An independent copy."""
        h = LatencyHistogram(self.layout)
        h.counts = array("q", self.counts)
        h.groups = cells("q", self.groups)
        return h

    def reset(self) -> None:
        """Forget every recorded value."""
        self.counts = array("q", bytes(8 * self.layout.counts_len))
        self.groups = cells("q", [0] * len(self.groups))

    def nbytes(self) -> int:
        """Memory held by the slot counts and group totals."""
        return self.counts.itemsize * len(self.counts) + 8 * len(self.groups)

    def to_hdrhistogram(self) -> Any:
        """This histogram as an ``hdrh.histogram.HdrHistogram`` (values in µs).

        Needs the ``hdrhistogram`` package (``pip install eventmon[hdr]``).
        """
        from hdrh.histogram import HdrHistogram

        layout = self.layout
        h = HdrHistogram(1, layout.highest, layout.significant_digits)
        for i, c in enumerate(self.counts):
            if c:
                h.record_value(layout.value_at(i), c)
        return h

    @classmethod
    def from_hdrhistogram(cls, hdr: Any, layout: HdrLayout | None = None) -> LatencyHistogram:
        """Build a histogram from an ``hdrh`` HdrHistogram holding microseconds."""
        layout = layout or HdrLayout(int(hdr.highest_trackable_value), int(hdr.significant_figures))
        h = cls(layout)
        for i in range(min(hdr.counts_len, layout.counts_len)):
            c = hdr.get_count_at_index(i)
            if c:
                h.record_index(i, c)
        return h

    def encode(self) -> bytes:
        """The standard compressed HdrHistogram encoding (base64), via ``hdrhistogram``."""
        encoded: bytes = self.to_hdrhistogram().encode()
        return encoded

    @classmethod
    def decode(cls, data: bytes | str) -> LatencyHistogram:
        """Read a histogram from the standard compressed HdrHistogram encoding."""
        from hdrh.histogram import HdrHistogram

        return cls.from_hdrhistogram(HdrHistogram.decode(data))
