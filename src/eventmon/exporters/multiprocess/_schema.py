"""The state document a worker writes: its format, and its validation when read.

One format for worker files and ``archive.json``: a worker's whole cumulative
state. :func:`_parse` reads one and checks it in full; the sum and join of
documents are in :mod:`._state`.

``"format": 1`` is the document without extra request labels, as every earlier
eventmon wrote it. ``"format": 2`` (written only by a collector with extra
labels: ``header_labels``, ``label_callbacks``) adds ``"extra_labels"`` (their
names), a seventh column to series rows and a fourth to slow rows (the values).
Both are read; an older eventmon sets a format 2 file aside rather than misread it.

``"sizes"`` (body-size histograms, ``size_metrics=True``) is an optional field of
either format: rows ``[kind, label values, bucket counts, sum]``, kind 0 for
request bodies and 1 for responses, label values (method, endpoint, status, then
the extra values). An eventmon without it ignores the field.

``"exemplars"`` (``exemplars=True``) is optional too: rows ``[method, endpoint,
status, extra values, bucket index, trace id, seconds, unix time]``, the latest
exemplar per series and bucket. Merging keeps the newest of each; they are not
counts, so the archive keeps them without adding. ``"counter_help"`` (optional)
maps a counter to the help text given to ``define_counter``.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from eventmon.core.sizes import SIZE_BUCKETS

_FORMAT = 1
_FORMAT_EXTRA = 2  # with extra request labels
_FORMATS = (_FORMAT, _FORMAT_EXTRA)


class _Corrupt(ValueError):
    """A file in the directory that is not a state document eventmon wrote."""


def _is_count(x: object) -> bool:
    return type(x) is int and x >= 0


def _is_amount(x: object) -> bool:
    return type(x) in (int, float) and 0 <= x < math.inf  # type: ignore[operator]


def _is_strs(xs: object) -> bool:
    return isinstance(xs, list) and all(type(x) is str for x in xs)


def _counts_ok(xs: object, length: int | None = None) -> bool:
    """A list of non-negative ints (of ``length`` items if given)."""
    if not isinstance(xs, list) or (length is not None and len(xs) != length):
        return False
    return not xs or (type(sum(xs)) is int and min(xs) >= 0)


class _OtherBounds(Exception):
    """A worker file written with other bucket bounds: sound, but not addable."""


def _parse(data: bytes, bounds: list[float], nslots: int, *, worker: bool) -> dict[str, Any]:
    """A state document from ``data``, checked; _Corrupt if it is not one we wrote.

    Checked in full (types, shapes, bucket counts, no negative or non-finite count)
    so that a damaged file is set aside at once instead of failing every scrape.
    ``bounds``: the collector's, which a worker file must carry (_OtherBounds if not).
    """
    try:
        state = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise _Corrupt(f"not JSON: {str(e)[:60]}") from None
    if not isinstance(state, dict) or state.get("format") not in _FORMATS:
        raise _Corrupt("not an eventmon state document")
    if worker and state.get("bounds") != bounds:
        theirs = state.get("bounds")
        if isinstance(theirs, list) and all(type(b) in (int, float) for b in theirs):
            raise _OtherBounds
        raise _Corrupt("bad bounds")
    try:
        _check(state, len(bounds) + 1, nslots)
    except (TypeError, ValueError) as e:  # wrong arity or type met while unpacking
        raise _Corrupt(f"malformed: {str(e)[:60]}") from None
    return state


def _check(state: dict[str, Any], nbuckets: int, nslots: int) -> None:
    def fail(what: str) -> None:
        raise _Corrupt(f"bad {what}")

    def items(key: str, kind: type) -> Any:
        value = state.get(key, kind())
        if type(value) is not kind:
            fail(key)
        return value

    if not _is_strs(items("extra_labels", list)):
        fail("extra_labels")
    rows = items("series", list)
    if rows:
        # Column by column, with built-ins: a scrape checks every worker's file.
        if set(map(type, rows)) != {list} or not set(map(len, rows)) <= {6, 7}:
            fail("series")
        if not all(_is_strs(row[6]) for row in rows if len(row) == 7):
            fail("series")
        methods, endpoints, statuses, counts, totals, buckets = zip(
            *(row[:6] for row in rows), strict=True
        )
        flat = list(itertools.chain.from_iterable(buckets))
        if not (
            set(map(type, itertools.chain(methods, endpoints, statuses))) == {str}
            and set(map(type, counts)) == {int}
            and min(counts) >= 0
            and set(map(type, totals)) <= {int, float}
            and min(totals) >= 0
            and math.isfinite(math.fsum(totals))  # NaN hides from min()
            and set(map(type, buckets)) == {list}
            and set(map(len, buckets)) == {nbuckets}
            and set(map(type, flat)) == {int}
            and min(flat) >= 0
        ):
            fail("series")
    for flat in items("hdr", dict).values():
        if not (_counts_ok(flat) and len(flat) % 2 == 0 and max(flat[::2], default=0) < nslots):
            fail("hdr")
    for method, endpoint, n, *extra in items("slow", list):
        if not (type(method) is str and type(endpoint) is str and _is_count(n)):
            fail("slow")
        if extra and (len(extra) > 1 or not _is_strs(extra[0])):
            fail("slow")
    if not all(_is_count(n) for n in items("errors", dict).values()):
        fail("errors")
    for key in ("counters", "gauges"):
        for name, values, v in items(key, list):
            if not (type(name) is str and _is_strs(values) and type(v) in (int, float)):
                fail(key)
            if key == "counters" and not _is_amount(v):
                fail(key)
    for key in ("counter_labels", "gauge_labels"):
        if not all(_is_strs(names) for names in items(key, dict).values()):
            fail(key)
    if not _is_strs(list(items("counter_help", dict).values())):
        fail("counter_help")
    meta = items("histogram_meta", dict)
    for help_text, names, bounds in meta.values():
        if not (
            type(help_text) is str
            and _is_strs(names)
            and isinstance(bounds, list)
            and all(type(b) in (int, float) and math.isfinite(b) for b in bounds)
        ):
            fail("histogram_meta")
    for name, values, counts, total in items("histograms", list):
        if not (
            name in meta
            and _is_strs(values)
            and _counts_ok(counts, len(meta[name][2]) + 1)
            and _is_amount(total)
        ):
            fail("histograms")
    for kind, values, counts, total in items("sizes", list):
        if not (
            kind in (0, 1)
            and type(kind) is int
            and _is_strs(values)
            and len(values) >= 3
            and _counts_ok(counts, len(SIZE_BUCKETS) + 1)
            and _is_amount(total)
        ):
            fail("sizes")
    for row in items("exemplars", list):
        method, endpoint, status, extra, bucket, trace_id, seconds, at = row
        if not (
            type(method) is str
            and type(endpoint) is str
            and type(status) is str
            and _is_strs(extra)
            and _is_count(bucket)
            and bucket < nbuckets
            and type(trace_id) is str
            and len(trace_id) <= 128
            and _is_amount(seconds)
            and _is_amount(at)
        ):
            fail("exemplars")
    for key in ("cpu", "cpu_exited"):
        if not _is_amount(state.get(key, 0.0)):
            fail(key)
    if not (_is_count(state.get("rss", 0)) and type(state.get("inflight", 0)) is int):
        fail("process figures")
    if not _is_strs(items("merged", list)):
        fail("merged")
