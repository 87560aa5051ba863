"""Real peers on 127.0.0.1 for the alerting tests: an HTTP receiver and an SMTP server."""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from servers import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class HTTPReceiver:
    """Records JSON POSTs. Paths: /ok, /limited (one 429 then 200), /hang, /fail (500),
    /missing... (404, as Slack answers a revoked webhook)."""

    url: str
    received: list[Received] = field(default_factory=list)
    retry_after: str = "1"
    release: threading.Event = field(default_factory=threading.Event)
    hits: dict[str, int] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, path: str, n: int = 1, timeout: float = 10.0) -> list[Received]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.on(path)) >= n, timeout)
            return self.on(path)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture
def http_receiver() -> Iterator[HTTPReceiver]:
    port = free_port()
    rec = HTTPReceiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            path = self.path
            with rec.cond:
                rec.hits[path] = rec.hits.get(path, 0) + 1
                hit = rec.hits[path]
            if path == "/hang":
                rec.release.wait(30)
            if path == "/limited" and hit == 1:
                self.send_response(429)
                self.send_header("Retry-After", rec.retry_after)
                self.send_header("Content-Length", "12")
                self.end_headers()
                self.wfile.write(b"rate_limited")
                return
            if path.startswith("/missing"):
                self.send_response(404)
                self.send_header("Content-Length", "10")
                self.end_headers()
                self.wfile.write(b"no_service")
                return
            if path == "/fail":
                self.send_response(500)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"oops")
                return
            with rec.cond:
                rec.received.append(
                    Received(path, dict(self.headers), json.loads(raw), time.monotonic())
                )
                rec.cond.notify_all()
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield rec
    finally:
        rec.release.set()
        server.shutdown()
        server.server_close()


@dataclass
class DripServer:
    """A TCP server on 127.0.0.1 that answers one byte every ``interval`` seconds.

    ``phase="status"`` drips the whole HTTP response from its status line;
    ``phase="body"`` sends the headers at once and drips a 20-byte body;
    ``phase="smtp"`` drips an SMTP greeting. Each byte arrives well inside a
    socket timeout, so only a total deadline can end the exchange early.
    """

    port: int
    interval: float
    phase: str = "status"
    tls: ssl.SSLContext | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


@pytest.fixture
def drip_server() -> Iterator[DripServer]:
    port = free_port()
    drip = DripServer(port, interval=0.25)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn: socket.socket = self.request
            if drip.tls is not None:
                conn = drip.tls.wrap_socket(conn, server_side=True)
            if drip.phase == "smtp":
                out = b"220 drip.test ESMTP " + b"." * 40 + b"\r\n"
            else:
                _read_http_request(conn)
                out = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + b"x" * 20
                if drip.phase == "body":
                    head = out.index(b"\r\n\r\n") + 4
                    conn.sendall(out[:head])
                    out = out[head:]
            for i in range(len(out)):
                if drip.stop.wait(drip.interval):
                    return
                try:
                    conn.sendall(out[i : i + 1])
                except OSError:  # the client gave up: what the test wants
                    return

    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield drip
    finally:
        drip.stop.set()
        server.shutdown()
        server.server_close()


def _read_http_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


@dataclass
class SMTPReceiver:
    host: str
    port: int
    messages: list[Any] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Any]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)


@pytest.fixture
def smtp_server() -> Iterator[SMTPReceiver]:
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller

    port = free_port()
    rec = SMTPReceiver("127.0.0.1", port)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = message_from_bytes(envelope.content, policy=policy.default)
            with rec.cond:
                rec.messages.append((list(envelope.rcpt_tos), msg))
                rec.cond.notify_all()
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield rec
    finally:
        controller.stop()
