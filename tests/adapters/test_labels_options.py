"""Issue 13, item 1: labels, names and exclusions, the same in every framework.

``exclude_patterns`` and ``exclude_methods`` skip requests; ``namespace``,
``const_labels`` and ``group_status_codes`` shape the metrics page only (the
collector keeps method, route and exact status). Each runs through Starlette,
FastAPI, Flask, plain WSGI and Django (sync and async) via the shared harness.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from adapters.apps import ctx
from eventmon import ConfigurationError
from eventmon.exporters.prometheus import render
from servers import promtool_check


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
    promtool_check(text)


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
    promtool_check(text)


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


# ------------------------------------------- issue 13, item 1: per-request labels


def _path_of(request: Any) -> str:
    """The request path from what a label callback gets in each framework."""
    if isinstance(request, dict):
        if "wsgi.version" in request:  # a WSGI environ (Flask, plain WSGI)
            return str(request["PATH_INFO"])
        assert request["type"] == "http"  # an ASGI scope (Starlette, FastAPI)
        return str(request["path"])
    from django.http import HttpRequest

    assert isinstance(request, HttpRequest)
    return str(request.path)


def _plan(request: Any) -> object:
    # Not a string on purpose: the value is str()-ed.
    return 1 if _path_of(request).endswith("/1") else "free"


def _request_samples(text: str, family: str = "http_requests") -> dict[tuple[Any, ...], float]:
    """(endpoint, status_code, tenant, plan) -> value of each ``<family>_total`` sample."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return {
        (s.labels["endpoint"], s.labels["status_code"], s.labels["tenant"], s.labels["plan"]): (
            s.value
        )
        for s in families[family].samples
        if s.name.endswith("_total")
    }


def test_header_and_callback_labels_on_the_page(make: Any) -> None:
    h = make(header_labels={"tenant": "X-Tenant-ID"}, label_callbacks={"plan": _plan})
    assert h.request("/events/1", headers={"X-Tenant-ID": "acme"}).status == 200
    assert h.request("/events/2", headers={"x-tenant-id": "globex"}).status == 200
    assert h.request("/events/2", headers={"X-TENANT-ID": "globex"}).status == 200
    assert h.request("/events/3").status == 200  # no header: ""
    event = h.templates["event"]
    text = _page(h)
    assert _request_samples(text) == {
        (event, "200", "acme", "1"): 1,
        (event, "200", "globex", "free"): 2,
        (event, "200", "", "free"): 1,
    }
    families = {f.name: f for f in text_string_to_metric_families(text)}
    buckets = [
        s for s in families["http_request_duration_seconds"].samples if s.name.endswith("_count")
    ]
    assert {(s.labels["tenant"], s.value) for s in buckets} == {
        ("acme", 1),
        ("globex", 2),
        ("", 1),
    }
    # Percentiles, endpoints() and the dashboard stay per route template.
    hdr = families["http_request_duration_hdr_seconds"].samples
    assert {s.labels.get("tenant") for s in hdr} == {None}
    assert [s.value for s in hdr if s.name.endswith("_count")] == [4]
    assert ctx.collector.endpoints() == [event]
    promtool_check(text)
    om = {f.name: f for f in openmetrics_families(_page(h, openmetrics=True))}
    om_tenants = {
        s.labels["tenant"]: s.value
        for s in om["http_requests"].samples
        if s.name == "http_requests_total"
    }
    assert om_tenants == {"acme": 1, "globex": 2, "": 1}


def test_extra_label_values_past_the_cap_go_to_the_overflow_series(make: Any, clock: Any) -> None:
    from eventmon import MetricsCollector

    c = MetricsCollector(slow_hooks=(), clock=clock, max_label_sets=3)
    h = make(collector=c, header_labels={"tenant": "X-Tenant-ID"})
    for i in range(12):
        assert h.request("/events/1", headers={"X-Tenant-ID": f"random-{i}"}).status == 200
    h.request("/events/1", headers={"X-Tenant-ID": "y" * 300})
    series = c.series()
    assert len(series) == 4  # three admitted label sets and the overflow series
    assert sum(s.count for s in series) == 13
    assert {s.extra for s in series if s.endpoint == "__overflow__"} == {("__overflow__",)}
    text = _page(h)
    promtool_check(text)
    c2 = MetricsCollector(slow_hooks=(), clock=clock)
    h2 = make(collector=c2, header_labels={"tenant": "X-Tenant-ID"})
    h2.request("/events/1", headers={"X-Tenant-ID": "y" * 300})
    (s,) = c2.series()
    assert s.extra == ("y" * 100,)  # cut to MAX_LABEL_VALUE characters
    c.shutdown()
    c2.shutdown()


def test_a_raising_label_callback_is_counted_and_the_request_answers(make: Any) -> None:
    def broken(request: Any) -> str:
        raise RuntimeError("tenant service down")

    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no")

    h = make(label_callbacks={"tenant": broken, "plan": lambda request: Unprintable()})
    assert h.request("/events/1").status == 200
    assert h.request("/events/2").status == 200
    assert ctx.collector.internal_errors() == {"label_callback": 4}
    (s,) = ctx.collector.series()
    assert (s.count, s.extra) == (2, ("", ""))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"header_labels": {"ten-ant": "X-Tenant"}}, "header_labels: 'ten-ant' is not a valid"),
        ({"header_labels": {"__tenant": "X-Tenant"}}, "'__tenant' is not a valid label name"),
        ({"header_labels": {"endpoint": "X-Route"}}, "'endpoint' is a label eventmon's own"),
        ({"label_callbacks": {"le": _plan}}, "label_callbacks: 'le' is a label eventmon's own"),
        ({"header_labels": {"tenant": "X Tenant"}}, "the header of 'tenant' must be a header"),
        ({"header_labels": ["X-Tenant"]}, "header_labels must be a dict of label name"),
        ({"label_callbacks": {"tenant": "myapp.tenant_of"}}, "'tenant' must map to a callable"),
        (
            {"header_labels": {"tenant": "X-Tenant"}, "label_callbacks": {"tenant": _plan}},
            "'tenant' is in both header_labels and label_callbacks",
        ),
        (
            {"header_labels": {"app_name": "X-App"}, "const_labels": {"app_name": "tickets"}},
            "header_labels: 'app_name' is also in const_labels",
        ),
    ],
)
def test_bad_extra_label_options_fail_at_start_up(
    make: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make(**options).request("/events/1")


def test_a_collector_shared_by_adapters_with_other_extra_labels_is_refused(
    make: Any, clock: Any
) -> None:
    from eventmon import MetricsCollector

    c = MetricsCollector(slow_hooks=(), clock=clock)
    first = make(collector=c, header_labels={"tenant": "X-Tenant-ID"})
    assert first.request("/events/1").status == 200
    # The same names, another order of options: fine.
    same = make(collector=c, label_callbacks={"tenant": _plan})
    assert same.request("/events/1").status == 200
    with pytest.raises(ConfigurationError, match=r"already records the extra labels \['tenant'\]"):
        make(collector=c, header_labels={"region": "X-Region"}).request("/events/1")
    c.shutdown()


def test_status_groups_with_extra_labels(make: Any) -> None:
    h = make(header_labels={"tenant": "X-Tenant-ID"}, group_status_codes=True, namespace="t")
    for code, tenant in ((200, "a"), (201, "a"), (204, "b"), (404, "a")):
        h.request(f"/status/{code}", headers={"X-Tenant-ID": tenant})
    text = _page(h)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    grouped = {
        (s.labels["status_code"], s.labels["tenant"]): s.value
        for s in families["t_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert grouped == {("2xx", "a"): 2, ("2xx", "b"): 1, ("4xx", "a"): 1}
    promtool_check(text)


def test_slow_counter_and_hooks_with_extra_labels(make: Any, clock: Any) -> None:
    from eventmon import MetricsCollector

    seen: list[tuple[str, str, int, float]] = []
    c = MetricsCollector(slow_hooks=[lambda *a: seen.append(a)], clock=clock, slow_threshold=1.0)
    h = make(collector=c, header_labels={"tenant": "X-Tenant-ID"})
    h.request("/slow", headers={"X-Tenant-ID": "acme"})
    h.request("/slow", headers={"X-Tenant-ID": "acme"})
    h.request("/slow")
    assert c.flush_hooks()
    slow = h.templates["slow"]
    # The hooks keep their signature: the route template, not the extra values.
    assert [(m, e, s) for m, e, s, _ in seen] == [("GET", slow, 200)] * 3
    assert c.slow_requests() == {("GET", slow, "acme"): 2, ("GET", slow, ""): 1}
    text = _page(h)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        s.labels["tenant"]: s.value
        for s in families["http_slow_requests"].samples
        if s.name.endswith("_total")
    } == {"acme": 2, "": 1}
    promtool_check(text)
    c.shutdown()


def test_size_metrics_with_extra_labels(make: Any) -> None:
    h = make(size_metrics=True, header_labels={"tenant": "X-Tenant-ID"})
    h.request("/events/2", headers={"X-Tenant-ID": "acme"})  # "event 2": 7 bytes
    h.request("/events/2", headers={"X-Tenant-ID": "globex"})
    h.request("/events/2", headers={"X-Tenant-ID": "globex"})
    text = _page(h)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sums = {
        s.labels["tenant"]: s.value
        for s in families["http_response_size_bytes"].samples
        if s.name.endswith("_sum")
    }
    assert sums == {"acme": 7, "globex": 14}
    counts = {
        s.labels["tenant"]: s.value
        for s in families["http_requests"].samples
        if s.name.endswith("_total")
    }
    assert counts == {"acme": 1, "globex": 2}
    promtool_check(text)


def test_flask_config_keys_give_extra_labels_from_what_the_view_left_in_the_environ() -> None:
    from flask import Flask, request

    from eventmon import MetricsCollector
    from eventmon.flask import Eventmon

    app = Flask("extra_labels")

    @app.get("/events/<int:event_id>")
    def event(event_id: int) -> str:
        # The callback runs once the response is out, after Flask's request context
        # is gone: the view leaves what it needs in the environ (docs/frameworks.md).
        request.environ["myapp.plan"] = "gold" if event_id == 1 else "free"
        return "ok"

    def plan_of(environ: dict[str, Any]) -> str:
        return str(environ.get("myapp.plan", ""))

    c = MetricsCollector(slow_hooks=())
    app.config["EVENTMON_HEADER_LABELS"] = {"tenant": "X-Tenant-ID"}
    app.config["EVENTMON_LABEL_CALLBACKS"] = {"plan": plan_of}
    Eventmon(app, collector=c)
    client = app.test_client()
    client.get("/events/1", headers={"X-Tenant-ID": "acme"}).close()
    client.get("/events/2", headers={"X-Tenant-ID": "acme"}).close()
    client.get("/events/2").close()
    assert c.internal_errors() == {}
    assert c.extra_label_names == ("plan", "tenant")  # sorted
    assert sorted((s.extra, s.count) for s in c.series()) == [
        (("free", ""), 1),
        (("free", "acme"), 1),
        (("gold", "acme"), 1),
    ]
    c.shutdown()
