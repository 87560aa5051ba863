"""The shared test routes as Django views, sync and async."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from adapters.apps import CHUNKS, STEP, Boom, ctx

# ------------------------------------------------------------------- sync


def event(request: HttpRequest, event_id: int) -> HttpResponse:
    return HttpResponse(f"event {event_id}")


def item(request: HttpRequest, item_id: int) -> HttpResponse:
    return HttpResponse(f"item {item_id}")


def status(request: HttpRequest, code: int) -> HttpResponse:
    return HttpResponse("", status=code)


def boom(request: HttpRequest) -> HttpResponse:
    raise Boom("boom")


def _chunks() -> Iterator[bytes]:
    for c in CHUNKS:
        ctx.clock.advance(STEP)
        yield c


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_chunks())


def _bad_chunks() -> Iterator[bytes]:
    yield b"a"
    raise Boom("mid-stream")


def stream_boom(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_bad_chunks())


def slow(request: HttpRequest) -> HttpResponse:
    ctx.clock.advance(1.5)
    return HttpResponse("slow")


def inflight(request: HttpRequest) -> HttpResponse:
    ctx.threads.add(threading.get_ident())
    return HttpResponse(str(ctx.collector.in_progress()))


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


# ------------------------------------------------------------------ async


async def aevent(request: HttpRequest, event_id: int) -> HttpResponse:
    return HttpResponse(f"event {event_id}")


async def aitem(request: HttpRequest, item_id: int) -> HttpResponse:
    return HttpResponse(f"item {item_id}")


async def astatus(request: HttpRequest, code: int) -> HttpResponse:
    return HttpResponse("", status=code)


async def aboom(request: HttpRequest) -> HttpResponse:
    raise Boom("boom")


async def _achunks() -> AsyncIterator[bytes]:
    for c in CHUNKS:
        await asyncio.sleep(0)
        ctx.clock.advance(STEP)
        yield c


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_achunks())


async def _abad_chunks() -> AsyncIterator[bytes]:
    yield b"a"
    raise Boom("mid-stream")


async def astream_boom(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_abad_chunks())


async def aslow(request: HttpRequest) -> HttpResponse:
    ctx.clock.advance(1.5)
    return HttpResponse("slow")


async def ainflight(request: HttpRequest) -> HttpResponse:
    ctx.threads.add(threading.get_ident())
    return HttpResponse(str(ctx.collector.in_progress()))


async def ahealth(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")
