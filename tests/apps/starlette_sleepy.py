"""A Starlette app for real-server tests: /sleep/{ms} answers after `ms` milliseconds."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from eventmon.asgi import EventmonMiddleware


async def sleep(request: Any) -> PlainTextResponse:
    await asyncio.sleep(int(request.path_params["ms"]) / 1000)
    return PlainTextResponse("slept")


app = Starlette(routes=[Route("/sleep/{ms}", sleep)])
app.add_middleware(EventmonMiddleware)
