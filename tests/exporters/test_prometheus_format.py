"""The exposition checked by Prometheus's own parsers and tools."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from eventmon import MetricsCollector
from eventmon.core.registry import reserved_name_problem
from eventmon.exporters.multiprocess import disable, enable
from eventmon.exporters.prometheus import render
from servers import promtool_check


def sample_collector() -> MetricsCollector:
    c = MetricsCollector(slow_hooks=(), slow_threshold=0.4)
    for i in range(200):
        c.observe("GET", "/events/{event_id}", 200, (i % 50) / 100)
    for _ in range(7):
        c.observe("POST", "/events", 500, 0.02)
    c.observe("GET", 'a "quoted" \\ route\nwith newline', 404, 0.001)
    c.increment_counter("db_connection_errors", amount=2)
    c.set_gauge("queue_depth", 3, {"queue": "emails"})
    return c


def by_labels(samples, name):  # type: ignore[no-untyped-def]
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.name == name}


def test_text_format_parses_back_to_the_exact_counts() -> None:
    c = sample_collector()
    families = {f.name: f for f in text_string_to_metric_families(render(c).decode())}
    requests = by_labels(families["http_requests"].samples, "http_requests_total")
    assert (
        requests[(("endpoint", "/events/{event_id}"), ("method", "GET"), ("status_code", "200"))]
        == 200
    )
    assert requests[(("endpoint", "/events"), ("method", "POST"), ("status_code", "500"))] == 7
    # Label values with quotes, backslashes and a newline survive escaping.
    assert (
        requests[
            (
                ("endpoint", 'a "quoted" \\ route\nwith newline'),
                ("method", "GET"),
                ("status_code", "404"),
            )
        ]
        == 1
    )
    hist = families["http_request_duration_seconds"]
    assert hist.type == "histogram"
    buckets = {
        s.labels["le"]: s.value
        for s in hist.samples
        if s.name.endswith("_bucket") and s.labels["endpoint"] == "/events/{event_id}"
    }
    # values 0.00 .. 0.49 s, four of each: le is inclusive
    assert buckets == {
        "0.0001": 4.0,
        "0.005": 4.0,
        "0.015": 8.0,
        "0.05": 24.0,
        "0.1": 44.0,
        "0.5": 200.0,
        "1.0": 200.0,
        "2.5": 200.0,
        "5.0": 200.0,
        "10.0": 200.0,
        "+Inf": 200.0,
    }
    slow = by_labels(families["http_slow_requests"].samples, "http_slow_requests_total")
    assert slow == {(("endpoint", "/events/{event_id}"), ("method", "GET")): 36.0}
    assert families["db_connection_errors"].samples[0].value == 2
    assert families["queue_depth"].samples[0].labels == {"queue": "emails"}
    quantiles = by_labels(
        families["http_request_duration_hdr_seconds"].samples,
        "http_request_duration_hdr_seconds",
    )
    p95 = quantiles[(("endpoint", "/events/{event_id}"), ("quantile", "0.95"))]
    assert 0.47 <= p95 <= 0.47 * (1 + 1 / 128)


def test_openmetrics_format_parses_with_the_strict_parser() -> None:
    c = sample_collector()
    text = render(c, openmetrics=True).decode()
    families = {f.name: f for f in openmetrics_families(text)}
    requests = by_labels(families["http_requests"].samples, "http_requests_total")
    assert sum(requests.values()) == 208
    assert families["http_request_duration_seconds"].type == "histogram"


def test_unit_ms_reproduces_the_original_metric_name_and_bounds() -> None:
    c = sample_collector()
    families = {f.name: f for f in text_string_to_metric_families(render(c, unit="ms").decode())}
    hist = families["http_request_duration_ms"]
    les = sorted({s.labels["le"] for s in hist.samples if s.name.endswith("_bucket")}, key=float)
    assert les == ["0.1", "5.0", "15.0", "50.0", "100.0", "500.0", "+Inf"]
    total = [
        s.value
        for s in hist.samples
        if s.name == "http_request_duration_ms_sum" and s.labels["method"] == "POST"
    ]
    assert total == [pytest.approx(140.0)]


def test_promtool_check_metrics_is_clean() -> None:
    promtool_check(render(sample_collector()))  # no error and no lint line


COUNTER_HELP = 'Queries run.\nSee the "db" panel; C:\\db.'
HISTOGRAM_HELP = 'Nightly "jobs" \\ batches,\nby queue.'


@pytest.mark.parametrize("openmetrics", [False, True])
def test_user_help_texts_are_exported_escaped(openmetrics: bool) -> None:
    c = MetricsCollector(slow_hooks=())
    c.define_counter("db_queries", COUNTER_HELP)
    c.increment_counter("db_queries")
    c.define_histogram("job_seconds", HISTOGRAM_HELP)
    c.observe_histogram("job_seconds", 1.0)
    c.set_gauge("queue_depth", 3)  # set_gauge takes no help: the default one stays
    body = render(c, openmetrics=openmetrics)
    parse = openmetrics_families if openmetrics else text_string_to_metric_families
    families = {f.name: f for f in parse(body.decode())}
    assert families["db_queries"].documentation == COUNTER_HELP
    assert families["job_seconds"].documentation == HISTOGRAM_HELP
    assert families["queue_depth"].documentation == "Gauge queue_depth."
    quote = '\\"' if openmetrics else '"'
    name = "db_queries" if openmetrics else "db_queries_total"
    line = f"# HELP {name} Queries run.\\nSee the {quote}db{quote} panel; C:\\\\db.\n"
    assert line in body.decode()
    if not openmetrics:
        promtool_check(body)
    c.shutdown()


def test_render_1000_label_sets_is_complete() -> None:
    c = MetricsCollector(slow_hooks=(), max_label_sets=2000)
    for i in range(1000):
        c.observe("GET", f"/route/{i}", 200, 0.01)
    families = {f.name: f for f in text_string_to_metric_families(render(c).decode())}
    assert len(families["http_requests"].samples) == 1000


@pytest.mark.parametrize("unit", ["s", "ms"])
@pytest.mark.parametrize("openmetrics", [False, True])
def test_every_builtin_family_is_reserved_against_user_metrics(
    unit: str, openmetrics: bool
) -> None:
    c = sample_collector()
    text = render(c, openmetrics=openmetrics, unit=unit).decode()
    user = {"db_connection_errors", "db_connection_errors_total", "queue_depth"}
    types = [line.split() for line in text.splitlines() if line.startswith("# TYPE ")]
    builtin = [name for _, _, name, _ in types if name not in user]
    assert len(builtin) >= 8
    for name in builtin:
        # A user counter or gauge named like the family is refused when defined.
        assert reserved_name_problem(name, "gauge") is not None, name
        assert reserved_name_problem(name, "counter") is not None, name
        assert reserved_name_problem(name + "_total", "counter") is not None, name
    assert reserved_name_problem("db_connection_errors", "counter") is None


def histogram_quantile(q: float, buckets: dict[str, float]) -> float:
    """Prometheus's histogram_quantile over one series' cumulative buckets."""
    bounds = sorted((float(le), n) for le, n in buckets.items())
    total = bounds[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, n in bounds:
        if n >= rank:
            if upper == float("inf"):
                return lower  # the highest finite bound: all Prometheus can say
            return lower + (upper - lower) * (rank - below) / (n - below)
        lower, below = upper, n
    raise AssertionError("unreachable")


def test_p95_of_two_second_requests_reads_between_1_and_2_5_s_not_0_5() -> None:
    c = MetricsCollector(slow_hooks=())
    for _ in range(95):
        c.observe("GET", "/checkout", 200, 2.0)
    for _ in range(5):
        c.observe("GET", "/checkout", 200, 7.0)
    body = render(c)
    promtool_check(body)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    buckets = {
        s.labels["le"]: s.value
        for s in families["http_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert list(buckets)[-5:] == ["0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"][-5:]
    assert (buckets["1.0"], buckets["2.5"], buckets["5.0"], buckets["10.0"]) == (0, 95, 95, 100)
    assert 1.0 < histogram_quantile(0.95, buckets) <= 2.5
    assert 5.0 < histogram_quantile(0.99, buckets) <= 10.0


def test_unit_ms_keeps_exactly_the_specified_bounds_and_counts_slow_requests_in_inf() -> None:
    c = MetricsCollector(slow_hooks=())
    c.observe("GET", "/checkout", 200, 0.2)
    c.observe("GET", "/checkout", 200, 2.0)
    body = render(c, unit="ms")
    # The original name is what unit="ms" is for; promtool's lint says so and nothing else.
    promtool_check(body, allowed="should not contain abbreviated units")
    openmetrics = render(c, unit="ms", openmetrics=True).decode()
    assert len(list(openmetrics_families(openmetrics))) >= 8
    hist = {f.name: f for f in text_string_to_metric_families(body.decode())}[
        "http_request_duration_ms"
    ]
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets == {
        "0.1": 0, "5.0": 0, "15.0": 0, "50.0": 0, "100.0": 0, "500.0": 1, "+Inf": 2
    }  # fmt: skip
    assert [s.value for s in hist.samples if s.name.endswith("_count")] == [2]
    assert [s.value for s in hist.samples if s.name.endswith("_sum")] == [pytest.approx(2200.0)]


def test_own_buckets_in_ms_are_all_exported() -> None:
    c = MetricsCollector(slow_hooks=(), buckets=(0.25, 1.0, 4.0))
    c.observe("GET", "/a", 200, 2.0)
    hist = {f.name: f for f in text_string_to_metric_families(render(c, unit="ms").decode())}[
        "http_request_duration_ms"
    ]
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets == {"250.0": 0, "1000.0": 0, "4000.0": 1, "+Inf": 1}


def nan_inf_collector() -> MetricsCollector:
    c = MetricsCollector(slow_hooks=())
    c.observe("GET", "/a", 200, 0.01)
    c.set_gauge("ratio", float("nan"))
    c.set_gauge("headroom", float("inf"), {"pool": "web"})
    c.set_gauge("headroom", float("-inf"), {"pool": "db"})
    c.set_gauge("big", 1e300)
    return c


def test_nan_and_infinite_gauges_are_exported_as_prometheus_spells_them() -> None:
    c = nan_inf_collector()
    for openmetrics in (False, True):
        text = render(c, openmetrics=openmetrics).decode()
        lines = set(text.splitlines())
        assert {
            "ratio NaN",
            'headroom{pool="web"} +Inf',
            'headroom{pool="db"} -Inf',
            "big 1e+300",
        } <= lines
        parse = openmetrics_families if openmetrics else text_string_to_metric_families
        values = {(s.name, s.labels.get("pool")): s.value for f in parse(text) for s in f.samples}
        assert math.isnan(values[("ratio", None)])
        assert values[("headroom", "web")] == math.inf
        assert values[("headroom", "db")] == -math.inf
    promtool_check(render(c))


def test_nan_gauges_survive_the_worker_merge(tmp_path: Path) -> None:
    directory = tmp_path / "mp"
    alive = {1, 2}
    workers = []
    for pid in (1, 2):
        w = MetricsCollector(slow_hooks=())
        enable(w, directory, identity=(pid, "s"), is_alive=lambda p, _s: p in alive, start=False)
        workers.append(w)
    try:
        workers[0].set_gauge("ratio", float("nan"))
        workers[1].set_gauge("ratio", float("-inf"))
        workers[1].observe("GET", "/a", 200, 0.01)
        workers[1].multiprocess.write()
        body = render(workers[0])
        promtool_check(body)
        lines = set(body.decode().splitlines())
        assert {'ratio{worker="1"} NaN', 'ratio{worker="2"} -Inf'} <= lines
        # Worker 2 exits: its counts go to the archive, and scrapes keep working.
        alive.discard(2)
        workers[1].multiprocess.close(final_write=False)
        body = render(workers[0])
        promtool_check(body)
        assert 'ratio{worker="1"} NaN' in body.decode().splitlines()
        assert 'http_requests_total{method="GET",endpoint="/a",status_code="200"} 1' in (
            body.decode().splitlines()
        )
    finally:
        for w in workers:
            disable(w)
