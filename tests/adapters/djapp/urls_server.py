"""Routes for Django under a real server; /stream sleeps between chunks (sync or async)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path


def event(request: HttpRequest, event_id: int) -> HttpResponse:
    return HttpResponse(f"event {event_id}")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


def _chunks() -> Iterator[bytes]:
    for i in range(4):
        time.sleep(0.05)
        yield b"chunk %d\n" % i


async def _achunks() -> AsyncIterator[bytes]:
    for i in range(4):
        await asyncio.sleep(0.05)
        yield b"chunk %d\n" % i


def stream(request: HttpRequest) -> StreamingHttpResponse:
    # Under ASGI an async iterator streams without a thread per chunk.
    asgi = os.environ.get("EVENTMON_TEST_ASGI") == "1"
    return StreamingHttpResponse(_achunks() if asgi else _chunks())


urlpatterns = [
    path("events/<int:event_id>", event),
    path("boom", boom),
    path("stream", stream),
]
