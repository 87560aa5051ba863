"""MetricsCollector settings of the wrong type fail at construction with one clear line."""

from __future__ import annotations

from typing import Any

import pytest

from eventmon import ConfigurationError, MetricsCollector


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"clock": "x"}, "clock must be callable"),
        ({"clock": 1.0}, "clock must be callable"),
        ({"buckets": "0.1"}, "buckets must be a list of seconds"),
        ({"buckets": b"0.1"}, "buckets must be a list of seconds"),
        ({"buckets": 0.5}, "buckets must be positive finite seconds"),
        ({"buckets": ["fast", "slow"]}, "buckets must be positive finite seconds"),
        ({"buckets": [0.1, None]}, "buckets must be positive finite seconds"),
    ],
    ids=[
        "clock-str",
        "clock-float",
        "buckets-str",
        "buckets-bytes",
        "buckets-number",
        "buckets-words",
        "buckets-none",
    ],
)
def test_wrong_types_are_configuration_errors(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as e:
        MetricsCollector(**kwargs)
    assert "\n" not in str(e.value)
