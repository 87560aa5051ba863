"""Apps for the end-to-end benchmark: the same Starlette app, bare and instrumented."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def event(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _app() -> Starlette:
    return Starlette(routes=[Route("/events/{event_id}", event)])


bare = _app()

instrumented = _app()
from eventmon.asgi import EventmonMiddleware  # noqa: E402

instrumented.add_middleware(EventmonMiddleware)


class _PassThrough:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


passthrough = _app()
passthrough.add_middleware(_PassThrough)
