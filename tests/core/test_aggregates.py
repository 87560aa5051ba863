"""RequestAggregates on its own: the fold's entry point, the label policy and the reads."""

from __future__ import annotations

import pytest

from eventmon.core.aggregates import RequestAggregates
from eventmon.core.histogram import DEFAULT_BUCKETS, HdrLayout
from eventmon.core.registry import OVERFLOW, UNMATCHED, LabelPolicy


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _aggregates(
    clock: Clock, *, max_label_sets: int = 1000, faults: list[str] | None = None
) -> RequestAggregates:
    sink = faults if faults is not None else []
    return RequestAggregates(
        HdrLayout(),
        DEFAULT_BUCKETS,
        label_policy=LabelPolicy(max_label_sets),
        window=10,
        clock=clock,
        on_fault=sink.append,
    )


def test_a_fold_fills_series_histograms_and_window() -> None:
    clock = Clock()
    a = _aggregates(clock)
    a.fold(
        [
            ("GET", "/a", 200, 0.004, 1000.5),
            ("GET", "/a", 200, 0.2, 1000.6),
            ("POST", "/b", 503, 1.5, 1001.2),
        ]
    )
    by_key = {(s.method, s.endpoint, s.status_code): s for s in a.series()}
    get_a = by_key["GET", "/a", "200"]
    assert (get_a.count, get_a.sum) == (2, pytest.approx(0.204))
    assert get_a.buckets[DEFAULT_BUCKETS.index(0.005)] == 1  # 4 ms: the 5 ms bucket
    assert by_key["POST", "/b", "503"].buckets[DEFAULT_BUCKETS.index(2.5)] == 1  # 1.5 s
    assert a.total_requests() == 3
    assert sorted(a.endpoints()) == ["/a", "/b"]
    assert a.histogram("/a").total == 2
    assert a.histogram().total == 3
    assert a.histogram("/never").total == 0
    stats = a.window_stats(1001.9)
    assert (stats.requests, stats.errors) == (3, 1)
    clock.now = 1001.9
    assert a.recent_histogram().total == 3


def test_the_recent_histogram_forgets_after_two_idle_windows() -> None:
    clock = Clock()
    a = _aggregates(clock)
    a.fold([("GET", "/a", 200, 0.01, 1000.5)])
    clock.now = 1015.0  # next window: the entry moved to the previous histogram
    assert a.recent_histogram().total == 1
    clock.now = 1040.0  # two windows later: nothing recent
    assert a.recent_histogram().total == 0
    assert a.histogram("/a").total == 1  # the endpoint's own histogram keeps everything


def test_label_policy_methods_cap_and_bad_endpoints() -> None:
    faults: list[str] = []
    a = _aggregates(Clock(), max_label_sets=2, faults=faults)
    a.fold(
        [
            ("BREW", "/a", 200, 0.01, 1000.1),  # made-up method: "other"
            ("GET", 42, 200, 0.01, 1000.2),  # not a str: unmatched, counted as a fault
            ("GET", "/c", 200, 0.01, 1000.3),  # past the cap: the overflow series
        ]
    )
    keys = {(s.method, s.endpoint, s.status_code) for s in a.series()}
    assert keys == {("other", "/a", "200"), ("GET", UNMATCHED, "200"), (OVERFLOW,) * 3}
    assert faults == ["collector.labels"]


def test_endpoint_percentiles_are_cached_until_the_endpoint_serves_again() -> None:
    a = _aggregates(Clock())
    a.fold([("GET", "/a", 200, 0.1, 1000.1)])
    first = a.endpoint_percentiles((0.5, 0.99))
    assert first["/a"] == [pytest.approx(0.1, rel=0.01)] * 2
    assert a.endpoint_percentiles((0.5, 0.99))["/a"] is first["/a"]  # reused, not recomputed
    a.fold([("GET", "/a", 200, 0.3, 1000.2)])
    assert a.endpoint_percentiles((0.5, 0.99))["/a"][1] == pytest.approx(0.3, rel=0.01)
