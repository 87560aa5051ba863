"""The compiled fold leaves every aggregate exactly as the reference Python fold does."""

from __future__ import annotations

import math
import os
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventmon import MetricsCollector
from eventmon.core import _native
from eventmon.core import fold as fold_module
from eventmon.core.aggregates import RequestAggregates
from eventmon.core.fold import fold_python
from servers import IN_CI

try:
    from eventmon.core._speedups import fold as compiled
except ImportError:  # no C compiler at install time: CI insists on one, a laptop need not
    compiled = None

# Skipped on the pure-Python run (whose aggregates are lists, not the arrays the C
# fold writes), and where no compiler built the extension; CI insists on one.
pytestmark = pytest.mark.skipif(
    _native.speedups is None and (bool(os.environ.get("EVENTMON_PURE_PYTHON")) or not IN_CI),
    reason="the C accelerator is not in use",
)

WINDOW = 5

methods = st.sampled_from(["GET", "POST", "DELETE", "BREW"])  # BREW: an unknown method
endpoints = st.sampled_from([f"/e/{i}" for i in range(8)] + ["/events/{event_id}"])
statuses = st.sampled_from([200, 201, 404, 499, 500, 503])
seconds = st.one_of(
    st.floats(min_value=0.0, max_value=7200.0, allow_nan=False),
    st.sampled_from([0.0, 1e-6, 3e-6, 0.0001, 0.005, 0.015, 0.05, 0.1, 0.5, 3600.0, 1e9]),
    st.floats(min_value=-1.0, max_value=0.0),
)
# Steps between end times: mostly forward, sometimes far ahead (rotations, idle
# windows), sometimes back (a late entry from another thread's journal).
steps = st.one_of(
    st.floats(min_value=0.0, max_value=0.7),
    st.floats(min_value=3.0, max_value=25.0),
    st.floats(min_value=-12.0, max_value=0.0),
)
entries = st.lists(st.tuples(methods, endpoints, statuses, seconds, steps), max_size=300)


def _aggregates(fold: Any, max_label_sets: int) -> RequestAggregates:
    """A collector's request aggregates, folding with ``fold``."""
    c = MetricsCollector(
        window=WINDOW, slow_hooks=(), max_label_sets=max_label_sets, clock=lambda: 1000.0
    )._aggregates
    c.fold_batch = fold  # the same tables (arrays) serve both implementations
    c.cuts = array("d", c.cuts)
    c.slot_of = array("q", c.slot_of)
    c.bucket_of = array("q", c.bucket_of)
    return c


def _state(c: RequestAggregates) -> dict[str, Any]:
    return {
        "series": {
            k: (s.method, s.endpoint, s.status, s.sums[0], list(s.bucket_counts))
            for k, s in c.series_table.items()
        },
        "hists": {e: (list(h.counts), list(h.groups)) for e, h in c.endpoint_hists.items()},
        "recent": list(c.recent.counts),
        "recent_prev": list(c.recent_prev.counts),
        "recent_until": c.recent_until,
        "ring": list(c.window.ring),
        "overflowed": (c.series_sets.limit.overflowed, c.endpoint_sets.limit.overflowed),
    }


def _batches(raw: list[tuple[str, str, int, float, float]]) -> list[list[tuple[Any, ...]]]:
    end = 1000.0
    batch = []
    for method, endpoint, status, secs, step in raw:
        end += step
        batch.append((method, endpoint, status, secs, end))
    # Two folds: the second starts from the state the first left.
    half = len(batch) // 2
    return [batch[:half], batch[half:]]


@settings(max_examples=300, deadline=None)
@given(raw=entries, cap=st.sampled_from([3, 1000]))
def test_compiled_fold_matches_python(
    raw: list[tuple[str, str, int, float, float]], cap: int
) -> None:
    ref = _aggregates(fold_python, cap)
    fast = _aggregates(compiled, cap)
    for batch in _batches(raw):
        ref.fold(list(batch))
        fast.fold(list(batch))
    assert _state(fast) == _state(ref)
    assert sum(s.count for s in fast.series_table.values()) == len(raw)


labelled_endpoints = st.one_of(
    st.tuples(st.sampled_from(["/e/0", "/e/1"]), st.sampled_from(["acme", "globex", ""])),
    st.sampled_from(["/e/0", ("/e/1",), ("/e/0", 7), 42]),  # plain, and malformed keys
)
labelled_entries = st.lists(
    st.tuples(methods, labelled_endpoints, statuses, seconds, steps), max_size=200
)


@settings(max_examples=200, deadline=None)
@given(raw=labelled_entries, cap=st.sampled_from([3, 1000]))
def test_compiled_fold_matches_python_with_extra_labels(raw: list[Any], cap: int) -> None:
    # Endpoints as adapters with header_labels record them: (template, *values).
    ref = _aggregates(fold_python, cap)
    fast = _aggregates(compiled, cap)
    for c in (ref, fast):
        c.extra_names = ("tenant",)  # what MetricsCollector.use_extra_labels sets
    for batch in _batches(raw):
        ref.fold(list(batch))
        fast.fold(list(batch))
    assert _state(fast) == _state(ref)
    assert [(s.endpoint, s.extra) for s in fast.series()] == [
        (s.endpoint, s.extra) for s in ref.series()
    ]
    assert sum(s.count for s in fast.series_table.values()) == len(raw)
    # Percentile histograms stay per route template.
    assert set(fast.endpoint_hists) <= {"/e/0", "/e/1", "__unmatched__", "__overflow__"}


def test_equal_labels_of_different_objects_share_a_series() -> None:
    # Journals hold whatever strings the server made; equal is enough.
    c = _aggregates(compiled, 1000)
    a, b = "/events/{event_id}", "".join(["/events/", "{event_id}"])
    assert a is not b
    c.fold([("GET", a, 200, 0.01, 1000.1), ("GET", b, 200, 0.02, 1000.2)])
    (s,) = c.series_table.values()
    assert s.count == 2
    assert math.isclose(s.sum, 0.03)


def test_many_series_in_one_batch() -> None:
    # More series than the C fold holds buffers for at once (it recycles them).
    ref, fast = _aggregates(fold_python, 1000), _aggregates(compiled, 1000)
    batch = [("GET", f"/e/{i % 70}", 200 + i % 3, i / 1e4, 1000.0 + i / 100) for i in range(2000)]
    ref.fold(list(batch))
    fast.fold(list(batch))
    assert _state(fast) == _state(ref)
    assert len(fast.series_table) == 210


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (("GET", "/x", 200, 0.1), ValueError),  # four fields
        (("GET", "/x", 200, "fast", 1000.0), TypeError),
        (("GET", "/x", "200", 0.1, 1000.0), TypeError),
        (("GET", "/x", 200, 0.1, math.inf), OverflowError),
    ],
)
def test_bad_entries_raise_like_python(entry: tuple[Any, ...], error: type[Exception]) -> None:
    for fold in (fold_python, compiled):
        c = _aggregates(fold, 1000)
        with pytest.raises(error):
            c.fold([entry])


def test_bad_tables_are_refused() -> None:
    c = _aggregates(compiled, 1000)
    args = [
        [("GET", "/x", 200, 0.1, 1000.0)],
        0,
        c.series_table,
        c._new_series,
        c.cuts,
        c.slot_of,
        c.bucket_of,
        c.recent,
        c.recent_until,
        c.window.ring,
        c.window.size,
    ]
    with pytest.raises(TypeError):
        compiled(*args[:4], list(c.cuts), *args[5:])
    with pytest.raises(ValueError, match="sizes"):
        compiled(*args[:5], array("q", c.slot_of[:-1]), *args[6:])
    with pytest.raises(ValueError, match="start"):
        compiled(args[0], -1, *args[2:])
    with pytest.raises(ValueError, match="sizes"):  # a window larger than its ring
        compiled(*args[:10], 2**59)
    assert c.series_table == {}  # nothing was folded


def test_the_collector_uses_the_compiled_fold() -> None:
    # (The module is skipped when EVENTMON_PURE_PYTHON selects the Python fold.)
    assert fold_module.fold is compiled
    assert MetricsCollector()._aggregates.fold_batch is fold_module.fold


def test_the_extension_was_built() -> None:
    assert compiled is not None, "eventmon.core._speedups is missing: was gcc installed?"


def test_statuses_that_are_not_plain_ints_compare_as_in_python() -> None:
    from http import HTTPStatus

    batch = [
        ("GET", "/s", HTTPStatus.SERVICE_UNAVAILABLE, 0.01, 1000.1),
        ("GET", "/s", True, 0.01, 1000.2),
        ("GET", "/s", 2**70, 0.01, 1000.3),
        ("GET", "/s", 200.0, 0.01, 1000.4),
    ]
    ref, fast = _aggregates(fold_python, 1000), _aggregates(compiled, 1000)
    ref.fold(list(batch))
    fast.fold(list(batch))
    assert _state(fast) == _state(ref)
    assert fast.window.stats(1000.5).errors == 2


def test_the_extension_is_not_used_in_a_sub_interpreter(tmp_path: Any) -> None:
    # Its C statics belong to the main interpreter (mod_wsgi runs apps in others).
    testcapi = pytest.importorskip("_testcapi")
    import subprocess
    import sys

    out = tmp_path / "seen.txt"
    script = f"""
import _testcapi
import eventmon.wsgi
sub = (
    "import eventmon.core._native as n, eventmon.wsgi as w\\n"
    "open({str(out)!r}, 'w').write(repr((n.speedups is None, w._native_response is None)))"
)
assert _testcapi.run_in_subinterp(sub) == 0
from eventmon import MetricsCollector
c = MetricsCollector(slow_hooks=())
c.observe("GET", "/x", 200, 0.1)
assert c.total_requests() == 1
"""
    del testcapi
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "(True, True)"
