"""The sample event-ticketing app's behaviour, whatever framework serves it.

Each handler takes the path parameters, the query and a header reader, and
returns a :class:`Reply`: what to answer and how long to "work" first. The
framework modules (:mod:`eventmon.demo._frameworks`) only route to these and
wait (``asyncio.sleep`` or ``time.sleep``), so every framework serves the same
app with the same timings and failures.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eventmon.demo._state import DemoState

__all__ = ["EVENT_IDS", "ROUTES", "TICKETS", "Reply", "Route", "Ticketing", "template"]

#: Events the sample app knows; anything else is a 404.
EVENT_IDS = tuple(range(1, 41))

_PIXEL = bytes.fromhex(  # a 1x1 transparent GIF
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)

Header = Callable[[str], "str | None"]


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: status, body, content type, extra headers, and the time to take first."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    pause: float = 0.0


@dataclass(frozen=True, slots=True)
class Route:
    """One route: the handler's name, a ``{param}`` path template, the methods."""

    name: str
    path: str
    methods: tuple[str, ...] = ("GET", "HEAD")


ROUTES = (
    Route("home", "/"),
    Route("events", "/events"),
    Route("event", "/events/{event_id}"),
    Route("seats", "/events/{event_id}/seats"),
    Route("buy", "/events/{event_id}/tickets", ("POST",)),
    Route("short_link", "/e/{event_id}"),
    Route("search", "/search"),
    Route("feed", "/feed.xml"),
    Route("asset", "/static/{path:path}"),
    Route("fail", "/internal/report"),
    Route("health", "/health"),
)

#: The ticket purchase route, in the neutral ``{param}`` form.
TICKETS = "/events/{event_id}/tickets"


def template(path: str, framework: str) -> str:
    """A route's template as ``framework`` writes it (and labels its metrics)."""
    if framework == "starlette":
        return path
    # Flask and Django: <name>, <path:name>; Django's route has no leading '/'.
    return re.sub(r"\{(\w+)(?::(path))?\}", lambda m: f"<{m[2] + ':' if m[2] else ''}{m[1]}>", path)


def _pause(ms: float) -> float:
    """A log-normal service time around ``ms`` milliseconds, in seconds."""
    return random.lognormvariate(0, 0.5) * ms / 1000.0


def _json(doc: Any, status: int = 200, pause: float = 0.0) -> Reply:
    return Reply(status, json.dumps(doc).encode(), pause=pause)


_NO_SUCH_EVENT = _json({"error": "no such event"}, 404)


class Ticketing:
    """An event-ticketing API: events, seats, ticket purchase, search, feed, assets."""

    def __init__(self, state: DemoState) -> None:
        self.state = state

    def handle(
        self, name: str, params: Mapping[str, str], query: Mapping[str, str], header: Header
    ) -> Reply:
        """Answer a request routed to the handler ``name``."""
        handler: Callable[[Mapping[str, str], Mapping[str, str], Header], Reply]
        handler = getattr(self, name)
        return handler(params, query, header)

    @staticmethod
    def _known(params: Mapping[str, str]) -> int | None:
        try:
            event_id = int(params["event_id"])
        except ValueError:
            return None
        return event_id if event_id in EVENT_IDS else None

    def home(self, params: Mapping[str, str], query: Mapping[str, str], header: Header) -> Reply:
        body = b"<h1>Tickets</h1><p><a href='/events'>events</a></p>"
        return Reply(200, body, "text/html; charset=utf-8", pause=_pause(4))

    def events(self, params: Mapping[str, str], query: Mapping[str, str], header: Header) -> Reply:
        return _json([{"id": i, "name": f"Event {i}"} for i in EVENT_IDS[:20]], pause=_pause(8))

    def event(self, params: Mapping[str, str], query: Mapping[str, str], header: Header) -> Reply:
        event_id = self._known(params)
        if event_id is None:
            return _NO_SUCH_EVENT
        doc = {"id": event_id, "name": f"Event {event_id}", "venue": "Hall A"}
        return _json(doc, pause=_pause(25 if self.state.opening else 6))

    def seats(self, params: Mapping[str, str], query: Mapping[str, str], header: Header) -> Reply:
        event_id = self._known(params)
        if event_id is None:
            return _NO_SUCH_EVENT
        doc = {"event": event_id, "available": random.randint(0, 500)}
        return _json(doc, pause=_pause(60 if self.state.opening else 10))

    def buy(self, params: Mapping[str, str], query: Mapping[str, str], header: Header) -> Reply:
        event_id = self._known(params)
        if event_id is None:
            return _NO_SUCH_EVENT
        if self.state.opening:
            # Doors open: the payment backend queues up and starts refusing.
            pause = _pause(450)
            if random.random() < 0.25:
                return _json({"error": "payment backend overloaded"}, 503, pause)
        else:
            pause = _pause(30)
        return _json({"event": event_id, "ticket": random.randint(1, 10**9)}, 201, pause)

    def short_link(
        self, params: Mapping[str, str], query: Mapping[str, str], header: Header
    ) -> Reply:
        return Reply(301, b"", "text/plain", (("Location", f"/events/{params['event_id']}"),))

    def search(self, params: Mapping[str, str], query: Mapping[str, str], header: Header) -> Reply:
        q = query.get("q")
        if q == "":
            return _json({"error": "empty query"}, 400, _pause(15))
        return _json({"q": q, "results": []}, pause=_pause(15))

    def feed(self, params: Mapping[str, str], query: Mapping[str, str], header: Header) -> Reply:
        body = b"<rss version='2.0'><channel/></rss>"
        return Reply(200, body, "application/rss+xml", pause=_pause(5))

    def asset(self, params: Mapping[str, str], query: Mapping[str, str], header: Header) -> Reply:
        if header("if-none-match") == '"v1"':
            return Reply(304, b"", "image/gif", (("ETag", '"v1"'),))
        return Reply(200, _PIXEL, "image/gif", (("ETag", '"v1"'),))

    def fail(self, params: Mapping[str, str], query: Mapping[str, str], header: Header) -> Reply:
        return Reply(500, b"report backend failed", "text/plain; charset=utf-8", pause=_pause(40))

    def health(self, params: Mapping[str, str], query: Mapping[str, str], header: Header) -> Reply:
        return Reply(200, b"ok", "text/plain; charset=utf-8")
