"""Real servers on 127.0.0.1: Flask and Django under gunicorn, Django under uvicorn.

After N requests of mixed routes and statuses (one of them a streaming route
that sleeps between chunks), /metrics shows exactly N, labelled with route
templates, and the streaming route's duration covers its whole body.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventmon.core.registry import UNMATCHED
from servers import PYTHON, free_port, running, wait_http

pytestmark = pytest.mark.slow

STREAM_SECONDS = 4 * 0.05


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def exercise(base: str, event_template: str) -> None:
    plan = (
        [(f"/events/{i}", 200) for i in range(6)]
        + [(f"/missing/{i}", 404) for i in range(3)]
        + [("/boom", 500)] * 2
        + [("/stream", 200)]
    )
    for path, expected in plan:
        status, body = fetch(base + path)
        assert status == expected, (path, status, body[:200])
        if path == "/stream":
            assert body == b"".join(b"chunk %d\n" % i for i in range(4))
    status, body = fetch(base + "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    counts = {
        (s.labels["method"], s.labels["endpoint"], s.labels["status_code"]): s.value
        for s in families["http_requests"].samples
        if s.name == "http_requests_total"
    }
    assert counts == {
        ("GET", event_template, "200"): 6,
        ("GET", UNMATCHED, "404"): 3,
        ("GET", "/boom", "500"): 2,
        ("GET", "/stream", "200"): 1,
    }
    assert sum(counts.values()) == len(plan)
    hist = families["http_request_duration_seconds"]
    stream_sum = next(
        s.value
        for s in hist.samples
        if s.name == "http_request_duration_seconds_sum" and s.labels["endpoint"] == "/stream"
    )
    assert stream_sum >= STREAM_SECONDS
    in_progress = families["http_requests_in_progress"].samples[0].value
    assert in_progress == 0


def gunicorn(app: str, port: int) -> list[str]:
    return [
        PYTHON, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning", app,
    ]  # fmt: skip


def test_flask_under_gunicorn() -> None:
    port = free_port()
    with running(gunicorn("adapters.server_flask:app", port), port):
        wait_http(f"http://127.0.0.1:{port}/metrics")
        exercise(f"http://127.0.0.1:{port}", "/events/<int:event_id>")


def test_django_under_gunicorn() -> None:
    port = free_port()
    with running(gunicorn("adapters.djapp.wsgi_server:application", port), port):
        wait_http(f"http://127.0.0.1:{port}/metrics")
        exercise(f"http://127.0.0.1:{port}", "/events/<int:event_id>")


def test_django_under_uvicorn() -> None:
    port = free_port()
    cmd = [
        PYTHON, "-m", "uvicorn", "adapters.djapp.asgi_server:application",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with running(cmd, port, env={"EVENTMON_TEST_ASGI": "1"}):
        wait_http(f"http://127.0.0.1:{port}/metrics")
        exercise(f"http://127.0.0.1:{port}", "/events/<int:event_id>")
