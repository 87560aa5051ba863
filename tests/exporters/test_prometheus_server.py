"""A real Prometheus server scrapes a uvicorn-served app instrumented by eventmon."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from eventmon.alerting import default_rules
from eventmon.alerting.expr import MetricRef
from eventmon.alerting.promrules import PromQLTranslator, export_rules
from eventmon.core.process import instance_limits
from servers import PYTHON, free_port, prometheus_server, running

pytestmark = pytest.mark.slow


def test_prometheus_scrapes_and_histogram_quantile_matches(tmp_path: Path) -> None:
    app_port = free_port()
    server = [PYTHON, "-m", "uvicorn", "apps.starlette_sleepy:app", "--host", "127.0.0.1"]
    with running([*server, "--port", str(app_port)], app_port):
        # 60 requests at 20 ms, 40 at 80 ms: p95 is 80 ms, in the (0.05, 0.1] bucket.
        paths = ["/sleep/20"] * 60 + ["/sleep/80"] * 40

        def get(path: str) -> int:
            with urllib.request.urlopen(f"http://127.0.0.1:{app_port}{path}", timeout=10) as r:
                return r.status

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(get, paths)) == {200}

        # The exported rules, evaluated by the real server against the real scrape.
        export_rules(default_rules(capacity=True, scaling=True), tmp_path / "rules.yml")
        config = (
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files: [rules.yml]\n"
            "scrape_configs:\n"
            "  - job_name: app\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{app_port}']}}]\n"
        )
        with prometheus_server(tmp_path, config) as prom:
            prom.poll('up{job="app"}', lambda r: r[0]["value"][1] == "1")
            total = prom.poll(
                'sum(http_requests_total{endpoint="/sleep/{ms}"})',
                lambda r: float(r[0]["value"][1]) >= 100,
            )
            assert float(total[0]["value"][1]) == 100.0
            [q] = prom.query(
                "histogram_quantile(0.95, sum by (le) "
                '(http_request_duration_seconds_bucket{endpoint="/sleep/{ms}"}))',
            )
            p95_buckets = float(q["value"][1])
            assert 0.05 < p95_buckets <= 0.1, p95_buckets
            [hdr] = prom.query(
                'http_request_duration_hdr_seconds{endpoint="/sleep/{ms}",quantile="0.95"}',
            )
            p95_hdr = float(hdr["value"][1])
            # The HDR figure is the real p95 (80 ms plus scheduling), not an interpolation.
            assert 0.080 <= p95_hdr < 0.2, p95_hdr

            # CPU and memory as shares of the target's own exported limits (the app runs
            # here, so its limits are this process's), matched on the real target labels.
            limits = instance_limits()
            [cores] = prom.query('eventmon_cpu_limit_cores{job="app"}')
            assert float(cores["value"][1]) == limits.cpu_cores
            tr = PromQLTranslator()
            [mem] = prom.query(tr.metric(MetricRef("memory_usage", (), 0)))
            [rss] = prom.query('process_resident_memory_bytes{job="app"}')
            share = 100 * float(rss["value"][1]) / limits.memory_bytes
            assert float(mem["value"][1]) == pytest.approx(share, rel=0.05)
            [cpu] = prom.poll(tr.metric(MetricRef("cpu_usage", (), 0)), lambda r: True)
            assert 0.0 <= float(cpu["value"][1]) <= 100.0
            rules = prom.poll_rules()
            assert len(rules) == len(default_rules(capacity=True, scaling=True))
            assert {r["health"] for r in rules} == {"ok"}, rules
        assert "level=ERROR" not in prom.output, prom.output
