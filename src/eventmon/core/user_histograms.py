"""User-defined histograms: bucket counts and a sum per label set, with fixed bounds.

Kept apart from the request path: a user histogram is observed by application
code (a database call, a queue wait), under one lock, like a user gauge. The
label policy is the collector's (:class:`~eventmon.core.registry.LabelPolicy`):
past ``max_label_sets`` label sets a histogram writes to its overflow set.
"""

from __future__ import annotations

import itertools
import math
import threading
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eventmon._exceptions import ConfigurationError
from eventmon.core.registry import LabelPolicy, LabelSets, validate_label_name

__all__ = ["HistogramSnapshot", "UserHistograms", "check_histogram_bounds"]


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """One user histogram as read at one moment.

    ``samples`` maps label values (in ``label_names`` order) to
    ``(bucket counts, sum)``; counts are per bound, not cumulative, and the last
    is +Inf's, so there are ``len(bounds) + 1`` of them.
    """

    name: str
    help: str
    label_names: tuple[str, ...]
    bounds: tuple[float, ...]
    samples: Mapping[tuple[str, ...], tuple[tuple[int, ...], float]]


def check_histogram_bounds(name: str, buckets: Sequence[float]) -> tuple[float, ...]:
    """``buckets`` as finite, strictly increasing floats (+Inf dropped: it is implied)."""
    if isinstance(buckets, (str, bytes)):
        raise ConfigurationError(f"histogram {name!r}: buckets must be numbers, got {buckets!r}")
    try:
        bounds = [float(b) for b in buckets]
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"histogram {name!r}: buckets must be numbers, got {buckets!r}"
        ) from None
    if bounds and bounds[-1] == math.inf:
        bounds.pop()
    if not bounds or not all(math.isfinite(b) for b in bounds):
        raise ConfigurationError(
            f"histogram {name!r}: buckets must be finite numbers (+Inf is added), got {buckets!r}"
        )
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ConfigurationError(
            f"histogram {name!r}: buckets must be strictly increasing, got {buckets!r}"
        )
    return tuple(bounds)


class _Family:
    __slots__ = ("bounds", "data", "help", "label_names", "sets")

    def __init__(
        self, help: str, label_names: tuple[str, ...], bounds: tuple[float, ...], sets: LabelSets
    ) -> None:
        self.help = help
        self.label_names = label_names
        self.bounds = bounds
        self.sets = sets
        # Per label values: [sum, count per bound..., count above the last bound].
        self.data: dict[tuple[str, ...], list[float]] = {}


class UserHistograms:
    """The user histograms of one collector; thread-safe."""

    def __init__(self, policy: LabelPolicy) -> None:
        self._policy = policy
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()

    def names(self) -> set[str]:
        return set(self._families)

    def get(self, name: str) -> tuple[tuple[str, ...], tuple[float, ...]] | None:
        """(label names, bounds) of histogram ``name``, or ``None`` if not defined."""
        f = self._families.get(name)
        return None if f is None else (f.label_names, f.bounds)

    def define(
        self, name: str, help: str, label_names: Sequence[str], bounds: tuple[float, ...]
    ) -> None:
        """Define ``name``, or check that it was defined alike; the caller checked the name."""
        if isinstance(label_names, str):
            raise ConfigurationError(
                f"histogram {name!r}: label_names must be a sequence of names, not a string"
            )
        names = tuple(validate_label_name(n) for n in label_names)
        if "le" in names:
            raise ConfigurationError(
                f"histogram {name!r}: 'le' is the bucket label of every histogram; rename it"
            )
        if len(set(names)) != len(names):
            raise ConfigurationError(f"histogram {name!r}: label names repeat: {list(names)}")
        names = tuple(sorted(names))  # as observe() orders a labels mapping
        with self._lock:
            f = self._families.get(name)
            if f is None:
                sets = self._policy.metric(name, len(names))
                self._families[name] = _Family(help, names, bounds, sets)
                return
        if f.label_names != names:
            raise ConfigurationError(
                f"histogram {name!r} has labels {list(f.label_names)}, not {list(names)}"
            )
        if f.bounds != bounds:
            raise ConfigurationError(
                f"histogram {name!r} has buckets {list(f.bounds)}, not {list(bounds)}"
            )

    def observe(self, name: str, value: float, values: tuple[str, ...]) -> None:
        """Add ``value`` to the label set ``values`` (label-name order) of defined ``name``."""
        f = self._families[name]
        admitted = f.sets.admit(values)
        slot = bisect_left(f.bounds, value) + 1  # first bound >= value: Prometheus's le
        with self._lock:
            row = f.data.get(admitted)
            if row is None:
                row = f.data[admitted] = [0.0] + [0] * (len(f.bounds) + 1)
            row[0] += value
            row[slot] += 1

    def snapshot(self) -> dict[str, HistogramSnapshot]:
        """Every histogram, copied under the lock."""
        with self._lock:
            return {
                name: HistogramSnapshot(
                    name,
                    f.help,
                    f.label_names,
                    f.bounds,
                    {k: (tuple(int(c) for c in row[1:]), row[0]) for k, row in f.data.items()},
                )
                for name, f in self._families.items()
            }
