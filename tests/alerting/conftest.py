"""Real peers on 127.0.0.1 for the alerting tests: an HTTP receiver and an SMTP server."""

from __future__ import annotations

import json
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
    """Records JSON POSTs. Paths: /ok, /limited (one 429 then 200), /hang, /fail (500)."""

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
