"""Metric names, label sets and the per-metric cap on label sets.

A route template keeps the ``endpoint`` label small, but methods, statuses and
user-defined labels come from outside. Each metric admits at most ``cap`` label
sets; past it, new sets are folded into one overflow set and a warning is
logged once per metric, so a stream of random URLs or methods cannot grow
memory without bound.
"""

from __future__ import annotations

import logging
import re

from eventmon._exceptions import ConfigurationError

__all__ = [
    "OVERFLOW",
    "UNMATCHED",
    "LabelSetLimit",
    "escape_label_value",
    "validate_metric_name",
]

logger = logging.getLogger("eventmon")

#: The endpoint label of requests that matched no route.
UNMATCHED = "__unmatched__"
#: The label value every label takes in the overflow set of a metric past its cap.
OVERFLOW = "__overflow__"

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def validate_metric_name(name: str) -> str:
    """Return ``name`` if Prometheus accepts it as a metric name, else raise."""
    if not isinstance(name, str) or not _METRIC_NAME.match(name):
        raise ConfigurationError(
            f"{name!r} is not a valid metric name: use letters, digits, '_' and ':',"
            " not starting with a digit"
        )
    return name


def validate_label_name(name: str) -> str:
    """Return ``name`` if Prometheus accepts it as a label name, else raise."""
    if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
        raise ConfigurationError(
            f"{name!r} is not a valid label name: use letters, digits and '_',"
            " not starting with a digit or '__'"
        )
    return name


def escape_label_value(value: str) -> str:
    """Escape a label value for the text exposition formats."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class LabelSetLimit:
    """Admits up to ``cap`` label sets for one metric, then says to overflow."""

    __slots__ = ("cap", "metric", "overflowed", "warned")

    def __init__(self, metric: str, cap: int) -> None:
        if not isinstance(cap, int) or cap < 1:
            raise ConfigurationError(f"max_label_sets must be a whole number >= 1, got {cap!r}")
        self.metric = metric
        self.cap = cap
        self.warned = False
        self.overflowed = 0

    def admits(self, current_size: int) -> bool:
        """True if a metric holding ``current_size`` sets may take one more."""
        if current_size < self.cap:
            return True
        self.overflowed += 1
        if not self.warned:
            self.warned = True
            logger.warning(
                "eventmon: metric %s reached its cap of %d label sets; further new label"
                " sets are counted under %s. Raise max_label_sets, or check that the"
                " endpoint label is a route template and not the raw path.",
                self.metric,
                self.cap,
                OVERFLOW,
            )
        return False
