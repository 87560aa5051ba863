"""`eventmon demo` in a subprocess: dashboard, /metrics, alerts, scaling, SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from servers import PYTHON, ROOT

from ._demo import TOKEN, demo, get_json, wait_for

pytestmark = pytest.mark.slow


def _alerts_firing(base: str) -> list[str]:
    data = get_json(f"{base}/eventmon/api/alerts")["data"] or []
    return [a["name"] for a in data if a["state"] == "firing"]


# The ticket purchase route as each framework labels it.
TICKETS = {
    "starlette": "/events/{event_id}/tickets",
    "flask": "/events/<event_id>/tickets",
    "django": "/events/<event_id>/tickets",
}


def _requests(metrics: str) -> dict[str, float]:
    out = {}
    for line in metrics.splitlines():
        if line.startswith("http_requests_total{"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@pytest.mark.parametrize("framework", ["starlette", "flask", "django"])
def test_demo_serves_dashboard_metrics_alerts_scaling_and_stops_on_sigint(framework: str) -> None:
    started = time.monotonic()
    with demo("--framework", framework) as (proc, base):
        assert proc.startup_seconds < 10  # type: ignore[attr-defined]
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert "# TYPE http_requests_total counter" in metrics
        # Token enforced on the demo's dashboard too.
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/eventmon/api/snapshot", timeout=5)
        assert err.value.code == 401

        first = get_json(f"{base}/eventmon/api/snapshot")["totalRequests"]
        second = wait_for(
            lambda: get_json(f"{base}/eventmon/api/snapshot")["totalRequests"] > first + 20,
            15,
            "load reaching the app",
        )
        assert second

        # The stream: updates a second apart, counting up.
        req = urllib.request.Request(f"{base}/eventmon/api/stream?token={TOKEN}")
        events = []
        with urllib.request.urlopen(req, timeout=10) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for raw in stream:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 3:
                        break
        assert events[2]["snapshot"]["totalRequests"] > events[0]["snapshot"]["totalRequests"]
        assert events[2]["snapshot"]["timestamp"] - events[0]["snapshot"]["timestamp"] >= 1.5
        assert 0 < len(events[2]["endpoints"]) <= 25

        # The ticket sale opened at 2 s: checkout turns slow and failing -> alerts fire.
        firing = wait_for(lambda: _alerts_firing(base), 20, "an alert firing")
        assert {"high_error_rate", "slow_checkout", "high_p95_response_time"} & set(firing)
        # ... and the simulated fleet scales out through the real autoscaler.
        scaled = wait_for(
            lambda: get_json(f"{base}/eventmon/api/scaling")["data"]["events"], 20, "a scale-out"
        )
        assert scaled[0]["direction"] in ("out", "up")
        assert scaled[0]["to"] > scaled[0]["from"]

        # The same app whatever the framework: route templates, redirects, 304s, 404s,
        # purchases (201) and the payment backend refusing (503) at doors-open.
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
            counted = _requests(r.read().decode())
        statuses = {k.split('status_code="')[1].split('"')[0] for k in counted}
        assert {"200", "201", "404", "503"} <= statuses, statuses
        tickets = TICKETS[framework]
        assert any(f'endpoint="{tickets}"' in k for k in counted), sorted(counted)
        # The dashboard's own requests are not counted as the app's.
        assert not any('endpoint="/eventmon' in k for k in counted)

        # `eventmon top` reads the same API from a terminal.
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        top = subprocess.run(
            [PYTHON, "-m", "eventmon", "top", base, "--token", TOKEN, "--once"],
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )  # fmt: skip
        assert top.returncode == 0, top.stderr
        assert "requests/s" in top.stdout
        assert tickets in top.stdout
        assert "ALERT FIRING" in top.stdout
        denied = subprocess.run(
            [PYTHON, "-m", "eventmon", "top", base, "--once"],
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )  # fmt: skip
        assert denied.returncode == 2
        assert "needs a token" in denied.stderr

        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(15)
        took = time.monotonic() - t0
        out = proc.stdout.read().decode() if proc.stdout else ""
    assert rc == 0, out
    assert took < 10, took
    assert f"({framework}) on http://127.0.0.1:" in out
    assert "/eventmon/?token=demo-token" in out
    assert "/metrics" in out
    assert "eventmon demo: stopped" in out
    assert "Traceback" not in out, out
    # "(Ctrl-C)": the demo saw the SIGINT itself and shut down in order.
    assert "stopped (Ctrl-C)" in out, out
    assert time.monotonic() - started < 40


@pytest.mark.parametrize("framework", ["starlette", "django"])
def test_demo_duration_and_no_load(framework: str) -> None:
    with demo("--framework", framework, "--no-load", "--duration", "3") as (proc, base):
        snap = get_json(f"{base}/eventmon/api/snapshot")
        assert snap["totalRequests"] == 0
        rc = proc.wait(15)
        out = proc.stdout.read().decode() if proc.stdout else ""
    assert rc == 0, out
    assert "0 requests served" in out
