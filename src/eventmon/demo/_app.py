"""The sample event-ticketing app the demo instruments (Starlette)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from eventmon.demo._state import DemoState

__all__ = ["EVENT_IDS", "build_starlette_app"]

#: Events the sample app knows; anything else is a 404.
EVENT_IDS = tuple(range(1, 41))

_PIXEL = bytes.fromhex(  # a 1x1 transparent GIF
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


def _pause(ms: float) -> float:
    """A log-normal service time around ``ms`` milliseconds, in seconds."""
    return random.lognormvariate(0, 0.5) * ms / 1000.0


def build_starlette_app(state: DemoState) -> Any:
    """An event-ticketing API: events, seats, ticket purchase, search, feed, assets."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import (
        HTMLResponse,
        JSONResponse,
        PlainTextResponse,
        RedirectResponse,
        Response,
    )
    from starlette.routing import Route

    def known(request: Request) -> int | None:
        try:
            event_id = int(request.path_params["event_id"])
        except ValueError:
            return None
        return event_id if event_id in EVENT_IDS else None

    async def home(request: Request) -> Response:
        await asyncio.sleep(_pause(4))
        return HTMLResponse("<h1>Tickets</h1><p><a href='/events'>events</a></p>")

    async def events(request: Request) -> Response:
        await asyncio.sleep(_pause(8))
        return JSONResponse([{"id": i, "name": f"Event {i}"} for i in EVENT_IDS[:20]])

    async def event(request: Request) -> Response:
        event_id = known(request)
        if event_id is None:
            return JSONResponse({"error": "no such event"}, status_code=404)
        await asyncio.sleep(_pause(25 if state.opening else 6))
        return JSONResponse({"id": event_id, "name": f"Event {event_id}", "venue": "Hall A"})

    async def seats(request: Request) -> Response:
        event_id = known(request)
        if event_id is None:
            return JSONResponse({"error": "no such event"}, status_code=404)
        await asyncio.sleep(_pause(60 if state.opening else 10))
        return JSONResponse({"event": event_id, "available": random.randint(0, 500)})

    async def buy(request: Request) -> Response:
        event_id = known(request)
        if event_id is None:
            return JSONResponse({"error": "no such event"}, status_code=404)
        await request.body()
        if state.opening:
            # Doors open: the payment backend queues up and starts refusing.
            await asyncio.sleep(_pause(450))
            if random.random() < 0.25:
                return JSONResponse({"error": "payment backend overloaded"}, status_code=503)
        else:
            await asyncio.sleep(_pause(30))
        return JSONResponse({"event": event_id, "ticket": random.randint(1, 10**9)}, 201)

    async def short_link(request: Request) -> Response:
        return RedirectResponse(f"/events/{request.path_params['event_id']}", status_code=301)

    async def search(request: Request) -> Response:
        await asyncio.sleep(_pause(15))
        if request.query_params.get("q") == "":
            return JSONResponse({"error": "empty query"}, status_code=400)
        return JSONResponse({"q": request.query_params.get("q"), "results": []})

    async def feed(request: Request) -> Response:
        await asyncio.sleep(_pause(5))
        return Response("<rss version='2.0'><channel/></rss>", media_type="application/rss+xml")

    async def asset(request: Request) -> Response:
        if request.headers.get("if-none-match") == '"v1"':
            return Response(status_code=304, headers={"etag": '"v1"'})
        return Response(_PIXEL, media_type="image/gif", headers={"etag": '"v1"'})

    async def fail(request: Request) -> Response:
        await asyncio.sleep(_pause(40))
        return PlainTextResponse("report backend failed", status_code=500)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/events", events),
            Route("/events/{event_id}", event),
            Route("/events/{event_id}/seats", seats),
            Route("/events/{event_id}/tickets", buy, methods=["POST"]),
            Route("/e/{event_id}", short_link),
            Route("/search", search),
            Route("/feed.xml", feed),
            Route("/static/{path:path}", asset),
            Route("/internal/report", fail),
            Route("/health", health),
        ]
    )
