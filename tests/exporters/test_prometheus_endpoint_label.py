"""The troubleshooting page's fixes for the Prometheus operator's own ``endpoint`` label,
checked with a real Prometheus.

The operator gives every scraped series an ``endpoint`` target label (the port name). Here
a static target carries ``endpoint: http`` the same way; three jobs scrape one eventmon app:
as the operator does by default, with ``honor_labels`` and with the page's
``metricRelabelings`` (the YAML from docs/troubleshooting.md, keys turned to Prometheus's).
"""

from __future__ import annotations

import re
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import yaml

from eventmon import MetricsCollector
from eventmon.wsgi import ENDPOINT_KEY, EventmonMiddleware
from servers import ROOT, free_port, prometheus_server

pytestmark = pytest.mark.slow


def documented_metric_relabelings() -> list[dict[str, Any]]:
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", page, re.S):
        doc = yaml.safe_load(block)
        for endpoint in doc.get("spec", {}).get("endpoints", []):
            if "metricRelabelings" in endpoint:
                return endpoint["metricRelabelings"]  # type: ignore[no-any-return]
    raise AssertionError("docs/troubleshooting.md shows no metricRelabelings")


def to_prometheus(rule: dict[str, Any]) -> dict[str, Any]:
    """The operator's RelabelConfig (camelCase) as Prometheus's relabel_config."""
    return {re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), k): v for k, v in rule.items()}


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def app_port() -> Iterator[int]:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ[ENDPOINT_KEY] = "/events/{event_id}"  # what a router adapter notes
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    collector = MetricsCollector()
    wrapped = EventmonMiddleware(app, collector=collector)
    port = free_port()
    server = make_server("127.0.0.1", port, wrapped, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/events/7", timeout=5) as r:
                assert r.status == 200
        yield port
    finally:
        server.shutdown()
        server.server_close()
        collector.shutdown()


def test_honor_labels_and_metric_relabelings_restore_the_endpoint_label(
    tmp_path: Path, app_port: int
) -> None:
    target = {"targets": [f"127.0.0.1:{app_port}"], "labels": {"endpoint": "http"}}
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "operator_default", "static_configs": [target]},
            {"job_name": "honor", "honor_labels": True, "static_configs": [target]},
            {
                "job_name": "relabel",
                "static_configs": [target],
                "metric_relabel_configs": [
                    to_prometheus(r) for r in documented_metric_relabelings()
                ],
            },
        ],
    }
    with prometheus_server(tmp_path, yaml.safe_dump(config)) as prom:
        series = 'http_requests_total{job="%s"}'
        for job in ("operator_default", "honor", "relabel"):
            prom.poll(series % job, lambda r: len(r) > 0)

        # the problem: the route template is pushed aside into exported_endpoint
        [plain] = prom.query(series % "operator_default")
        assert plain["metric"]["endpoint"] == "http"
        assert plain["metric"]["exported_endpoint"] == "/events/{event_id}"

        for job in ("honor", "relabel"):
            [fixed] = prom.query(series % job)
            assert fixed["metric"]["endpoint"] == "/events/{event_id}", job
            assert "exported_endpoint" not in fixed["metric"], job
            assert float(fixed["value"][1]) == 3.0

        # relabeling touches only the series that had eventmon's label
        [cpu] = prom.query('process_cpu_seconds_total{job="relabel"}')
        assert cpu["metric"]["endpoint"] == "http"
    assert "level=ERROR" not in prom.output, prom.output
