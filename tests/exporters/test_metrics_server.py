"""start_metrics_server: the metrics page on a port of its own, scraped by a real Prometheus."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventmon import ConfigurationError, MetricsCollector
from eventmon.exporters.prometheus import start_metrics_server
from servers import prometheus_server

TOKEN = "scrape-Token_7"


def fetch(
    url: str, authorization: str | None = None, method: str = "GET"
) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, method=method)
    if authorization is not None:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def test_serves_the_page_with_a_token_and_stops_idempotently() -> None:
    col = MetricsCollector(slow_hooks=())
    col.observe("GET", "/events/{id}", 200, 0.012)
    server = start_metrics_server(0, collector=col, token=TOKEN)
    assert server.host == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/metrics"
    status, headers, _ = fetch(server.url)
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="eventmon metrics"')
    assert fetch(server.url, "Bearer nope")[0] == 401
    status, headers, body = fetch(server.url, f"Bearer {TOKEN}")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    [sample] = [s for s in families["http_requests"].samples if s.name == "http_requests_total"]
    assert sample.labels["endpoint"] == "/events/{id}"
    status, headers, body = fetch(server.url, f"Bearer {TOKEN}", method="HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0
    assert fetch(server.url.replace("/metrics", "/other"), f"Bearer {TOKEN}")[0] == 404
    port = server.port
    server.shutdown()
    server.shutdown()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    col.shutdown()


def test_shutdown_in_a_forked_child_neither_hangs_nor_stops_the_parent() -> None:
    import os

    from servers import wait_child

    with start_metrics_server(0) as server:
        pid = os.fork()
        if pid == 0:  # the child has the socket but not the serving thread
            try:
                server.shutdown()
            finally:
                os._exit(0)
        assert wait_child(pid) == 0
        assert fetch(server.url)[0] == 200


def test_without_a_token_anyone_who_reaches_the_port_may_scrape() -> None:
    col = MetricsCollector(slow_hooks=())
    with start_metrics_server(0, collector=col, path="/internal/metrics", unit="ms") as server:
        status, _, body = fetch(server.url)
        assert status == 200
        assert b"http_request_duration_ms" in body
    col.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": -1}, "port must be a whole number from 0 to 65535"),
        ({"port": "9464"}, "port must be a whole number"),
        ({"port": True}, "port must be a whole number"),
        ({"port": 0, "token": ""}, "token must be a non-empty string"),
        ({"port": 0, "token": 123}, "token must be a non-empty string"),
        ({"port": 0, "token": "has space"}, "printable ASCII without spaces"),
        ({"port": 0, "path": "metrics"}, "must start with '/'"),
        ({"port": 0, "unit": "min"}, "unit must be 's' or 'ms'"),
        ({"port": 0, "collector": "oops"}, "must be an eventmon.MetricsCollector"),
        ({"port": 0, "host": ""}, "host must be an address"),
    ],
)
def test_mistakes_fail_at_start_up(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        start_metrics_server(**kwargs)


def test_a_port_in_use_is_a_configuration_error() -> None:
    with start_metrics_server(0) as first, pytest.raises(ConfigurationError, match="cannot listen"):
        start_metrics_server(first.port)


@pytest.mark.slow
def test_prometheus_scrapes_it_with_and_without_the_token(tmp_path: Path) -> None:
    col = MetricsCollector(slow_hooks=())
    for _ in range(7):
        col.observe("GET", "/tickets/{id}", 200, 0.02)
    with (
        start_metrics_server(0, collector=col, token=TOKEN) as guarded,
        start_metrics_server(0, collector=col) as open_,
    ):
        config = (
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: guarded\n"
            f"    authorization: {{credentials: {TOKEN}}}\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{guarded.port}']}}]\n"
            "  - job_name: wrong_token\n"
            "    authorization: {credentials: not-the-token}\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{guarded.port}']}}]\n"
            "  - job_name: no_token\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{guarded.port}']}}]\n"
            "  - job_name: open\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{open_.port}']}}]\n"
        )
        with prometheus_server(tmp_path, config) as prom:
            for job in ("guarded", "open"):
                total = prom.poll(
                    f'sum(http_requests_total{{job="{job}",endpoint="/tickets/{{id}}"}})',
                    lambda r: float(r[0]["value"][1]) >= 7,
                )
                assert float(total[0]["value"][1]) == 7.0
            # Each job has scraped by now; the refused ones are down, with no samples.
            ups = {
                r["metric"]["job"]: r["value"][1] for r in prom.poll("up", lambda r: len(r) == 4)
            }
            assert ups == {"guarded": "1", "open": "1", "wrong_token": "0", "no_token": "0"}
            assert prom.query('http_requests_total{job=~"wrong_token|no_token"}') == []
            [target] = [
                t for t in prom.targets() if t["labels"]["job"] == "wrong_token" and t["lastError"]
            ]
            assert "401" in target["lastError"]
    assert "level=ERROR" not in prom.output, prom.output
    col.shutdown()
