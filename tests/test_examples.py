"""The examples in examples/ run, and what they say is true."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servers import ROOT, free_port, require_binary, running


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:  # loopback only
        return r.status, r.read()


@pytest.mark.slow
def test_starlette_example_under_uvicorn() -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "examples.starlette_app:app", "--port", str(port)]
    with running([*cmd, "--host", "127.0.0.1"], port, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}):
        base = f"http://127.0.0.1:{port}"
        for _ in range(5):
            assert _get(f"{base}/events/42")[0] == 200
        req = urllib.request.Request(f"{base}/events/42/tickets", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 201
        live = json.loads(_get(f"{base}/live")[1])
        assert live["activeConnections"] >= 1  # the /live request itself
        status, snapshot = _get(f"{base}/eventmon/api/snapshot")
        assert status == 200
        assert json.loads(snapshot)
        text = _get(f"{base}/metrics")[1].decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    counts = {
        (s.labels["method"], s.labels["endpoint"]): s.value
        for s in families["http_requests"].samples
    }
    assert counts[("GET", "/events/{event_id:int}")] == 5
    assert counts[("POST", "/events/{event_id:int}/tickets")] == 1


def test_fastapi_example_labels_router_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from examples.fastapi_app import app

    from eventmon import default_collector

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/api/v1/events/42")).status_code == 200
            assert (await client.get("/api/v1/events/7")).status_code == 404

    asyncio.run(run())
    counts = {
        (s.endpoint, s.status_code): s.count
        for s in default_collector().series()
        if s.endpoint.startswith("/api/v1/")
    }
    assert counts[("/api/v1/events/{event_id}", "200")] >= 1
    assert counts[("/api/v1/events/{event_id}", "404")] >= 1


def test_exported_rules_example_is_current_and_promtool_accepts_it(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    example = ROOT / "examples" / "prometheus" / "eventmon-rules.yml"
    fresh = tmp_path / "rules.yml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "eventmon",
            "rules",
            "export",
            "-o",
            str(fresh),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # The example is the command's output plus the "regenerate" comment lines.
    example_rules = [ln for ln in example.read_text().splitlines() if not ln.startswith("# ")]
    fresh_rules = [ln for ln in fresh.read_text().splitlines() if not ln.startswith("# ")]
    assert example_rules == fresh_rules, "regenerate examples/prometheus/eventmon-rules.yml"
    result = subprocess.run(
        [promtool, "check", "rules", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
