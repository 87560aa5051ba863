"""User histograms: collector.define_histogram / observe_histogram, and their exposition."""

from __future__ import annotations

import itertools
import logging
import math
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from eventmon import ConfigurationError, MetricsCollector
from eventmon.core.registry import OVERFLOW
from eventmon.exporters.multiprocess import disable, enable
from eventmon.exporters.prometheus import render, render_families
from servers import promtool_check


def _collector(**kwargs: object) -> MetricsCollector:
    return MetricsCollector(slow_hooks=(), **kwargs)  # type: ignore[arg-type]


def _samples(body: bytes, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == name:
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_values_land_in_the_first_bucket_whose_bound_is_not_below_them() -> None:
    c = _collector()
    c.define_histogram("db_query_seconds", "Query time.", ["db"], buckets=[0.01, 0.1, 1])
    for v in (0.005, 0.01, 0.05, 0.1, 2.0, 0):
        c.observe_histogram("db_query_seconds", v, {"db": "main"})
    h = c.histograms()["db_query_seconds"]
    assert h.bounds == (0.01, 0.1, 1.0)
    assert h.label_names == ("db",)
    counts, total = h.samples[("main",)]
    assert counts == (3, 2, 0, 1)  # le=0.01 holds 0, 0.005 and 0.01 itself
    assert total == pytest.approx(2.165)


def test_text_exposition_has_cumulative_buckets_sum_and_count_and_passes_promtool() -> None:
    c = _collector()
    c.define_histogram("db_query_seconds", "Query time.", ["db"], buckets=[0.01, 0.1, 1])
    for v in (0.005, 0.05, 0.5, 5):
        c.observe_histogram("db_query_seconds", v, {"db": 'we"ird'})
    c.observe_histogram("payload_bytes", 300, buckets=[100, 1000])
    body = render(c)
    s = _samples(body, "db_query_seconds")
    lbl = ("db", 'we"ird')
    assert s[("db_query_seconds_bucket", (lbl, ("le", "0.01")))] == 1
    assert s[("db_query_seconds_bucket", (lbl, ("le", "0.1")))] == 2
    assert s[("db_query_seconds_bucket", (lbl, ("le", "1.0")))] == 3
    assert s[("db_query_seconds_bucket", (lbl, ("le", "+Inf")))] == 4
    assert s[("db_query_seconds_count", (lbl,))] == 4
    assert s[("db_query_seconds_sum", (lbl,))] == pytest.approx(5.555)
    assert "# HELP db_query_seconds Query time.\n# TYPE db_query_seconds histogram\n" in (
        body.decode()
    )
    assert _samples(body, "payload_bytes")[("payload_bytes_count", ())] == 1
    promtool_check(body)


def test_openmetrics_exposition_parses_as_histogram() -> None:
    c = _collector()
    c.observe_histogram("payload_bytes", 300, {"route": "/a"}, buckets=[100, 1000])
    c.observe_histogram("payload_bytes", 3000, {"route": "/a"}, buckets=[100, 1000])
    families = {f.name: f for f in parse_openmetrics(render(c, openmetrics=True).decode())}
    h = families["payload_bytes"]
    assert h.type == "histogram"
    by = {(s.name, s.labels.get("le")): s.value for s in h.samples}
    assert by[("payload_bytes_bucket", "1000.0")] == 1
    assert by[("payload_bytes_bucket", "+Inf")] == 2
    assert by[("payload_bytes_sum", None)] == 3300


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.5])
def test_non_finite_or_negative_values_are_refused(bad: float) -> None:
    c = _collector()
    with pytest.raises(ValueError, match="finite and >= 0"):
        c.observe_histogram("db_query_seconds", bad)
    c.observe_histogram("db_query_seconds", 0.1)
    with pytest.raises(ValueError, match="finite and >= 0"):
        c.observe_histogram("db_query_seconds", bad)
    counts, total = c.histograms()["db_query_seconds"].samples[()]
    assert (sum(counts), total) == (1, 0.1)


@pytest.mark.parametrize("bad", ["1", True, None])
def test_values_that_are_not_numbers_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="must be a number"):
        _collector().observe_histogram("h_seconds", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "buckets",
    [[], [1, 1], [2, 1], [math.nan], [0.1, math.inf, 2], "0.1", ["a"]],
)
def test_bad_buckets_are_a_configuration_error(buckets: object) -> None:
    with pytest.raises(ConfigurationError, match="buckets must be"):
        _collector().define_histogram("h_seconds", buckets=buckets)  # type: ignore[arg-type]


def test_a_trailing_inf_bound_is_accepted_as_the_implied_one() -> None:
    c = _collector()
    c.define_histogram("h_seconds", buckets=[0.1, 1, math.inf])
    assert c.histograms()["h_seconds"].bounds == (0.1, 1.0)


def test_redefining_with_other_labels_or_buckets_is_refused() -> None:
    c = _collector()
    c.define_histogram("h_seconds", "", ["db"], buckets=[1, 2])
    c.define_histogram("h_seconds", "", ["db"], buckets=[1, 2])  # idempotent
    with pytest.raises(ConfigurationError, match="has buckets"):
        c.define_histogram("h_seconds", "", ["db"], buckets=[1, 3])
    with pytest.raises(ConfigurationError, match="has labels"):
        c.define_histogram("h_seconds", "", ["table"], buckets=[1, 2])
    with pytest.raises(ConfigurationError, match="has labels"):
        c.observe_histogram("h_seconds", 1, {"table": "x"})
    with pytest.raises(ConfigurationError, match="has buckets"):
        c.observe_histogram("h_seconds", 1, {"db": "x"}, buckets=[5])


@pytest.mark.parametrize(
    "name",
    [
        "http_request_duration_seconds",
        "http_requests",  # its _total is eventmon's request counter
        "process_cpu_seconds",
        "eventmon_build",
        "http_request_duration_hdr_seconds",
    ],
)
def test_reserved_names_are_refused_like_user_counters(name: str) -> None:
    c = _collector()
    with pytest.raises(ConfigurationError, match="reserved"):
        c.observe_histogram(name, 1.0)
    with pytest.raises(ConfigurationError, match="reserved"):
        c.define_histogram(name)


def test_names_clashing_with_user_counters_or_gauges_are_refused_both_ways() -> None:
    c = _collector()
    c.increment_counter("jobs")
    with pytest.raises(ConfigurationError, match="clashes with the counter 'jobs'"):
        c.observe_histogram("jobs", 1.0)
    c.observe_histogram("queue_wait_seconds", 1.0)
    with pytest.raises(ConfigurationError, match="clashes with the histogram"):
        c.set_gauge("queue_wait_seconds_count", 3)
    with pytest.raises(ConfigurationError, match="clashes with the histogram"):
        c.increment_counter("queue_wait_seconds_sum")
    with pytest.raises(ConfigurationError, match="not a valid metric name"):
        c.observe_histogram("2fast", 1.0)


def test_names_clashing_with_another_histogram_samples_are_refused() -> None:
    c = _collector()
    c.observe_histogram("wait_seconds", 1.0)
    with pytest.raises(ConfigurationError, match="clashes with the histogram 'wait_seconds'"):
        c.observe_histogram("wait_seconds_bucket", 1.0)
    c.observe_histogram("wait_seconds", 2.0)  # the same family again is fine


def test_bad_label_names_and_le_are_refused() -> None:
    c = _collector()
    with pytest.raises(ConfigurationError, match="'le' is the bucket label"):
        c.observe_histogram("h_seconds", 1.0, {"le": "x"})
    with pytest.raises(ConfigurationError, match="not a valid label name"):
        c.define_histogram("h_seconds", label_names=["__x"])
    with pytest.raises(ConfigurationError, match="not a string"):
        c.define_histogram("h_seconds", label_names="db")


def test_label_sets_past_the_cap_go_to_the_overflow_set_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = _collector(max_label_sets=2)
    with caplog.at_level(logging.WARNING, logger="eventmon"):
        for tenant in ("a", "b", "c", "d", "a"):
            c.observe_histogram("tenant_wait_seconds", 0.2, {"tenant": tenant})
    samples = c.histograms()["tenant_wait_seconds"].samples
    assert set(samples) == {("a",), ("b",), (OVERFLOW,)}
    assert sum(samples[(OVERFLOW,)][0]) == 2
    assert sum(samples[("a",)][0]) == 2
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "tenant_wait_seconds reached its cap of 2" in caplog.records[0].message


def test_merged_across_workers_equals_one_collector_that_saw_everything(
    tmp_path: Path,
) -> None:
    alive = {101, 102, 103}
    reference = _collector()
    workers = {}
    for pid in sorted(alive):
        c = _collector()
        enable(
            c, tmp_path / "mp", identity=(pid, "s"), is_alive=lambda p, _s: p in alive, start=False
        )
        workers[pid] = c
    try:
        for k, c in enumerate(workers.values()):
            for i in range(40 + k):
                for target in (c, reference):
                    target.observe_histogram(
                        "db_query_seconds",
                        (i * 7 + k) % 30 / 10,
                        {"db": ["main", "replica"][i % 2]},
                        buckets=[0.5, 1, 2],
                    )
            c.multiprocess.write()
        # 103 dies: its figures move to the archive and must still be counted, once.
        alive.discard(103)
        workers.pop(103).multiprocess.close(final_write=False)
        for _ in range(2):
            body = render(workers[101])
            alone = render_families(reference)
            assert _samples(body, "db_query_seconds") == pytest.approx(
                _samples(alone, "db_query_seconds")
            )
        assert (
            _samples(body, "db_query_seconds")[("db_query_seconds_count", (("db", "main"),))]
            == 20 + 21 + 21
        )
    finally:
        for c in workers.values():
            disable(c)


def test_exact_under_threads() -> None:
    c = _collector()
    c.define_histogram("job_seconds", buckets=[0.5, 1])

    def work(k: int) -> None:
        for i in range(2000):
            c.observe_histogram("job_seconds", (i + k) % 3 * 0.5)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts, total = c.histograms()["job_seconds"].samples[()]
    assert sum(counts) == 12000
    assert counts[2] == 0  # 1.0 is the largest value: it counts in le="1.0"
    assert total == pytest.approx(sum((i + k) % 3 * 0.5 for k in range(6) for i in range(2000)))


@given(
    bounds=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=8, unique=True).map(
        sorted
    ),
    values=st.lists(st.floats(0, 2e6, allow_nan=False), max_size=40),
)
@settings(max_examples=60, deadline=None)
def test_same_buckets_as_prometheus_client_histogram(
    bounds: list[float], values: list[float]
) -> None:
    from prometheus_client import CollectorRegistry, Histogram

    c = _collector()
    c.define_histogram("x_seconds", buckets=bounds)
    registry = CollectorRegistry()
    theirs = Histogram("x_seconds", "x", buckets=bounds, registry=registry)
    for v in values:
        c.observe_histogram("x_seconds", v)
        theirs.observe(v)
    counts, total = c.histograms()["x_seconds"].samples.get((), ((0,) * (len(bounds) + 1), 0.0))
    expected = [
        s.value for s in next(iter(registry.collect())).samples if s.name == "x_seconds_bucket"
    ]
    assert list(itertools.accumulate(counts)) == expected
    assert total == pytest.approx(sum(values))


def test_json_snapshot_lists_histograms_with_cumulative_buckets() -> None:
    from eventmon.exporters.json import snapshot_json

    c = _collector()
    c.define_histogram("db_query_seconds", "", ["db"], buckets=[0.01, 0.1])
    for v in (0.005, 0.05, 0.5):
        c.observe_histogram("db_query_seconds", v, {"db": "main"})
    assert snapshot_json(c)["histograms"] == {
        "db_query_seconds": [
            {
                "labels": {"db": "main"},
                "buckets": [[0.01, 1], [0.1, 2]],
                "sum": pytest.approx(0.555),
                "count": 3,
            }
        ]
    }
