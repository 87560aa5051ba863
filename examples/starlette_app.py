"""A small event-ticketing API on Starlette, instrumented by eventmon in one line.

Run it:    uvicorn examples.starlette_app:app --port 8000
Then:      curl 127.0.0.1:8000/events/42 ; curl 127.0.0.1:8000/metrics
           open http://127.0.0.1:8000/eventmon/ for the dashboard
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import eventmon
from eventmon.alerting import AlertEngine, default_rules
from eventmon.asgi import EventmonMiddleware

EVENTS = {42: {"id": 42, "name": "Doors open", "capacity": 30_000}}


async def list_events(request: Any) -> JSONResponse:
    return JSONResponse(list(EVENTS.values()))


async def get_event(request: Any) -> JSONResponse:
    event = EVENTS.get(request.path_params["event_id"])
    if event is None:
        return JSONResponse({"error": "no such event"}, status_code=404)
    return JSONResponse(event)


async def buy_ticket(request: Any) -> JSONResponse:
    await asyncio.sleep(0.01)  # the payment provider
    return JSONResponse({"ticket": "ok"}, status_code=201)


async def live(request: Any) -> JSONResponse:
    return JSONResponse(eventmon.get_realtime_metrics().to_dict())


# Alerts evaluated in-process; add notifiers (Slack, email, ...) for real use.
alerts = AlertEngine(eventmon.default_collector(), default_rules(performance=False))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with alerts.lifespan(app):
        yield


app = Starlette(
    routes=[
        Route("/events", list_events),
        Route("/events/{event_id:int}", get_event),
        Route("/events/{event_id:int}/tickets", buy_ticket, methods=["POST"]),
        Route("/live", live),
    ],
    lifespan=lifespan,
)
app.add_middleware(EventmonMiddleware, dashboard=True)  # the one line
