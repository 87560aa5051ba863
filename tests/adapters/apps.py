"""The same small app in every framework eventmon supports, for the shared suite.

Routes: ``/events/{id}``, ``/api/v1/items/{id}`` (under a mount / blueprint /
include), ``/status/{code}``, ``/boom`` (raises), ``/stream`` (three chunks, the
fake clock moves ``STEP`` before each), ``/stream-boom`` (raises mid-body),
``/slow`` (1.5 s on the fake clock), ``/inflight`` (answers the in-progress
gauge), ``/health`` and ``/static/app.css`` (excluded by the tests).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from eventmon import MetricsCollector

CHUNKS = (b"a", b"b", b"c")
STEP = 0.25


class Boom(Exception):
    """The error the test routes raise."""


class _Ctx:
    """What the views need from the running test (set by the harness)."""

    clock: Any = None
    collector: MetricsCollector
    threads: set[int]

    def __init__(self) -> None:
        self.threads = set()


ctx = _Ctx()


# ---------------------------------------------------------------- Starlette


def starlette_app(**mw: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route

    from eventmon.asgi import EventmonMiddleware

    async def event(request: Any) -> Any:
        return PlainTextResponse(f"event {request.path_params['event_id']}")

    async def item(request: Any) -> Any:
        return PlainTextResponse(f"item {request.path_params['item_id']}")

    async def status(request: Any) -> Any:
        return Response(b"", status_code=request.path_params["code"])

    async def boom(request: Any) -> Any:
        raise Boom("boom")

    async def stream(request: Any) -> Any:
        return StreamingResponse(_achunks())

    async def stream_boom(request: Any) -> Any:
        return StreamingResponse(_abad_chunks())

    async def slow(request: Any) -> Any:
        ctx.clock.advance(1.5)
        return PlainTextResponse("slow")

    async def inflight(request: Any) -> Any:
        ctx.threads.add(threading.get_ident())
        return PlainTextResponse(str(ctx.collector.in_progress()))

    async def health(request: Any) -> Any:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/events/{event_id:int}", event),
            Mount("/api/v1", routes=[Route("/items/{item_id:int}", item)]),
            Route("/status/{code:int}", status),
            Route("/boom", boom),
            Route("/stream", stream),
            Route("/stream-boom", stream_boom),
            Route("/slow", slow),
            Route("/inflight", inflight),
            Route("/health", health),
            Route("/static/app.css", health),
        ]
    )
    app.add_middleware(EventmonMiddleware, **mw)
    return app


async def _achunks() -> AsyncIterator[bytes]:
    for c in CHUNKS:
        await asyncio.sleep(0)
        ctx.clock.advance(STEP)
        yield c


async def _abad_chunks() -> AsyncIterator[bytes]:
    yield b"a"
    raise Boom("mid-stream")


# ------------------------------------------------------------------ FastAPI


def fastapi_app(**mw: Any) -> Any:
    from fastapi import APIRouter, FastAPI
    from fastapi.responses import PlainTextResponse, Response, StreamingResponse

    from eventmon.asgi import EventmonMiddleware

    app = FastAPI()
    api = APIRouter(prefix="/api/v1")

    @app.get("/events/{event_id}", response_class=PlainTextResponse)
    async def event(event_id: int) -> str:
        return f"event {event_id}"

    @api.get("/items/{item_id}", response_class=PlainTextResponse)
    async def item(item_id: int) -> str:
        return f"item {item_id}"

    app.include_router(api)

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        return Response(b"", status_code=code)

    @app.get("/boom")
    async def boom() -> None:
        raise Boom("boom")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(_achunks())

    @app.get("/stream-boom")
    async def stream_boom() -> StreamingResponse:
        return StreamingResponse(_abad_chunks())

    @app.get("/slow", response_class=PlainTextResponse)
    async def slow() -> str:
        ctx.clock.advance(1.5)
        return "slow"

    @app.get("/inflight", response_class=PlainTextResponse)
    async def inflight() -> str:
        ctx.threads.add(threading.get_ident())
        return str(ctx.collector.in_progress())

    @app.get("/health", response_class=PlainTextResponse)
    @app.get("/static/app.css", response_class=PlainTextResponse)
    async def health() -> str:
        return "ok"

    app.add_middleware(EventmonMiddleware, **mw)
    return app


# -------------------------------------------------------------------- Flask


def _chunks() -> Iterator[bytes]:
    for c in CHUNKS:
        ctx.clock.advance(STEP)
        yield c


def _bad_chunks() -> Iterator[bytes]:
    yield b"a"
    raise Boom("mid-stream")


def flask_app(**options: Any) -> Any:
    from flask import Blueprint, Flask, Response

    from eventmon.flask import Eventmon

    app = Flask("eventmon_tests")
    app.config["TESTING"] = True  # exceptions propagate to the test client
    api = Blueprint("api", __name__, url_prefix="/api/v1")

    @app.get("/events/<int:event_id>")
    def event(event_id: int) -> str:
        return f"event {event_id}"

    @api.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return f"item {item_id}"

    app.register_blueprint(api)

    @app.get("/status/<int:code>")
    def status(code: int) -> Any:
        return Response(b"", status=code)

    @app.get("/boom")
    def boom() -> str:
        raise Boom("boom")

    @app.get("/stream")
    def stream() -> Any:
        return Response(_chunks())

    @app.get("/stream-boom")
    def stream_boom() -> Any:
        return Response(_bad_chunks())

    @app.get("/slow")
    def slow() -> str:
        ctx.clock.advance(1.5)
        return "slow"

    @app.get("/inflight")
    def inflight() -> str:
        ctx.threads.add(threading.get_ident())
        return str(ctx.collector.in_progress())

    @app.get("/health")
    @app.get("/static/app.css")
    def health() -> str:
        return "ok"

    Eventmon(app, **options)
    return app


# ---------------------------------------------------------- plain WSGI app


def wsgi_app(**options: Any) -> Any:
    """A WSGI app routed by werkzeug's Map; it leaves the matched rule in the environ."""
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import Map, Rule

    from eventmon.wsgi import ENDPOINT_KEY, EventmonMiddleware

    url_map = Map(
        [
            Rule("/events/<int:event_id>", endpoint="event"),
            Rule("/api/v1/items/<int:item_id>", endpoint="item"),
            Rule("/status/<int:code>", endpoint="status"),
            Rule("/boom", endpoint="boom"),
            Rule("/stream", endpoint="stream"),
            Rule("/stream-boom", endpoint="stream_boom"),
            Rule("/slow", endpoint="slow"),
            Rule("/inflight", endpoint="inflight"),
            Rule("/health", endpoint="health"),
            Rule("/static/app.css", endpoint="health"),
        ]
    )
    reasons = {200: "OK", 201: "Created", 404: "Not Found"}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        adapter = url_map.bind_to_environ(environ)
        try:
            rule, args = adapter.match(return_rule=True)
        except HTTPException as e:
            start_response(f"{e.code} {e.name}", [("Content-Type", "text/plain")])
            return [b"not found"]
        environ[ENDPOINT_KEY] = rule.rule
        name = rule.endpoint
        headers = [("Content-Type", "text/plain")]
        if name == "boom":
            raise Boom("boom")
        if name in ("stream", "stream_boom"):
            start_response("200 OK", headers)
            return _chunks() if name == "stream" else _bad_chunks()
        code = 200
        if name == "event":
            body = f"event {args['event_id']}"
        elif name == "item":
            body = f"item {args['item_id']}"
        elif name == "status":
            code, body = args["code"], ""
        elif name == "slow":
            ctx.clock.advance(1.5)
            body = "slow"
        elif name == "inflight":
            ctx.threads.add(threading.get_ident())
            body = str(ctx.collector.in_progress())
        else:
            body = "ok"
        start_response(f"{code} {reasons.get(code, 'Status')}", headers)
        return [body.encode()]

    return EventmonMiddleware(app, **options)
