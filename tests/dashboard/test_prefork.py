"""The dashboard under worker aggregation shows the whole server, merged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventmon import MetricsCollector
from eventmon.dashboard import Dashboard
from eventmon.exporters.multiprocess import disable, enable


def _feed(c: MetricsCollector, k: int, n: int) -> None:
    for i in range(n):
        ep = ["/orders", "/events/{id}"][(i + k) % 2]
        c.observe("GET", ep, 503 if i % 5 == 0 else 200, (i % 40 + 1) / 1000)


def _get(dash: Dashboard, path: str) -> dict:
    r = dash.handle("GET", path, "", None)
    assert r.status == 200, r.body
    doc: dict = json.loads(r.body)
    return doc


def test_dashboard_shows_every_worker_merged(tmp_path: Path, clock) -> None:
    alive = {501, 502, 503}
    parts = []
    for pid in sorted(alive):
        c = MetricsCollector(slow_hooks=(), clock=clock)
        enable(c, tmp_path / "mp", identity=(pid, "s"), is_alive=lambda p, _s: p in alive)
        c.multiprocess.write()
        parts.append(c)
    single = MetricsCollector(slow_hooks=(), clock=clock)
    try:
        dash = Dashboard(parts[0], clock=clock)
        alone = Dashboard(single, clock=clock)
        first = _get(dash, "api/snapshot")
        assert (first["aggregated"], first["workers"]) == (True, 3)
        _get(alone, "api/snapshot")
        for k, c in enumerate(parts):
            _feed(c, k, 40 + 10 * k)
            _feed(single, k, 40 + 10 * k)
            c.multiprocess.write()
        clock.advance(30)
        snap = _get(dash, "api/snapshot")
        want = _get(alone, "api/snapshot")
        assert (want["aggregated"], want["workers"]) == (False, 1)
        assert snap["totalRequests"] == want["totalRequests"] == 150
        for key in ("requestsPerSecond", "errorRate", "averageResponseTime", "p95ResponseTime"):
            assert snap[key] == pytest.approx(want[key], abs=1e-3), key
        assert snap["requestsPerSecond"] == pytest.approx(150 / 30, abs=1e-3)
        assert snap["endpointCount"] == 2
        rows = {r["endpoint"]: r for r in _get(dash, "api/endpoints")["endpoints"]}
        want_rows = {r["endpoint"]: r for r in _get(alone, "api/endpoints")["endpoints"]}
        assert rows == want_rows
        assert sum(r["count"] for r in rows.values()) == 150
    finally:
        for c in parts:
            disable(c)
            c.shutdown()
        single.shutdown()
