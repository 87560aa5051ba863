"""The sum and max-join of state documents (:mod:`._schema` has their format).

:class:`_Merged` adds documents (a scrape) and joins two archives figure by
figure (rebuilding a damaged one); it is also the archive's content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from eventmon.exporters.multiprocess._schema import _FORMAT, _FORMAT_EXTRA

if TYPE_CHECKING:
    from eventmon.exporters.prometheus import ProcessSample

_KEEP_MERGED = 4096  # tokens of archived workers remembered against double merging


class _Merged:
    """Sum of worker states; also the archive's content."""

    __slots__ = (
        "counter_help",
        "counter_labels",
        "counters",
        "cpu",
        "errors",
        "exemplars",
        "extra_labels",
        "gauge_labels",
        "gauges",
        "hdr",
        "histogram_meta",
        "histograms",
        "inflight",
        "merged",
        "processes",
        "series",
        "sizes",
        "slow",
        "workers",
    )

    def __init__(self) -> None:
        # (method, endpoint, status, *extra label values) -> [count, sum, [buckets]]
        self.series: dict[tuple[str, ...], list[Any]] = {}
        self.hdr: dict[str, dict[int, int]] = {}
        self.slow: dict[tuple[str, ...], int] = {}  # (method, endpoint, *extra values)
        #: Names of the extra request labels (format 2), else empty.
        self.extra_labels: tuple[str, ...] = ()
        self.errors: dict[str, int] = {}
        self.counters: dict[str, dict[tuple[str, ...], float]] = {}
        self.counter_labels: dict[str, tuple[str, ...]] = {}
        self.counter_help: dict[str, str] = {}  # the texts given to define_counter
        self.gauges: dict[str, dict[tuple[str, ...], float]] = {}
        self.gauge_labels: dict[str, tuple[str, ...]] = {}
        # User histograms: name -> label values -> [bucket counts..., sum].
        self.histograms: dict[str, dict[tuple[str, ...], list[Any]]] = {}
        self.histogram_meta: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {}
        # Body sizes: (kind, *label values) -> [bucket counts..., sum].
        self.sizes: dict[tuple[Any, ...], list[Any]] = {}
        # Exemplars: (method, endpoint, status, *extra) -> bucket -> (trace id, s, unix time).
        self.exemplars: dict[tuple[str, ...], dict[int, tuple[str, float, float]]] = {}
        self.cpu = 0.0  # CPU seconds of exited workers
        self.inflight = 0
        self.merged: list[str] = []  # tokens of workers already in the archive
        self.processes: list[ProcessSample] = []
        self.workers = 0

    def add(self, state: Mapping[str, Any], sign: int = 1, *, live: bool = False) -> None:
        """Add (or with ``sign=-1`` subtract) one state document."""
        series = self.series
        if not self.extra_labels and state.get("extra_labels"):
            self.extra_labels = tuple(state["extra_labels"])
        for method, endpoint, status, count, total, buckets, *extra in state.get("series", ()):
            key = (method, endpoint, status, *(extra[0] if extra else ()))
            acc = series.get(key)
            if acc is None:
                series[key] = [sign * count, sign * total, [sign * b for b in buckets]]
            else:
                acc[0] += sign * count
                acc[1] += sign * total
                acc_b = acc[2]
                for i, b in enumerate(buckets):
                    acc_b[i] += sign * b
        hdr = self.hdr
        for endpoint, flat in state.get("hdr", {}).items():
            acc_h = hdr.get(endpoint)
            if acc_h is None:
                acc_h = hdr[endpoint] = {}
            it = iter(flat)
            for i, c in zip(it, it, strict=True):
                acc_h[i] = acc_h.get(i, 0) + sign * c
        for method, endpoint, n, *extra in state.get("slow", ()):
            k2 = (method, endpoint, *(extra[0] if extra else ()))
            self.slow[k2] = self.slow.get(k2, 0) + sign * n
        for where, n in state.get("errors", {}).items():
            self.errors[where] = self.errors.get(where, 0) + sign * n
        for name, values, v in state.get("counters", ()):
            per = self.counters.setdefault(name, {})
            k = tuple(values)
            per[k] = per.get(k, 0) + sign * v
        for name, names in state.get("counter_labels", {}).items():
            self.counter_labels.setdefault(name, tuple(names))
        for name, text in state.get("counter_help", {}).items():
            self.counter_help.setdefault(name, text)
        for name, (help_text, names, bounds) in state.get("histogram_meta", {}).items():
            self.histogram_meta.setdefault(name, (help_text, tuple(names), tuple(bounds)))
        for name, values, counts, total in state.get("histograms", ()):
            if len(counts) != len(self.histogram_meta[name][2]) + 1:
                continue  # defined with other buckets in another worker: not addable
            _add_row(self.histograms.setdefault(name, {}), tuple(values), counts, total, sign)
        for kind, values, counts, total in state.get("sizes", ()):
            _add_row(self.sizes, (kind, *values), counts, total, sign)
        if sign > 0:  # not counts: nothing to subtract
            for method, endpoint, status, extra, bucket, *ex in state.get("exemplars", ()):
                key = (method, endpoint, status, *extra)
                if key in series:  # else its series overflowed: never shown, not kept
                    _keep_newest(self.exemplars, key, bucket, ex)
        self.cpu += sign * state.get("cpu_exited", 0.0)
        for token in state.get("merged", ()):
            self.merged.append(token)
        if live:
            self.workers += 1
            self.inflight += state.get("inflight", 0)
            pid = str(state.get("pid", "?"))
            self.processes.append((f'worker="{pid}"', state.get("cpu", 0.0), state.get("rss", 0)))
            for name, values, v in state.get("gauges", ()):
                key = (*values, pid)
                self.gauges.setdefault(name, {})[key] = v
            for name, names in state.get("gauge_labels", {}).items():
                self.gauge_labels.setdefault(name, (*names, "worker"))
        elif sign > 0:
            self.cpu += state.get("cpu", 0.0) if "token" in state else 0.0

    def empty(self) -> bool:
        figures = (
            self.series
            or self.hdr
            or self.slow
            or self.errors
            or self.counters
            or self.histograms
            or self.sizes
        )
        return not (figures or self.merged or self.cpu)

    def join(self, other: _Merged) -> None:
        """Make every figure the larger of ``self``'s and ``other``'s (never their sum).

        Two copies of the archive each hold a subset of the dead workers' counts:
        the larger figure is at least either copy and never counts a worker twice.
        """
        for key, (count, total, buckets) in other.series.items():
            acc = self.series.get(key)
            if acc is None:
                self.series[key] = [count, total, list(buckets)]
            else:
                joined = [max(x, y) for x, y in zip(acc[2], buckets, strict=True)]
                # count = its buckets' sum, so the histogram stays consistent.
                acc[:] = [max(acc[0], count, sum(joined)), max(acc[1], total), joined]
        for endpoint, counts in other.hdr.items():
            _join_into(self.hdr.setdefault(endpoint, {}), counts)
        self.extra_labels = self.extra_labels or other.extra_labels
        _join_into(self.slow, other.slow)
        _join_into(self.errors, other.errors)
        for name, per in other.counters.items():
            _join_into(self.counters.setdefault(name, {}), per)
        for name, names in other.counter_labels.items():
            self.counter_labels.setdefault(name, names)
        for name, text in other.counter_help.items():
            self.counter_help.setdefault(name, text)
        for name, meta in other.histogram_meta.items():
            self.histogram_meta.setdefault(name, meta)
        for name, per_h in other.histograms.items():
            mine = self.histograms.setdefault(name, {})
            for k, row in per_h.items():
                acc = mine.get(k)
                if acc is None:
                    mine[k] = list(row)
                elif len(acc) == len(row):
                    mine[k] = [max(x, y) for x, y in zip(acc, row, strict=True)]
        for k, row in other.sizes.items():
            acc = self.sizes.get(k)
            self.sizes[k] = list(row) if acc is None else list(map(max, acc, row))
        for key, held in other.exemplars.items():
            if key in self.series:  # joined above; an exemplar without its series is not kept
                for bucket, ex in held.items():
                    _keep_newest(self.exemplars, key, bucket, ex)
        self.cpu = max(self.cpu, other.cpu)
        seen = set(self.merged)
        # Tokens only ours are older ones: put them first, where the cap trims.
        self.merged = [t for t in other.merged if t not in seen] + self.merged

    def covers(self, other: _Merged) -> bool:
        """True if no figure of ``other`` exceeds ``self``'s (tokens aside)."""
        for key, (count, total, buckets) in other.series.items():
            acc = self.series.get(key, [0, 0.0, [0] * len(buckets)])
            if count > acc[0] or total > acc[1] or any(map(int.__gt__, buckets, acc[2])):
                return False
        return (
            all(_covers(self.hdr.get(ep, {}), h) for ep, h in other.hdr.items())
            and _covers(self.slow, other.slow)
            and _covers(self.errors, other.errors)
            and all(_covers(self.counters.get(n, {}), per) for n, per in other.counters.items())
            and all(
                all(map(float.__le__, map(float, row), self._histogram_row(n, k, len(row))))
                for n, per_h in other.histograms.items()
                for k, row in per_h.items()
            )
            and all(_row_covers(self.sizes.get(k), row) for k, row in other.sizes.items())
            and self.cpu >= other.cpu
        )

    def _histogram_row(self, name: str, values: tuple[str, ...], width: int) -> list[float]:
        row = self.histograms.get(name, {}).get(values)
        return [float(x) for x in row] if row is not None else [0.0] * width

    def to_state(self) -> dict[str, Any]:
        """This sum as a state document (the archive's format)."""
        extra = self.extra_labels
        return {
            "format": _FORMAT_EXTRA if extra else _FORMAT,
            **({"extra_labels": list(extra)} if extra else {}),
            "series": [
                [m, e, s, a[0], a[1], a[2], *([list(v)] if extra else [])]
                for (m, e, s, *v), a in self.series.items()
            ],
            "hdr": {
                ep: [x for i in sorted(h) if h[i] for x in (i, h[i])] for ep, h in self.hdr.items()
            },
            "slow": [
                [m, e, n, *([list(v)] if extra else [])] for (m, e, *v), n in self.slow.items()
            ],
            "errors": dict(self.errors),
            "counters": [
                [name, list(k), v] for name, per in self.counters.items() for k, v in per.items()
            ],
            "counter_labels": {k: list(v) for k, v in self.counter_labels.items()},
            **({"counter_help": dict(self.counter_help)} if self.counter_help else {}),
            "histograms": [
                [name, list(k), row[:-1], row[-1]]
                for name, per_h in self.histograms.items()
                for k, row in per_h.items()
            ],
            "histogram_meta": {
                name: [help_text, list(names), list(bounds)]
                for name, (help_text, names, bounds) in self.histogram_meta.items()
            },
            **(
                {"sizes": [[k[0], list(k[1:]), row[:-1], row[-1]] for k, row in self.sizes.items()]}
                if self.sizes
                else {}
            ),
            **(
                {
                    "exemplars": [
                        [m, e, s, list(v), bucket, *ex]
                        for (m, e, s, *v), per in self.exemplars.items()
                        for bucket, ex in per.items()
                    ]
                }
                if self.exemplars
                else {}
            ),
            "cpu_exited": self.cpu,
            "merged": self.merged[-_KEEP_MERGED:],
        }


def _add_row(
    table: dict[Any, list[Any]], key: Any, counts: Sequence[int], total: float, sign: int
) -> None:
    """Add ``sign`` x (bucket ``counts``, then ``total``) to ``table[key]``'s row."""
    row = table.get(key)
    if row is None:
        table[key] = [*(sign * c for c in counts), sign * total]
        return
    for i, c in enumerate(counts):
        row[i] += sign * c
    row[-1] += sign * total


def _keep_newest(
    acc: dict[tuple[str, ...], dict[int, tuple[str, float, float]]],
    key: tuple[str, ...],
    bucket: int,
    exemplar: Sequence[Any],
) -> None:
    per = acc.setdefault(key, {})
    had = per.get(bucket)
    if had is None or exemplar[2] > had[2]:
        per[bucket] = (exemplar[0], float(exemplar[1]), float(exemplar[2]))


def _join_into(acc: dict[Any, Any], other: Mapping[Any, Any]) -> None:
    for k, v in other.items():
        if v > acc.get(k, 0):
            acc[k] = v


def _row_covers(acc: list[Any] | None, row: list[Any]) -> bool:
    """True if no figure of ``row`` exceeds ``acc``'s (a missing ``acc`` holds zeros)."""
    return all(x <= (acc[i] if acc is not None else 0) for i, x in enumerate(row))


def _covers(acc: Mapping[Any, Any], other: Mapping[Any, Any]) -> bool:
    return all(v <= acc.get(k, 0) for k, v in other.items())
