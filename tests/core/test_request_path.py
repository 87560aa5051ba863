"""The request path, slow-request count and internal errors used on their own."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from conftest import FakeClock
from eventmon.core.aggregates import RequestAggregates
from eventmon.core.exemplars import ExemplarStore, current_trace
from eventmon.core.faults import InternalErrors, SlowRequests
from eventmon.core.histogram import HdrLayout
from eventmon.core.journal import Journals
from eventmon.core.registry import LabelPolicy
from eventmon.core.request_path import RequestPath
from eventmon.hooks import SlowRequestDispatcher


def _path(limit: int = 3) -> tuple[RequestPath, list[list[Any]], list[Any], FakeClock]:
    folded: list[list[Any]] = []
    slow: list[Any] = []
    clock = FakeClock()
    path = RequestPath(Journals(folded.append, limit), lambda *a: slow.append(a), clock, 0.5, limit)
    return path, folded, slow, clock


def test_the_python_path_appends_reports_slow_and_folds_a_full_journal() -> None:
    path, folded, slow, clock = _path(limit=3)
    token = path.begin()
    assert (token.started, token.finished) == (1, 0)
    clock.advance(0.75)
    path.end(token, "GET", "/a", 200, clock() - 0.75)
    path.observe("POST", "/b", 201, 0.1)
    assert token.finished == 1
    assert [e[:4] for e in token.entries] == [("GET", "/a", 200, 0.75), ("POST", "/b", 201, 0.1)]
    assert slow == [("GET", "/a", 200, 0.75)]
    path.observe("GET", "/c", 200, 0.2)  # the third entry fills the journal
    assert [len(batch) for batch in folded] == [3]
    assert token.entries == []
    with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
        path.observe("GET", "/c", 200, float("nan"))
    with pytest.raises(TypeError, match="status must be an int"):
        path.end(path.begin(), "GET", "/c", "200", clock())  # type: ignore[arg-type]
    assert token.started == token.finished == 2  # the failed end still finished it


def test_the_traced_variants_keep_the_contexts_trace_id() -> None:
    path, _, _, clock = _path(limit=100)
    store = ExemplarStore((0.1, 1.0), 10)
    path.trace(store)
    reset = current_trace.set("ab" * 16)
    try:
        path.end_traced(path.begin(), "GET", "/a", 200, clock() - 0.05)
        path.observe_traced("GET", "/a", 200, 0.5)
    finally:
        current_trace.reset(reset)
    path.observe_traced("GET", "/a", 200, 5.0)  # no trace: no exemplar
    buckets = store.by_series()[("GET", "/a", "200")]
    assert sorted(buckets) == [0, 1]
    assert buckets[0][0] == "ab" * 16
    assert buckets[0][1] == pytest.approx(0.05)


def test_slow_requests_are_counted_under_the_label_cap_and_handed_to_the_hooks() -> None:
    policy = LabelPolicy(2)
    aggregates = RequestAggregates(
        HdrLayout(), (0.1, 1.0), label_policy=policy, window=60, clock=FakeClock(), on_fault=print
    )
    seen: list[Any] = []
    hooks = SlowRequestDispatcher([lambda *a: seen.append(a)], on_error=print)
    slow = SlowRequests(policy, aggregates, hooks)
    for endpoint in ("/a", "/a", "/b", "/c", "/d"):
        slow.record("GET", endpoint, 200, 2.0)
    assert hooks.flush(5)
    hooks.shutdown(5)
    counts = slow.counts()
    assert counts[("GET", "/a")] == 2
    assert sum(counts.values()) == 5
    assert len(counts) == 3  # two sets, then the overflow one
    assert [a[1] for a in seen] == ["/a", "/a", "/b", "/c", "/d"]


def test_internal_errors_log_the_first_ten_then_one_in_a_thousand(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = InternalErrors(LabelPolicy(10))
    with caplog.at_level(logging.ERROR, logger="eventmon"):
        for _ in range(2001):
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                errors.report("fold")
    errors.count("hook")
    assert errors.counts() == {"fold": 2001, "hook": 1}
    assert len(caplog.records) == 10 + 2  # the 1,001st and the 2,001st
    assert all(r.exc_info is not None for r in caplog.records)


def test_a_raising_fold_listener_is_reported_and_the_fold_goes_on() -> None:
    folded: list[Any] = []
    faults: list[str] = []
    journals = Journals(folded.extend, 10)

    def listener(batch: list[Any]) -> None:
        raise RuntimeError("listener")

    journals.add_fold_listener(listener, faults.append)
    journals.mine().entries.append(("GET", "/a", 200, 0.1, 1.0))
    assert journals.read(len, folded) == 1
    assert faults == ["fold_listener"]
