"""Metric names, label sets and the one label policy every metric is written under.

A route template keeps the ``endpoint`` label small, but methods, statuses and
user-defined labels come from outside. :class:`LabelPolicy` holds what eventmon
does about it, for every metric it keeps (request series, percentile
histograms, slow requests, internal errors, user counters and gauges), when a
value is written: a method outside :data:`KNOWN_METHODS` is ``other``; each
metric admits at most ``max_label_sets`` label sets, past which new sets are
written to one overflow set and a warning is logged once per metric. So a
stream of random URLs, methods or label values cannot grow memory without bound.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any, TypeVar

from eventmon._exceptions import ConfigurationError

__all__ = [
    "BUILTIN_FAMILIES",
    "KNOWN_METHODS",
    "OTHER_METHOD",
    "OVERFLOW",
    "UNMATCHED",
    "LabelPolicy",
    "LabelSetLimit",
    "LabelSets",
    "counter_help_text",
    "escape_label_value",
    "extra_label_pairs",
    "family_names",
    "request_labels",
    "reserved_name_problem",
    "validate_metric_name",
]

logger = logging.getLogger("eventmon")

#: The endpoint label of requests that matched no route.
UNMATCHED = "__unmatched__"
#: The label value every label takes in the overflow set of a metric past its cap.
OVERFLOW = "__overflow__"
#: Methods kept as they are in a ``method`` label; any other is written as OTHER_METHOD.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
#: The ``method`` label of a request with a method outside KNOWN_METHODS.
OTHER_METHOD = "other"

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


#: The families eventmon's exposition writes itself, as (name, type), in both units.
#: A user counter or gauge may not take any name these families or their samples use.
BUILTIN_FAMILIES: tuple[tuple[str, str], ...] = (
    ("http_requests_total", "counter"),
    ("http_request_duration_seconds", "histogram"),
    ("http_request_duration_ms", "histogram"),
    ("http_request_duration_hdr_seconds", "summary"),
    ("http_request_duration_hdr_ms", "summary"),
    ("http_requests_in_progress", "gauge"),
    ("http_request_size_bytes", "histogram"),
    ("http_response_size_bytes", "histogram"),
    ("http_slow_requests_total", "counter"),
    ("eventmon_internal_errors_total", "counter"),
    ("eventmon_build", "info"),  # eventmon_build_info, a gauge in text 0.0.4
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("eventmon_cpu_limit_cores", "gauge"),
    ("eventmon_memory_limit_bytes", "gauge"),
)

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": (),
    "info": ("_info",),
}


def family_names(name: str, kind: str) -> set[str]:
    """Every name a family uses: its name in text 0.0.4 and OpenMetrics, and its samples'."""
    base = name.removesuffix("_total") if kind == "counter" else name
    return {name, base} | {base + suffix for suffix in _SUFFIXES[kind]}


_RESERVED: dict[str, str] = {
    used: family for family, kind in BUILTIN_FAMILIES for used in family_names(family, kind)
}


def reserved_name_problem(name: str, kind: str) -> str | None:
    """Why a user metric ``name`` of type ``kind`` would clash with a built-in family.

    ``None`` if it does not; else one line for a :class:`ConfigurationError`.
    Prometheus rejects an exposition where two families share a name or a
    sample name (``promtool check metrics``: "second TYPE line"), so such a
    metric must be refused when it is defined, not found at scrape time.
    """
    for used in (name, *sorted(family_names(name, kind) - {name})):
        family = _RESERVED.get(used)
        if family is not None:
            clash = "" if used == family else f", which uses the name {used!r} too"
            return (
                f"{kind} name {name!r} is reserved: eventmon exports {family!r} itself{clash};"
                " choose another name"
            )
    return None


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


def request_labels(method: str, endpoint: str, status_code: str) -> str:
    """The escaped label pairs of one request series, ready for the exposition formats."""
    return (
        f'method="{escape_label_value(method)}",'
        f'endpoint="{escape_label_value(endpoint)}",'
        f'status_code="{escape_label_value(status_code)}"'
    )


def extra_label_pairs(names: Sequence[str], values: Sequence[str]) -> str:
    """``,tenant="acme"``...: a request series' extra labels, to follow :func:`request_labels`.

    Empty when ``values`` is (a series recorded before the names were declared).
    """
    return "".join(f',{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=False))


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


_Values = TypeVar("_Values", bound=tuple[Any, ...])


class LabelSets:
    """The label sets one metric holds; :meth:`admit` is where its cap applies.

    Known sets pass with one set lookup and no lock; a new set takes a lock, so
    that threads racing past the cap cannot admit more than ``cap`` sets.
    """

    __slots__ = ("_lock", "known", "limit", "overflow")

    def __init__(self, metric: str, cap: int, width: int) -> None:
        self.limit = LabelSetLimit(metric, cap)
        self.known: set[tuple[Any, ...]] = set()
        #: What a refused set is written as: every label ``__overflow__``.
        self.overflow: tuple[str, ...] = (OVERFLOW,) * width
        self._lock = threading.Lock()

    def admit(self, values: _Values) -> _Values | tuple[str, ...]:
        """``values`` if the metric holds it or may take it, else :attr:`overflow`."""
        if values in self.known:
            return values
        with self._lock:
            if values in self.known or self.limit.admits(len(self.known)):
                self.known.add(values)
                return values
        return self.overflow


class LabelPolicy:
    """eventmon's label policy: one per collector, used by every writer of every metric.

    * :meth:`method`: a request method outside :data:`KNOWN_METHODS` is ``other``,
      so made-up methods share one label value (like OpenTelemetry's ``_OTHER``);
    * :meth:`metric`: each metric admits ``max_label_sets`` label sets; a new set
      past that is written to the overflow set, with one warning per metric.

    Example::

        >>> policy = LabelPolicy(max_label_sets=1)
        >>> slow = policy.metric("http_slow_requests_total", width=2)
        >>> slow.admit((policy.method("BREW"), "/coffee"))
        ('other', '/coffee')
        >>> slow.admit(("GET", "/tea"))
        ('__overflow__', '__overflow__')
    """

    __slots__ = ("_lock", "_metrics", "max_label_sets")

    def __init__(self, max_label_sets: int = 1000) -> None:
        if (
            not isinstance(max_label_sets, int)
            or isinstance(max_label_sets, bool)
            or max_label_sets < 1
        ):
            raise ConfigurationError(
                f"max_label_sets must be a whole number >= 1, got {max_label_sets!r}"
            )
        self.max_label_sets = max_label_sets
        self._metrics: dict[str, LabelSets] = {}
        self._lock = threading.Lock()

    @staticmethod
    def method(method: str) -> str:
        """The ``method`` label value of a request made with ``method``."""
        return method if method in KNOWN_METHODS else OTHER_METHOD

    def metric(self, name: str, width: int) -> LabelSets:
        """The label sets of metric ``name`` (``width`` labels), created on first use."""
        sets = self._metrics.get(name)
        if sets is None:
            with self._lock:
                sets = self._metrics.get(name)
                if sets is None:
                    sets = self._metrics[name] = LabelSets(name, self.max_label_sets, width)
        return sets


def counter_help_text(view: object, name: str) -> str:
    """A user counter's HELP text: the one given to ``define_counter``, else a default.

    ``view`` is a collector or a merged multiprocess view.
    """
    counter_help = getattr(view, "counter_help", None)
    text = counter_help(name) if counter_help is not None else ""
    return str(text) or f"Counter {name}."
