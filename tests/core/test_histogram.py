from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventmon.core.histogram import HdrLayout, LatencyHistogram

latencies = st.lists(
    st.floats(min_value=0.0, max_value=120.0, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=400,
)
percentiles = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def exact_percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile of the samples, each truncated to whole µs like the histogram."""
    ordered = sorted(int(s * 1_000_000) for s in samples)
    rank = max(1, math.ceil(p / 100 * len(ordered) - 1e-9))
    return ordered[rank - 1] / 1_000_000


@settings(max_examples=300, deadline=None)
@given(latencies, percentiles)
def test_percentile_within_relative_error_of_exact(samples: list[float], p: float) -> None:
    h = LatencyHistogram()
    h.record_many(samples)
    exact = exact_percentile(samples, p)
    got = h.percentile(p)
    # The result is the top of the exact value's slot: never below it, and above it
    # by less than one slot (1/128 of the value at 2 significant digits, or 1 µs).
    assert got >= exact
    assert got - exact <= max(exact / 128, 1e-6) + 1e-12


@settings(max_examples=100, deadline=None)
@given(latencies)
def test_same_answer_as_the_hdrhistogram_package(samples: list[float]) -> None:
    h = LatencyHistogram()
    h.record_many(samples)
    ref = h.to_hdrhistogram()
    assert ref.get_total_count() == len(samples)
    for p in (50, 90, 95, 99, 99.9):
        ours_us = h.percentile(p) * 1_000_000
        theirs_us = ref.get_value_at_percentile(p)
        # hdrhistogram rounds the target rank (rank = int(p*n/100 + 0.5)), we take
        # the nearest rank (ceil): they may pick neighbouring samples, never further.
        lo = exact_percentile(samples, max(p - 100 / len(samples), 0)) * 1_000_000
        hi = exact_percentile(samples, min(p + 100 / len(samples), 100)) * 1_000_000
        assert lo - 1 <= theirs_us <= hi * (1 + 1 / 128) + 1
        assert lo - 1 <= ours_us <= hi * (1 + 1 / 128) + 1


def test_encode_decode_round_trip_and_merge() -> None:
    a = LatencyHistogram()
    b = LatencyHistogram()
    a.record_many([0.001 * i for i in range(1, 500)])
    b.record_many([0.5 + 0.01 * i for i in range(100)])
    encoded = a.encode()
    back = LatencyHistogram.decode(encoded)
    assert back.total == a.total
    assert list(back.counts) == list(a.counts)
    back.merge(b)
    assert back.total == 599
    assert back.percentile(100) >= 1.49


def test_layout_matches_hdrhistogram_slot_for_slot() -> None:
    from hdrh.histogram import HdrHistogram

    layout = HdrLayout()
    ref = HdrHistogram(1, layout.highest, 2)
    assert layout.counts_len == ref.counts_len
    for v in [0, 1, 127, 128, 255, 256, 257, 1000, 65_535, 65_536, 10**6, 3_599_999_999]:
        assert layout.index(v) == ref._counts_index_for(v)
        assert layout.value_at(layout.index(v)) == ref.get_value_from_index(layout.index(v))


def test_memory_per_histogram_is_at_most_32_kb() -> None:
    assert LatencyHistogram().nbytes() <= 32 * 1024


def test_empty_histogram_and_bad_percentile() -> None:
    h = LatencyHistogram()
    assert h.percentile(95) == 0.0
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        h.percentile(101)


def test_bad_precision_is_a_clear_error() -> None:
    from eventmon import ConfigurationError

    with pytest.raises(ConfigurationError, match="significant_digits"):
        HdrLayout(significant_digits=9)
