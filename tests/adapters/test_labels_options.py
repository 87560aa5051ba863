"""Issue 13, item 1: labels, names and exclusions, the same in every framework.

``exclude_patterns`` and ``exclude_methods`` skip requests; ``namespace``,
``const_labels`` and ``group_status_codes`` shape the metrics page only (the
collector keeps method, route and exact status). Each runs through Starlette,
FastAPI, Flask, plain WSGI and Django (sync and async) via the shared harness.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from adapters.apps import ctx
from eventmon import ConfigurationError
from eventmon.exporters.prometheus import render
from servers import require_binary


def counts() -> dict[tuple[str, str, str], int]:
    return {(s.method, s.endpoint, s.status_code): s.count for s in ctx.collector.series()}


def test_exclude_patterns_skip_matching_paths(make: Any) -> None:
    h = make(exclude_patterns=[r"^/api/v\d+/", r"/stream-"])
    assert h.request("/api/v1/items/7").status == 200
    assert h.request("/events/1").status == 200
    assert h.request("/stream-boom").status in (0, 500)
    assert counts() == {("GET", h.templates["event"], "200"): 1}
    # exclude_paths still applies beside the patterns (the harness excludes /health).
    h.request("/health")
    assert sum(counts().values()) == 1


def test_exclude_methods_skip_those_requests(make: Any) -> None:
    h = make(exclude_methods=["options", "HEAD"])
    h.request("/events/1", method="OPTIONS")
    h.request("/events/1", method="HEAD")
    assert h.request("/events/1").status == 200
    assert counts() == {("GET", h.templates["event"], "200"): 1}


def _page(h: Any, openmetrics: bool = False) -> str:
    headers = {"Accept": "application/openmetrics-text"} if openmetrics else {}
    r = h.request("/metrics", headers=headers)
    assert r.status == 200
    return r.body.decode()


def test_namespace_const_labels_and_status_groups_on_the_page(make: Any) -> None:
    h = make(
        namespace="tickets",
        const_labels={"app_name": "tickets", "region": 'eu "west"'},
        group_status_codes=True,
    )
    for code in (200, 201, 204, 404):
        h.request(f"/status/{code}")
    text = _page(h)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "http_requests" not in families
    requests = {
        s.labels["status_code"]: s.value
        for s in families["tickets_http_requests"].samples
        if s.name == "tickets_http_requests_total"
    }
    assert requests == {"2xx": 3, "4xx": 1}
    for family in families.values():
        for s in family.samples:
            assert s.labels["app_name"] == "tickets", s
            assert s.labels["region"] == 'eu "west"', s
    assert "tickets_http_request_duration_seconds" in families
    assert "process_cpu_seconds" in families  # not a request family: not prefixed
    # The collector itself keeps the exact codes.
    assert counts()[("GET", h.templates["status"], "201")] == 1
    om = {f.name: f for f in openmetrics_families(_page(h, openmetrics=True))}
    assert "tickets_http_requests" in om
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"exclude_patterns": ["(unclosed"]}, r"exclude_patterns entry '\(unclosed' is not"),
        ({"exclude_patterns": "^/health"}, "exclude_patterns must be a list"),
        ({"exclude_methods": ["FETCH"]}, r"exclude_methods has \['FETCH'\]"),
        ({"namespace": "9tickets"}, "namespace must be a Prometheus name prefix"),
        ({"namespace": "tic-kets"}, "namespace must be a Prometheus name prefix"),
        ({"const_labels": {"endpoint": "x"}}, "'endpoint' is a label eventmon's own"),
        ({"const_labels": {"app-name": "x"}}, "'app-name' is not a valid label name"),
        ({"const_labels": {"app_name": 3}}, "the value of 'app_name' must be a string"),
        ({"group_status_codes": "yes"}, "group_status_codes must be True or False"),
    ],
)
def test_bad_options_fail_at_start_up(make: Any, options: dict[str, Any], message: str) -> None:
    # Starlette and Django build their middleware when the first request arrives.
    with pytest.raises(ConfigurationError, match=message):
        make(**options).request("/events/1")


def test_a_series_label_wins_over_a_const_label_of_the_same_name() -> None:
    from eventmon import MetricsCollector

    c = MetricsCollector(slow_hooks=())
    c.increment_counter("tenant_logins", {"app_name": "inner"})
    text = render(c, const_labels=(("app_name", "outer"),)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["tenant_logins"].samples
    assert sample.labels == {"app_name": "inner"}
    c.shutdown()


# ------------------------------------------------------------- issue 13, item 2


def _send_body(h: Any, path: str, body: bytes) -> None:
    """A GET with a body, through the framework's own test client."""
    from adapters.conftest import ASGIHarness, DjangoHarness, WerkzeugHarness

    if isinstance(h, ASGIHarness):
        h.loop.run_until_complete(h.client.request("GET", path, content=body))
    elif isinstance(h, WerkzeugHarness):
        r = h.client.open(path, method="GET", data=body)
        r.get_data()  # read to the end, as a server would, before closing
        r.close()
    else:
        assert isinstance(h, DjangoHarness)
        call = h.client.generic("GET", path, data=body, content_type="application/octet-stream")
        r = h.loop.run_until_complete(call) if h.is_async else call
        if r.streaming:
            b"".join(r.streaming_content)


def _histograms(text: str, name: str) -> dict[tuple[str, str], dict[str, float]]:
    """(endpoint, status_code) -> {"sum", "count", le...} of one histogram family."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for s in family.samples:
            row = out.setdefault((s.labels["endpoint"], s.labels["status_code"]), {})
            if s.name.endswith("_bucket"):
                row[s.labels["le"]] = s.value
            else:
                row[s.name.rsplit("_", 1)[1]] = s.value
    return out


def test_size_metrics_are_off_by_default(make: Any) -> None:
    h = make()
    assert h.request("/events/1").status == 200
    assert "size_bytes" not in _page(h)


def test_size_metrics_count_request_and_response_bodies(make: Any) -> None:
    h = make(size_metrics=True)
    _send_body(h, "/events/1", b"x" * 150)
    assert h.request("/events/2").status == 200  # "event 2": 7 bytes
    assert h.request("/stream").status == 200  # three one-byte chunks
    text = _page(h)
    t = h.templates
    requests = _histograms(text, "http_request_size_bytes")
    responses = _histograms(text, "http_response_size_bytes")
    assert requests[(t["event"], "200")]["sum"] == 150
    assert requests[(t["event"], "200")]["count"] == 2
    assert requests[(t["event"], "200")]["100.0"] == 1  # the bodiless one
    assert requests[(t["event"], "200")]["1000.0"] == 2
    assert responses[(t["event"], "200")]["sum"] == 14
    assert responses[(t["event"], "200")]["100.0"] == 2
    assert responses[(t["stream"], "200")]["sum"] == 3
    assert responses[(t["stream"], "200")]["+Inf"] == 1
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_size_metrics_follow_namespace_and_status_groups(make: Any) -> None:
    h = make(size_metrics=True, namespace="tickets", group_status_codes=True)
    h.request("/status/200")
    h.request("/status/201")
    text = _page(h)
    grouped = _histograms(text, "tickets_http_response_size_bytes")
    assert grouped[(h.templates["status"], "2xx")]["count"] == 2
    assert "\nhttp_response_size_bytes" not in text


def test_size_metrics_must_be_a_bool(make: Any) -> None:
    with pytest.raises(ConfigurationError, match="size_metrics must be True or False"):
        make(size_metrics="yes").request("/events/1")
