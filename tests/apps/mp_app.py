"""A Starlette app for worker-aggregation tests: /work/{ms} sleeps `ms` ms, answers its pid."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from eventmon.asgi import EventmonMiddleware


async def work(request: Any) -> PlainTextResponse:
    ms = int(request.path_params["ms"])
    if ms:
        await asyncio.sleep(ms / 1000)
    return PlainTextResponse(str(os.getpid()))


# No collector argument: the process-wide one, which EVENTMON_MULTIPROC_DIR turns
# into a worker-aggregating one in every worker.
app = Starlette(routes=[Route("/work/{ms}", work)])
app.add_middleware(EventmonMiddleware)
