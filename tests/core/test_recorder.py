"""The C request path (begin, end, observe) behaves exactly as the Python methods do."""

from __future__ import annotations

import gc
import math
import os
import threading
import weakref
from typing import Any

import pytest

from conftest import FakeClock
from eventmon import MetricsCollector
from eventmon.core._native import speedups as _speedups
from servers import IN_CI

# Skipped on the pure-Python run, and where no compiler built the extension
# (CI insists on one: tests/core/test_fold.py::test_the_extension_was_built).
pytestmark = pytest.mark.skipif(
    _speedups is None and (bool(os.environ.get("EVENTMON_PURE_PYTHON")) or not IN_CI),
    reason="the C accelerator is not in use",
)


def _pair(**options: Any) -> tuple[MetricsCollector, MetricsCollector, list[Any], list[Any]]:
    """(C collector, Python collector, their slow-hook calls), on twin fake clocks."""
    calls_c: list[Any] = []
    calls_py: list[Any] = []
    fast = MetricsCollector(slow_hooks=[lambda *a: calls_c.append(a)], clock=FakeClock(), **options)
    ref = MetricsCollector(slow_hooks=[lambda *a: calls_py.append(a)], clock=FakeClock(), **options)
    assert fast.end.__self__ is fast._recorder  # type: ignore[attr-defined]
    for name in ("begin", "end", "observe"):
        del vars(ref)[name]  # back to the Python methods of the class
    assert ref.end.__func__ is MetricsCollector.end  # type: ignore[attr-defined]
    return fast, ref, calls_c, calls_py


def _script(c: MetricsCollector) -> list[Any]:
    """A run of requests with slow ones, errors and drains; returns what it saw."""
    clock = c.clock
    assert isinstance(clock, FakeClock)
    seen = []
    open_tokens = []
    for i in range(40):
        t = c.begin()
        start = clock()
        open_tokens.append((t, start))
        clock.advance(0.01 * (i % 7) + (0.6 if i % 9 == 0 else 0.0))
        if i % 3 == 0:
            token, begun = open_tokens.pop(0)
            c.end(token, "GET", f"/e/{i % 4}", 500 if i % 5 == 0 else 200, begun)
        c.observe("POST", "/o", 201, 0.001 * i)
        seen.append((c.in_progress(), list(c._journals.mine().entries)))
    for token, begun in open_tokens:
        c.end(token, "PUT", "/late", 204, begun)
    c.flush_hooks()
    seen.append((c.in_progress(), c.total_requests()))
    seen.append([(s.endpoint, s.status_code, s.count, s.sum, s.buckets) for s in c.series()])
    seen.append(c.slow_requests())
    return seen


def test_same_entries_aggregates_and_slow_calls() -> None:
    fast, ref, calls_c, calls_py = _pair(journal_limit=5, slow_threshold=0.5)
    assert _script(fast) == _script(ref)
    assert calls_c == calls_py
    assert len(calls_c) == sum(fast.slow_requests().values()) > 0
    fast.shutdown()
    ref.shutdown()


def test_slow_threshold_is_settable() -> None:
    c = MetricsCollector(slow_hooks=(), clock=FakeClock())
    c.slow_threshold = 0.25
    assert c._recorder.slow_threshold == 0.25
    c.observe("GET", "/x", 200, 0.3)
    c.observe("GET", "/x", 200, 0.2)
    assert c.slow_requests() == {("GET", "/x"): 1}
    with pytest.raises(Exception, match="slow_threshold"):
        c.slow_threshold = -1


def test_a_foreign_token_is_refused_and_the_adapter_carries_on() -> None:
    c = MetricsCollector(slow_hooks=())
    with pytest.raises(TypeError, match="begin"):
        c.end(object(), "GET", "/x", 200, 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.end(c.begin(), "GET", "/x", 200, "soon")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.observe("GET", "/x", 200, "slow")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="status"):
        c.observe("GET", "/x", "200", 0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="status"):
        c.end(c.begin(), "GET", "/x", 200.0, c.clock())  # type: ignore[arg-type]
    assert c.total_requests() == 0  # nothing half-recorded


def test_a_subclass_keeps_its_own_methods() -> None:
    class Quiet(MetricsCollector):
        def observe(self, method: str, endpoint: str, status_code: int, seconds: float) -> None:
            super().observe(method, endpoint, 299, seconds)

    q = Quiet(slow_hooks=())
    q.observe("GET", "/x", 200, 0.1)
    assert [s.status_code for s in q.series()] == ["299"]
    assert q.end.__self__ is q._recorder  # type: ignore[attr-defined]  # not overridden


def test_threads_lose_nothing() -> None:
    c = MetricsCollector(slow_hooks=(), journal_limit=64)

    def work() -> None:
        for _ in range(20_000):
            c.end(c.begin(), "GET", "/t", 200, c.clock())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in range(50):
        c.series()  # a reader folding while the writers append
    for t in threads:
        t.join()
    assert c.total_requests() == 160_000
    assert c.in_progress() == 0


def test_collector_with_recorder_is_garbage_collected() -> None:
    # The recorder refers back to the collector (its bound methods): a cycle that
    # only a GC-aware C type lets the collector reclaim.
    c = MetricsCollector(slow_hooks=())
    c.end(c.begin(), "GET", "/x", 200, c.clock())
    ref = weakref.ref(c)
    c.shutdown()
    del c
    gc.collect()
    assert ref() is None


def test_journal_type_matches_the_python_one() -> None:
    assert _speedups is not None
    j = _speedups.Journal()
    assert (j.entries, j.started, j.finished) == ([], 0, 0)
    assert j.thread is threading.current_thread()
    j.started += 2
    j.finished = 1
    assert (j.started, j.finished) == (2, 1)
    with pytest.raises(TypeError):
        _speedups.Journal(1)  # type: ignore[call-arg]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), -0.001])
def test_non_finite_or_negative_durations_are_refused_alike(bad: float) -> None:
    fast, ref, _, _ = _pair()
    outcomes = []
    for c in (fast, ref):
        with pytest.raises(ValueError, match="seconds must be a finite number >= 0") as observe:
            c.observe("GET", "/x", 200, bad)
        token = c.begin()
        # A start after the end (or NaN) makes the duration bad too; the request still
        # stops being in progress.
        with pytest.raises(ValueError, match="seconds must be a finite number >= 0") as end:
            c.end(token, "GET", "/x", 200, bad if math.isnan(bad) else c.clock() - bad)
        c.observe("GET", "/x", 200, 0.25)  # and the collector carries on
        outcomes.append(
            (str(observe.value), str(end.value), c.in_progress(), c.total_requests(), c.series())
        )
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][2:4] == (0, 1)
