"""The metrics an application defines itself: counters, gauges and histograms.

:class:`~eventmon.collector.MetricsCollector`'s ``increment_counter``,
``set_gauge``, ``observe_histogram`` and their readers delegate here. Every
family is written under the collector's label policy
(:class:`~eventmon.core.registry.LabelPolicy`), and a name that would clash with
another family in the exposition is refused when the metric is defined, never
at scrape time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence

from eventmon._exceptions import ConfigurationError
from eventmon.core.counter import Counter
from eventmon.core.histogram import DEFAULT_BUCKETS
from eventmon.core.registry import (
    LabelPolicy,
    LabelSets,
    family_names,
    reserved_name_problem,
    validate_label_name,
    validate_metric_name,
)
from eventmon.core.user_histograms import (
    HistogramSnapshot,
    UserHistograms,
    check_histogram_bounds,
)

__all__ = ["HistogramListener", "UserMetrics"]

_INF = math.inf

#: Called with ``(name, value, label names, label values)`` per observed histogram value.
HistogramListener = Callable[[str, float, tuple[str, ...], tuple[str, ...]], object]


class UserMetrics:
    """User counters, gauges and histograms under one label policy.

    Counters are lock-free (per-thread cells, :class:`~eventmon.core.counter.Counter`);
    gauges and histograms take a lock. ``on_fault(where)`` logs and counts the
    exception being handled (the collector's ``internal_error``).

    Example::

        >>> m = UserMetrics(LabelPolicy(), on_fault=print)
        >>> m.increment_counter("db_connection_errors", {"database": "main"})
        >>> m.counter_value("db_connection_errors")
        1.0
    """

    def __init__(self, label_policy: LabelPolicy, on_fault: Callable[[str], None]) -> None:
        self.label_policy = label_policy
        self._on_fault = on_fault
        #: Counter totals by ``(sample name, label values)``; ``eventmon.django_db``
        #: adds to them directly once it has defined its counters.
        self.counter_cells = Counter()
        self._counter_help: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._counter_sets: dict[str, LabelSets] = {}  # by family and by sample name
        self._gauges: dict[str, dict[tuple[str, ...], float]] = {}
        self._gauge_help: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._gauge_lock = threading.Lock()
        #: The user histograms' definitions and values.
        self.user_histograms = UserHistograms(label_policy)
        self._histogram_listeners: list[HistogramListener] = []

    # ----------------------------------------------------------------- counters

    def increment_counter(
        self, name: str, labels: Mapping[str, str] | None = None, amount: float = 1
    ) -> None:
        """Add ``amount`` to the counter ``name``; the first call defines its label names."""
        if not 0 <= amount < _INF:
            raise ValueError(
                f"a counter only goes up by a finite amount; amount must be >= 0 and"
                f" finite, got {amount!r}"
            )
        label_names, values = split_labels(labels)
        known = self._counter_help.get(name)
        if known is None:
            known = self.define_counter(name, "", label_names)
        if known[1] != label_names:
            raise ConfigurationError(
                f"counter {name!r} has labels {list(known[1])}, not {list(label_names)}"
            )
        self.counter_cells.inc((name, self._counter_sets[name].admit(values)), amount)

    def define_counter(
        self, name: str, help: str = "", label_names: Sequence[str] = ()
    ) -> tuple[str, tuple[str, ...]]:
        """Declare a counter with its help text and label names; idempotent."""
        family = name[:-6] if name.endswith("_total") else name
        if family not in self._counter_help:
            validate_metric_name(family)
            self._refuse_clash(name, "counter")
        names = tuple(validate_label_name(n) for n in label_names)
        entry = self._counter_help.setdefault(family, (help, names))
        if family != name:
            self._counter_help.setdefault(name, entry)
        sets = self.label_policy.metric(family, len(entry[1]))
        self._counter_sets[family] = self._counter_sets[name] = sets
        return entry

    def counters(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Counter totals: family name -> label values -> total."""
        out: dict[str, dict[tuple[str, ...], float]] = {}
        for key, v in self.counter_cells.items().items():
            name: str = key[0]  # type: ignore[index]
            values: tuple[str, ...] = key[1]  # type: ignore[index]
            family = name[:-6] if name.endswith("_total") else name
            per = out.setdefault(family, {})  # capped when written
            per[values] = per.get(values, 0) + v
        return out

    def counter_value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One counter's total; with ``labels=None``, summed over every label set."""
        family = name[:-6] if name.endswith("_total") else name
        per = self.counters().get(family, {})
        if labels is None:
            return float(sum(per.values()))
        return float(per.get(split_labels(labels)[1], 0))

    def counter_names(self) -> set[str]:
        """Families of the counters defined so far (incremented or declared)."""
        return {n[:-6] if n.endswith("_total") else n for n in self._counter_help}

    def counter_help(self, name: str) -> str:
        """The help text a counter was defined with (``""`` if none or undefined)."""
        return self._counter_help.get(name, ("", ()))[0]

    def counter_labels(self, name: str) -> tuple[str, ...]:
        """A counter's label names (``()`` if it has none or is undefined)."""
        return self._counter_help.get(name, ("", ()))[1]

    # ------------------------------------------------------------------- gauges

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Set the gauge ``name`` to ``value``; NaN and ±infinity are kept."""
        if isinstance(value, (str, bytes)):
            raise TypeError(f"gauge {name!r}: value must be a number, got {value!r}")
        value = float(value)
        label_names, values = split_labels(labels)
        with self._gauge_lock:
            if name not in self._gauge_help:
                validate_metric_name(name)
                self._refuse_clash(name, "gauge")
                for n in label_names:
                    validate_label_name(n)
                self._gauge_help[name] = ("", label_names)
            elif self._gauge_help[name][1] != label_names:
                raise ConfigurationError(
                    f"gauge {name!r} has labels {list(self._gauge_help[name][1])},"
                    f" not {list(label_names)}"
                )
            admitted = self.label_policy.metric(name, len(label_names)).admit(values)
            self._gauges.setdefault(name, {})[admitted] = value

    def gauges(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Gauge values: name -> label values -> value."""
        with self._gauge_lock:
            return {k: dict(v) for k, v in self._gauges.items()}

    def gauge_labels(self, name: str) -> tuple[str, ...]:
        """A gauge's label names (``()`` if it has none or is undefined)."""
        return self._gauge_help.get(name, ("", ()))[1]

    # --------------------------------------------------------------- histograms

    def define_histogram(
        self,
        name: str,
        help: str = "",
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        """Declare a histogram; idempotent, other label names or buckets raise."""
        bounds = check_histogram_bounds(name, buckets)
        if self.user_histograms.get(name) is None:
            validate_metric_name(name)
            self._refuse_clash(name, "histogram")
        self.user_histograms.define(name, help, label_names, bounds)

    def observe_histogram(
        self,
        name: str,
        value: float,
        labels: Mapping[str, str] | None = None,
        *,
        buckets: Sequence[float] | None = None,
    ) -> None:
        """Add ``value`` to the histogram ``name``, defining it on first use."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"histogram {name!r}: value must be a number, got {value!r}")
        # A histogram's _sum is a counter in OpenMetrics: it may not go down.
        if not 0 <= value < _INF:
            raise ValueError(f"histogram {name!r}: value must be finite and >= 0, got {value!r}")
        label_names, values = split_labels(labels)
        known = self.user_histograms.get(name)
        if known is None or buckets is not None:
            self.define_histogram(
                name, "", label_names, DEFAULT_BUCKETS if buckets is None else buckets
            )
        elif known[0] != label_names:
            raise ConfigurationError(
                f"histogram {name!r} has labels {list(known[0])}, not {list(label_names)}"
            )
        self.user_histograms.observe(name, float(value), values)
        for listener in self._histogram_listeners:
            try:
                listener(name, float(value), label_names, values)
            except Exception:
                self._on_fault("histogram_listener")

    def histograms(self) -> dict[str, HistogramSnapshot]:
        """Histograms by name."""
        return self.user_histograms.snapshot()

    def add_histogram_listener(self, listener: HistogramListener) -> None:
        """Also hand each observed value to ``listener``, in the observing thread."""
        self._histogram_listeners.append(listener)

    # -------------------------------------------------------------------- names

    def _refuse_clash(self, name: str, kind: str) -> None:
        """Refuse a new family whose names a built-in family or another user family uses.

        Prometheus rejects an exposition with two families of one name, so this
        fails when the metric is defined rather than at every scrape.
        """
        problem = reserved_name_problem(name, kind)
        if problem is not None:
            raise ConfigurationError(problem)
        mine = family_names(name, kind)
        defined = (
            [(n, "counter") for n in self.counter_names()]
            + [(n, "gauge") for n in list(self._gauge_help)]
            + [(n, "histogram") for n in self.user_histograms.names()]
        )
        base = name.removesuffix("_total") if kind == "counter" else name
        for other, other_kind in defined:
            if other_kind == kind and other == base:
                continue  # the same family
            if mine & family_names(other, other_kind):
                raise ConfigurationError(
                    f"{kind} name {name!r} clashes with the {other_kind} {other!r}"
                    " in the exposition; choose another name"
                )


def split_labels(labels: Mapping[str, str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``labels`` as (names, values), sorted by name; values as strings."""
    if not labels:
        return (), ()
    items = sorted(labels.items())
    return tuple(k for k, _ in items), tuple(str(v) for _, v in items)
