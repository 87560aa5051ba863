"""Framework-agnostic primitives: counters, histograms, windows, label caps, process stats."""

from __future__ import annotations

from eventmon.core.counter import Counter
from eventmon.core.histogram import DEFAULT_BUCKETS, DEFAULT_BUCKETS_MS, HdrLayout, LatencyHistogram
from eventmon.core.window import SlidingWindow, WindowStats

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_BUCKETS_MS",
    "Counter",
    "HdrLayout",
    "LatencyHistogram",
    "SlidingWindow",
    "WindowStats",
]
