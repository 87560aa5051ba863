"""A tiny app for the real scaling tests: WSGI (gunicorn) and ASGI (uvicorn).

``/cpu`` burns about ``ms`` milliseconds of CPU (default 20); ``/slow?s=3``
streams its worker's pid at once, then the rest after ``s`` seconds; ``/pid``
answers the worker's pid. Every response carries ``X-Worker-Pid``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

PID = str(os.getpid())


def _burn(ms: float) -> int:
    end = time.thread_time() + ms / 1000.0
    n = 0
    while time.thread_time() < end:
        n += sum(i * i for i in range(200))
    return n


def _arg(query: str, name: str, default: float) -> float:
    try:
        return float(parse_qs(query).get(name, [default])[0])
    except ValueError:
        return default


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    path = environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    pid = str(os.getpid())
    headers = [("Content-Type", "text/plain"), ("X-Worker-Pid", pid)]
    if path == "/cpu":
        _burn(_arg(query, "ms", 20))
        start_response("200 OK", headers)
        return iter([b"ok"])
    if path == "/slow":
        seconds = _arg(query, "s", 3)

        def body() -> Iterator[bytes]:
            yield f"pid={pid}\n".encode()
            time.sleep(seconds)
            yield b"done\n"

        start_response("200 OK", headers)
        return body()
    start_response("200 OK", headers)
    return iter([pid.encode()])


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    query = scope.get("query_string", b"").decode()
    pid = str(os.getpid()).encode()
    headers = [(b"content-type", b"text/plain"), (b"x-worker-pid", pid)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/cpu":
        _burn(_arg(query, "ms", 20))
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/slow":
        await send({"type": "http.response.body", "body": b"pid=" + pid + b"\n", "more_body": True})
        await asyncio.sleep(_arg(query, "s", 3))
        await send({"type": "http.response.body", "body": b"done\n"})
    else:
        await send({"type": "http.response.body", "body": pid})
