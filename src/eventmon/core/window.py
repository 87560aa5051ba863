"""Sliding windows over the last N seconds: request rate, mean latency, error rate.

One slot per second in a ring; a slot is reused when its second comes round
again. Observations are added with the time they ended, so a late fold still
lands in the right second, and anything older than the window is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventmon._exceptions import ConfigurationError
from eventmon.core._native import cells

__all__ = ["SlidingWindow", "WindowStats"]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Totals over a window."""

    seconds: float
    requests: int
    errors: int
    latency_sum: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_latency(self) -> float:
        """Mean latency in seconds (0.0 with no request)."""
        return self.latency_sum / self.requests if self.requests else 0.0

    @property
    def error_rate(self) -> float:
        """Share of requests that ended in a 5xx status (0.0 with no request)."""
        return self.errors / self.requests if self.requests else 0.0


class SlidingWindow:
    """Per-second ring of [second, count, errors, latency sum].

    The ring is one flat run of ``4 * size`` floats (slot ``k`` at ``4 * k``), an
    ``array('d')`` when the compiled fold writes it; counts held as doubles are
    exact up to 2**53. Not thread-safe by itself; the collector
    writes to it under its fold lock.
    """

    __slots__ = ("ring", "size", "started")

    def __init__(self, size: int = 60, *, started: float = 0.0) -> None:
        if not isinstance(size, int) or size < 1:
            raise ConfigurationError(f"window must be a whole number of seconds >= 1, got {size!r}")
        self.size = size
        self.started = started
        self.ring = cells("d", [-1.0, 0.0, 0.0, 0.0] * size)

    def add(self, at: float, seconds: float, error: bool) -> None:
        """Add one request that ended at time ``at`` and took ``seconds``."""
        sec = int(at)
        ring = self.ring
        base = (sec % self.size) * 4
        if ring[base] != sec:
            if ring[base] > sec:
                return  # older than the window
            ring[base] = sec
            ring[base + 1] = ring[base + 2] = ring[base + 3] = 0.0
        ring[base + 1] += 1.0
        ring[base + 3] += seconds
        if error:
            ring[base + 2] += 1.0

    def stats(self, now: float) -> WindowStats:
        """Totals over the ``size`` seconds up to ``now``.

        The rate divides by the window, or by the time since ``started`` when the
        window has not yet filled, so the first minute does not read low.
        """
        current = int(now)
        oldest = current - self.size + 1
        requests = errors = 0
        latency = 0.0
        ring = self.ring
        for base in range(0, len(ring), 4):
            if oldest <= ring[base] <= current:
                requests += int(ring[base + 1])
                errors += int(ring[base + 2])
                latency += ring[base + 3]
        span = float(min(self.size, max(now - self.started, 1.0)))
        return WindowStats(span, requests, errors, latency)
