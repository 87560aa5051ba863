from __future__ import annotations

import pytest

from eventmon import ConfigurationError
from eventmon.core.window import SlidingWindow


def test_rates_over_the_last_minute() -> None:
    w = SlidingWindow(60, started=0.0)
    for t in range(120):  # two requests a second for two minutes, one error every 10 s
        w.add(t + 0.1, 0.05, error=False)
        w.add(t + 0.2, 0.15, error=(t % 10 == 0))
    s = w.stats(119.5)
    assert s.requests == 120
    assert s.requests_per_second == pytest.approx(2.0)
    assert s.mean_latency == pytest.approx(0.1)
    assert s.error_rate == pytest.approx(6 / 120)


def test_old_observations_fall_out_and_late_ones_are_ignored() -> None:
    w = SlidingWindow(10, started=0.0)
    w.add(5.0, 1.0, error=True)
    assert w.stats(6.0).requests == 1
    assert w.stats(16.0).requests == 0  # slid out
    w.add(30.0, 0.1, error=False)
    w.add(20.0, 0.1, error=False)  # same slot as 30, older: ignored
    assert w.stats(30.0).requests == 1


def test_first_seconds_are_not_diluted_by_an_empty_window() -> None:
    w = SlidingWindow(60, started=100.0)
    for i in range(10):
        w.add(100.0 + i * 0.5, 0.01, error=False)
    assert w.stats(105.0).requests_per_second == pytest.approx(2.0)


def test_bad_window_size() -> None:
    with pytest.raises(ConfigurationError, match="whole number of seconds"):
        SlidingWindow(0)
