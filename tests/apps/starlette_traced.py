"""A Starlette app with exemplars on, for the real-Prometheus exemplar test."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from eventmon import MetricsCollector
from eventmon.asgi import EventmonMiddleware


async def hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("hello")


app = Starlette(routes=[Route("/hello/{name}", hello)])
app.add_middleware(EventmonMiddleware, collector=MetricsCollector(), exemplars=True)
