"""A real Starlette app under uvicorn starts erroring: one email fires, one resolves it."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from eventmon import MetricsCollector
from eventmon.alerting import AlertEngine, AlertRule
from eventmon.alerting.notifiers import EmailNotifier
from servers import free_port, wait_for_port

pytestmark = pytest.mark.slow


def test_error_burst_fires_high_error_rate_by_email_then_resolves(smtp_server) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from eventmon.asgi import EventmonMiddleware

    collector = MetricsCollector(window=2, slow_hooks=())
    broken = threading.Event()

    async def pay(request: Request) -> PlainTextResponse:
        if broken.is_set():
            return PlainTextResponse("payment backend down", status_code=503)
        return PlainTextResponse("paid")

    # The default rule's condition, with a 1 s `for` (and a 2 s window) to run fast.
    rule = AlertRule("high_error_rate", "error_rate > 0.05", for_="1s", severity="critical")
    engine = AlertEngine(
        collector,
        [rule],
        notifiers=[
            EmailNotifier(
                smtp_server.host, smtp_server.port, sender="eventmon@app", recipients=["ops@app"]
            )
        ],
        interval=0.1,
    )
    app = Starlette(routes=[Route("/pay", pay)], lifespan=engine.lifespan)
    app.add_middleware(EventmonMiddleware, collector=collector)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    )
    before = set(threading.enumerate())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            assert client.get("/pay").status_code == 200
            broken.set()
            started = time.monotonic()
            fired = None
            while time.monotonic() - started < 10:
                assert client.get("/pay").status_code == 503
                if smtp_server.messages:
                    fired = time.monotonic() - started
                    break
                time.sleep(0.05)
            assert fired is not None, engine.alerts()
            assert 1.0 <= fired < 4.0  # held for `for` (1 s), then sent at once
            assert engine.firing() == ["high_error_rate"]
            # Still failing for another second: no second email.
            for _ in range(10):
                client.get("/pay")
                time.sleep(0.1)
            assert len(smtp_server.messages) == 1
            broken.clear()
            started = time.monotonic()
            while time.monotonic() - started < 10 and len(smtp_server.messages) < 2:
                assert client.get("/pay").status_code == 200
                time.sleep(0.05)
            recovered = time.monotonic() - started
        messages = smtp_server.wait_for(2, timeout=1)
        assert len(messages) == 2
        (rcpt, first), (_, second) = messages
        assert rcpt == ["ops@app"]
        assert first["Subject"] == "[FIRING] high_error_rate (critical)"
        assert "condition: error_rate > 0.05" in first.get_content()
        assert second["Subject"] == "[RESOLVED] high_error_rate (critical)"
        assert recovered < 5.0  # errors leave the 2 s window, then one evaluation
        assert [s.state for s in engine.alerts()] == ["resolved"]
        time.sleep(0.3)
        assert len(smtp_server.messages) == 2
    finally:
        server.should_exit = True
        thread.join(10)
    # The lifespan stopped the engine with the app: the server's loop and every
    # thread it started (evaluations run in its executor) have ended.
    n = engine.evaluations
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert engine.evaluations == n
    assert collector.internal_errors() == {}
