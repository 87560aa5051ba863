"""A threaded WSGI server from the standard library, on an already bound socket.

wsgiref serves one request per connection (HTTP/1.0) and one thread per
connection: enough for the demo's bounded load and the dashboard's event
streams, with no dependency beyond the framework itself.
"""

from __future__ import annotations

import socket
import socketserver
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from eventmon.types import WSGIApp

__all__ = ["ThreadedWSGIServer", "make_server"]


class ThreadedWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server with a thread per connection."""

    daemon_threads = True
    # Open event streams must not hold up the exit: their threads are daemons.
    block_on_close = False
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: the dashboard is the point


def make_server(sock: socket.socket, app: WSGIApp) -> ThreadedWSGIServer:
    """A server for ``app`` listening on ``sock`` (bound, not yet listening)."""
    server = ThreadedWSGIServer(sock.getsockname(), _QuietHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    host, port = sock.getsockname()[:2]
    server.server_address = (host, port)
    server.server_name = host
    server.server_port = port
    server.setup_environ()
    server.set_app(app)
    server.server_activate()
    return server
