"""Real WSGI servers on 127.0.0.1, in this process: wsgiref and waitress.

``wsgi_server`` is a fixture (run once per server) giving ``start(app) -> port``;
the servers stop when the test ends. ``served(kind, app)`` is the same as a context
manager yielding the base URL.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def serve_wsgiref(app: Any) -> tuple[int, Callable[[], None]]:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return server.server_port, stop


def serve_waitress(app: Any) -> tuple[int, Callable[[], None]]:
    from waitress.server import create_server

    server: Any = create_server(app, host="127.0.0.1", port=0, threads=2)
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:  # a channel closed under select() while stopping
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def close_all() -> None:  # in the server's own thread: its loop ends with nothing to watch
        for channel in list(server._map.values()):
            channel.close()

    def stop() -> None:
        stopping.set()
        # Its worker threads first (they finish their requests), then the channels.
        server.task_dispatcher.shutdown()
        try:
            server.trigger.pull_trigger(close_all)
        except OSError:
            # The trigger is closed already: the loop found its descriptor gone
            # (closed elsewhere in this process) and dropped it. Close from here.
            close_all()
        thread.join(5)

    return server.effective_port, stop


SERVERS = {"wsgiref": serve_wsgiref, "waitress": serve_waitress}


@contextlib.contextmanager
def served(kind: str, app: Any) -> Iterator[str]:
    """Serve ``app`` with ``kind`` (``wsgiref`` or ``waitress``); yields its base URL."""
    port, stop = SERVERS[kind](app)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop()


@pytest.fixture(params=sorted(SERVERS))
def wsgi_server(request: pytest.FixtureRequest) -> Iterator[Callable[[Any], int]]:
    stops: list[Callable[[], None]] = []

    def start(app: Any) -> int:
        port, stop = SERVERS[request.param](app)
        stops.append(stop)
        return port

    yield start
    for stop in stops:
        stop()


def wait_until(done: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether ``done()`` came true within ``timeout``: a real server may record a
    request just after the client has its last byte (when it asks for the next)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
