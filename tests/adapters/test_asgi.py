"""The ASGI middleware inside real Starlette and FastAPI apps."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventmon import ConfigurationError, MetricsCollector
from eventmon.asgi import EventmonMiddleware
from eventmon.core.registry import UNMATCHED

NOT_A_COLLECTOR = r"^collector must be an eventmon\.MetricsCollector"


def starlette_app(collector: MetricsCollector, **options: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, StreamingResponse
    from starlette.routing import Mount, Route, Router, WebSocketRoute

    async def event(request: Any) -> PlainTextResponse:
        return PlainTextResponse(f"event {request.path_params['event_id']}")

    async def boom(request: Any) -> PlainTextResponse:
        raise ValueError("app bug")

    async def stream(request: Any) -> StreamingResponse:
        async def body() -> Any:
            for _ in range(3):
                await asyncio.sleep(0.05)
                yield b"chunk\n"

        return StreamingResponse(body())

    async def ws(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    async def tenant_user(request: Any) -> PlainTextResponse:
        return PlainTextResponse("user")

    api = Router(routes=[Route("/users/{user_id}", tenant_user)])
    app = Starlette(
        routes=[
            Route("/events/{event_id}", event),
            Route("/boom", boom),
            Route("/stream", stream),
            WebSocketRoute("/ws", ws),
            Mount("/tenants/{tenant}", app=api),
        ]
    )
    app.add_middleware(EventmonMiddleware, collector=collector, **options)
    return app


def counts(collector: MetricsCollector) -> dict[tuple[str, str, str], int]:
    return {(s.method, s.endpoint, s.status_code): s.count for s in collector.series()}


async def call(app: Any, method: str, path: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, path, **kw)


def test_route_templates_mounts_and_unmatched(collector: MetricsCollector) -> None:
    app = starlette_app(collector)

    async def run() -> None:
        for i in range(3):
            assert (await call(app, "GET", f"/events/{i}")).status_code == 200
        assert (await call(app, "GET", "/tenants/acme/users/7")).status_code == 200
        assert (await call(app, "GET", "/tenants/globex/users/8")).status_code == 200
        for path in ("/nope", "/nope/2", "/events"):
            assert (await call(app, "GET", path)).status_code == 404
        assert (await call(app, "POST", "/events/1")).status_code == 405

    asyncio.run(run())
    assert counts(collector) == {
        ("GET", "/events/{event_id}", "200"): 3,
        ("GET", "/tenants/{tenant}/users/{user_id}", "200"): 2,
        ("GET", UNMATCHED, "404"): 3,
        ("POST", "/events/{event_id}", "405"): 1,
    }


def test_fastapi_routers_and_path_templates(collector: MetricsCollector) -> None:
    from fastapi import APIRouter, FastAPI

    app = FastAPI()
    router = APIRouter(prefix="/api/v1")

    @router.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.include_router(router)
    app.add_middleware(EventmonMiddleware, collector=collector)

    async def run() -> None:
        assert (await call(app, "GET", "/api/v1/items/5")).json() == {"id": 5}
        assert (await call(app, "GET", "/api/v1/items/x")).status_code == 422

    asyncio.run(run())
    assert counts(collector) == {
        ("GET", "/api/v1/items/{item_id}", "200"): 1,
        ("GET", "/api/v1/items/{item_id}", "422"): 1,
    }


def test_app_exception_is_recorded_once_as_500_and_reraised(collector: MetricsCollector) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def boom(request: Any) -> Any:
        raise ValueError("app bug")

    inner = Starlette(routes=[Route("/boom", boom)])
    # Outside Starlette's error middleware, the exception reaches eventmon unchanged.
    app = EventmonMiddleware(inner, collector=collector)
    transport = httpx.ASGITransport(app=app)

    async def run() -> None:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with pytest.raises(ValueError, match="app bug"):
                await client.get("/boom")

    asyncio.run(run())
    assert counts(collector) == {("GET", "/boom", "500"): 1}

    # Inside a Starlette app the server-error middleware answers 500: still one record.
    collector2 = MetricsCollector(slow_hooks=())
    app2 = starlette_app(collector2)
    assert asyncio.run(call(app2, "GET", "/boom")).status_code == 500
    assert counts(collector2) == {("GET", "/boom", "500"): 1}


def test_streaming_response_is_timed_to_the_last_chunk(collector: MetricsCollector) -> None:
    app = starlette_app(collector)
    r = asyncio.run(call(app, "GET", "/stream"))
    assert r.text == "chunk\n" * 3
    [s] = [s for s in collector.series() if s.endpoint == "/stream"]
    assert s.count == 1
    assert s.sum >= 0.15  # three 50 ms pauses between chunks


def test_client_disconnect_is_recorded_as_499(collector: MetricsCollector) -> None:
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def forever(request: Any) -> StreamingResponse:
        async def body() -> Any:
            while True:
                yield b"x"
                await asyncio.sleep(0.01)

        return StreamingResponse(body())

    app = Starlette(routes=[Route("/forever", forever)])
    app.add_middleware(EventmonMiddleware, collector=collector)
    received = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not received.is_set():
            received.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        return None

    scope = {"type": "http", "method": "GET", "path": "/forever", "headers": [], "app": None}
    scope.pop("app")
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 5))
    assert counts(collector) == {("GET", "/forever", "499"): 1}


def test_websocket_and_lifespan_pass_through(collector: MetricsCollector) -> None:
    app = starlette_app(collector)

    async def lifespan() -> list[str]:
        inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        return sent

    async def websocket() -> list[dict[str, Any]]:
        inbox = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
        await app(scope, receive, send)
        return sent

    assert asyncio.run(lifespan()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    messages = asyncio.run(websocket())
    assert [m["type"] for m in messages] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    assert messages[1]["text"] == "hi"
    assert counts(collector) == {}
    assert collector.in_progress() == 0


def test_serves_metrics_without_counting_scrapes(collector: MetricsCollector) -> None:
    app = starlette_app(collector)

    async def run() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        await call(app, "GET", "/events/1")
        text = await call(app, "GET", "/metrics")
        om = await call(app, "GET", "/metrics", headers={"Accept": "application/openmetrics-text"})
        head = await call(app, "HEAD", "/metrics")
        return text, om, head

    text, om, head = asyncio.run(run())
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0
    families = {f.name: f for f in text_string_to_metric_families(text.text)}
    [sample] = families["http_requests"].samples
    assert sample.labels == {
        "method": "GET",
        "endpoint": "/events/{event_id}",
        "status_code": "200",
    }
    assert sample.value == 1
    assert counts(collector) == {("GET", "/events/{event_id}", "200"): 1}


def test_metrics_path_moved_or_off_and_exclusions(collector: MetricsCollector) -> None:
    app = starlette_app(collector, metrics_path="/internal/metrics", exclude_paths=["/events/*"])
    off = starlette_app(MetricsCollector(slow_hooks=()), metrics_path=None)

    async def run() -> None:
        assert (await call(app, "GET", "/internal/metrics")).status_code == 200
        assert (await call(app, "GET", "/metrics")).status_code == 404
        assert (await call(app, "GET", "/events/1")).status_code == 200
        assert (await call(off, "GET", "/metrics")).status_code == 404

    asyncio.run(run())
    assert counts(collector) == {("GET", UNMATCHED, "404"): 1}


def test_internal_fault_is_logged_counted_and_the_request_goes_on(
    collector: MetricsCollector, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = starlette_app(collector)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected eventmon bug")

    monkeypatch.setattr(collector, "end", broken)
    r = asyncio.run(call(app, "GET", "/events/9"))
    assert r.status_code == 200
    assert r.text == "event 9"
    assert collector.internal_errors() == {"asgi.observe": 1}
    assert any("injected eventmon bug" in (rec.exc_text or "") for rec in caplog.records)
    monkeypatch.undo()
    metrics = asyncio.run(call(app, "GET", "/metrics")).text
    assert 'eventmon_internal_errors_total{where="asgi.observe"} 1' in metrics


def test_in_progress_gauge_counts_requests_being_served(collector: MetricsCollector) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    gate = asyncio.Event()
    seen: list[int] = []

    async def wait(request: Any) -> PlainTextResponse:
        seen.append(collector.in_progress())
        await gate.wait()
        return PlainTextResponse("done")

    app = Starlette(routes=[Route("/wait", wait)])
    app.add_middleware(EventmonMiddleware, collector=collector)

    async def run() -> None:
        tasks = [asyncio.create_task(call(app, "GET", "/wait")) for _ in range(3)]
        while len(seen) < 3:
            await asyncio.sleep(0.01)
        assert collector.in_progress() == 3
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(run())
    assert collector.in_progress() == 0
    assert max(seen) == 3


def test_bad_options_fail_at_start_up(collector: MetricsCollector) -> None:
    with pytest.raises(ConfigurationError, match="metrics_path"):
        EventmonMiddleware(lambda *a: None, collector=collector, metrics_path="metrics")
    with pytest.raises(ConfigurationError, match="unit"):
        EventmonMiddleware(lambda *a: None, collector=collector, unit="minutes")
    with pytest.raises(ConfigurationError, match="exclude_paths"):
        EventmonMiddleware(lambda *a: None, collector=collector, exclude_paths=["health"])


@pytest.mark.parametrize("collector", ["oops", object(), MetricsCollector])
def test_a_collector_that_is_not_one_fails_at_construction(collector: Any) -> None:
    with pytest.raises(ConfigurationError, match=NOT_A_COLLECTOR):
        EventmonMiddleware(lambda *a: None, collector=collector)


def test_cancelled_request_is_recorded_as_499(collector: MetricsCollector) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def slow(request: Any) -> PlainTextResponse:
        await asyncio.sleep(10)
        return PlainTextResponse("late")

    app = EventmonMiddleware(Starlette(routes=[Route("/slow", slow)]), collector=collector)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def run() -> None:
        scope = {"type": "http", "method": "GET", "path": "/slow", "headers": []}
        task = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()  # what a server does when the client is gone
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert counts(collector) == {("GET", "/slow", "499"): 1}
    assert collector.in_progress() == 0
