"""Timing a Django streaming response until its last chunk, or until it is closed.

Private: :meth:`eventmon.django.EventmonMiddleware._time_stream` wraps a
streaming response's content in :func:`timed_sync` or :func:`timed_async`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventmon.django import EventmonMiddleware

__all__ = ["CLIENT_CLOSED", "Stream", "content_length", "timed_async", "timed_sync"]

#: Status recorded when the client went away before the last chunk.
CLIENT_CLOSED = 499


def content_length(value: str | None) -> int:
    """A ``Content-Length`` value as a count of bytes (0 if missing or not a number)."""
    try:
        return max(int(value or 0), 0)
    except ValueError:
        return 0


class Stream:
    """A streaming response in flight: recorded at its last chunk, or when closed."""

    __slots__ = (
        "done",
        "middleware",
        "request",
        "sent",
        "start",
        "started",
        "status",
        "token",
    )

    def __init__(
        self, middleware: EventmonMiddleware, token: Any, request: Any, start: float, status: int
    ) -> None:
        self.middleware = middleware
        self.token = token
        self.request = request
        self.start = start
        self.status = status
        self.started = False
        self.done = False
        #: Body bytes sent, counted with size_metrics=True (else None).
        self.sent: int | None = 0 if middleware._sized else None

    def finish(self, status: int) -> None:
        if not self.done:
            self.done = True
            self.middleware._finish(self.token, self.request, status, self.start, self.sent)

    def closed(self) -> None:
        # Closed after iteration began but before it ended: the client went away.
        self.finish(CLIENT_CLOSED if self.started else self.status)


def timed_sync(stream: Stream, content: Iterable[bytes]) -> Iterator[bytes]:
    stream.started = True
    try:
        if stream.sent is None:
            yield from content
        else:
            for chunk in content:
                stream.sent += len(chunk)
                yield chunk
    except GeneratorExit:
        stream.finish(CLIENT_CLOSED)
        raise
    except BaseException:
        stream.finish(500)
        raise
    stream.finish(stream.status)


async def timed_async(stream: Stream, content: Any) -> AsyncIterator[bytes]:
    stream.started = True
    try:
        async for chunk in content:
            if stream.sent is not None:
                stream.sent += len(chunk)
            yield chunk
    except (GeneratorExit, asyncio.CancelledError):
        stream.finish(CLIENT_CLOSED)
        raise
    except BaseException:
        stream.finish(500)
        raise
    stream.finish(stream.status)
