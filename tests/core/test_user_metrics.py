"""UserMetrics on its own: counters, gauges and histograms under one label policy."""

from __future__ import annotations

import pytest

from eventmon import ConfigurationError
from eventmon.core.registry import OVERFLOW, LabelPolicy
from eventmon.core.user_metrics import UserMetrics


def test_counters_gauges_and_histograms() -> None:
    m = UserMetrics(LabelPolicy(), on_fault=lambda where: None)
    m.define_counter("jobs", "Jobs run.", ("queue",))
    m.increment_counter("jobs", {"queue": "mail"})
    m.increment_counter("jobs_total", {"queue": "mail"}, 2)
    assert m.counters() == {"jobs": {("mail",): 3}}
    assert m.counter_value("jobs", {"queue": "mail"}) == 3.0
    assert (m.counter_help("jobs"), m.counter_labels("jobs")) == ("Jobs run.", ("queue",))
    m.set_gauge("queue_depth", 7, {"queue": "mail"})
    assert m.gauges() == {"queue_depth": {("mail",): 7.0}}
    m.observe_histogram("wait_seconds", 0.2, buckets=(0.1, 1.0))
    snap = m.histograms()["wait_seconds"]
    assert snap.samples[()] == ((0, 1, 0), pytest.approx(0.2))


def test_names_clash_across_kinds_and_label_sets_are_capped() -> None:
    m = UserMetrics(LabelPolicy(max_label_sets=1), on_fault=lambda where: None)
    m.increment_counter("hits", {"page": "a"})
    m.increment_counter("hits", {"page": "b"})  # past the cap
    assert m.counters()["hits"] == {("a",): 1, (OVERFLOW,): 1}
    with pytest.raises(ConfigurationError, match="clashes"):
        m.set_gauge("hits_total", 1.0)


def test_a_raising_histogram_listener_is_reported_not_propagated() -> None:
    faults: list[str] = []
    m = UserMetrics(LabelPolicy(), on_fault=faults.append)
    seen: list[tuple[object, ...]] = []

    def boom(*args: object) -> None:
        raise RuntimeError("listener failed")

    m.add_histogram_listener(boom)
    m.add_histogram_listener(lambda *args: seen.append(args))
    m.observe_histogram("db_query_seconds", 0.01, {"table": "events"})
    assert faults == ["histogram_listener"]
    assert seen == [("db_query_seconds", 0.01, ("table",), ("events",))]
