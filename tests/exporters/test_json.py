from __future__ import annotations

import json

import pytest

from eventmon import ConfigurationError, MetricsCollector
from eventmon.exporters.base import PeriodicExportLoop, take_snapshot
from eventmon.exporters.json import JsonExporter, snapshot_json


def _fill(c: MetricsCollector) -> None:
    for i in range(1, 201):
        c.observe("GET", "/events/{event_id}", 503 if i % 20 == 0 else 200, i / 1000)
    for _ in range(10):
        c.observe("POST", "/orders", 201, 0.002)
    c.increment_counter("db_connection_errors", {"db": "main"}, 3)


def test_snapshot_json_contents(collector: MetricsCollector) -> None:
    _fill(collector)
    doc = snapshot_json(collector)
    json.dumps(doc)  # plain JSON types only
    assert doc["totalRequests"] == 210
    assert doc["workers"] == 1
    ev = doc["endpoints"]["/events/{event_id}"]
    assert ev["count"] == 200
    assert ev["errorCount"] == 10
    assert ev["errorRate"] == pytest.approx(0.05)
    # 1..200 ms: nearest-rank p50 = 100 ms, p95 = 190 ms, p99 = 198 ms, within HDR's 1/128.
    expected = (("p50ResponseTime", 100), ("p95ResponseTime", 190), ("p99ResponseTime", 198))
    for key, exact in expected:
        assert exact <= ev[key] <= exact * (1 + 1 / 128) + 0.001
    orders = doc["endpoints"]["/orders"]
    assert orders["count"] == 10
    assert orders["errorRate"] == 0.0
    assert doc["realtime"]["totalRequests"] == 210
    assert "requestsPerSecond" in doc["realtime"]
    assert doc["counters"]["db_connection_errors"] == [{"labels": {"db": "main"}, "value": 3}]


def test_json_exporter_writes_file_through_loop(collector: MetricsCollector, tmp_path) -> None:
    _fill(collector)
    target = tmp_path / "metrics.json"
    exporter = JsonExporter(target)
    loop = PeriodicExportLoop(collector, [exporter], interval=60)
    assert loop.export_once() == 0
    assert json.loads(target.read_text())["totalRequests"] == 210
    collector.observe("GET", "/orders", 200, 0.001)
    loop.shutdown()  # runs a last round, then shuts the exporter down
    assert json.loads(target.read_text())["totalRequests"] == 211
    loop.shutdown()  # idempotent
    collector.observe("GET", "/orders", 200, 0.001)
    exporter.export(take_snapshot(collector))  # a shut-down exporter ignores snapshots
    assert json.loads(target.read_text())["totalRequests"] == 211


def test_json_exporter_callable_sink_and_bad_sink(collector: MetricsCollector) -> None:
    got: list[dict] = []
    _fill(collector)
    loop = PeriodicExportLoop(collector, [JsonExporter(got.append)], interval=60)
    loop.export_once()
    assert got[0]["endpoints"]["/orders"]["count"] == 10
    with pytest.raises(ConfigurationError, match="path or a callable"):
        JsonExporter(42)  # type: ignore[arg-type]
