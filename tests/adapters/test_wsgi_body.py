"""The WSGI response as servers and test clients see it.

Its length (a one-chunk body keeps the ``Content-Length`` servers derive from it,
and with it keep-alive), and when a request is recorded: once its body is complete
(iterated to its end, or the declared ``Content-Length`` handed out) or closed,
whichever comes first; 499 only for a body the server started and did not finish.
"""

from __future__ import annotations

import gc
import http.client
import io
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Response

from adapters.wsgi_servers import wait_until
from eventmon import MetricsCollector
from eventmon.core.registry import UNMATCHED
from eventmon.flask import Eventmon
from eventmon.wsgi import EventmonMiddleware


def counts(c: MetricsCollector) -> dict[tuple[str, str, str], int]:
    return {(s.method, s.endpoint, s.status_code): s.count for s in c.series()}


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # no Content-Length
    return [b"hello"]


def stream(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"hel"
    yield b"lo"


# ------------------------------------------------------------ length, on the wire


@pytest.mark.parametrize("instrumented", [False, True], ids=["bare", "eventmon"])
def test_one_chunk_body_keeps_content_length_and_keep_alive(
    wsgi_server: Callable[[Any], int], request: pytest.FixtureRequest, instrumented: bool
) -> None:
    c = MetricsCollector(slow_hooks=())
    port = wsgi_server(EventmonMiddleware(hello, collector=c) if instrumented else hello)
    server = request.node.callspec.params["wsgi_server"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sockets = set()
    for _ in range(3):
        conn.request("GET", "/hello")
        r = conn.getresponse()
        assert r.read() == b"hello"
        assert r.getheader("Content-Length") == "5"
        assert r.getheader("Transfer-Encoding") is None
        sockets.add(id(conn.sock))
        if server == "waitress":  # wsgiref speaks HTTP/1.0 and closes every connection
            assert not r.will_close
    if server == "waitress":
        assert len(sockets) == 1  # one connection served all three
    conn.close()
    if instrumented:
        assert wait_until(lambda: c.in_progress() == 0)
        assert counts(c) == {("GET", UNMATCHED, "200"): 3}


def test_a_stream_stays_a_stream(wsgi_server: Callable[[Any], int]) -> None:
    c = MetricsCollector(slow_hooks=())
    port = wsgi_server(EventmonMiddleware(stream, collector=c))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/s")
    r = conn.getresponse()
    assert r.read() == b"hello"
    assert r.getheader("Content-Length") is None  # the server cannot know it
    conn.close()


def test_the_response_has_a_length_only_when_the_body_has_one() -> None:
    c = MetricsCollector(slow_hooks=())
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO()}
    sized = EventmonMiddleware(hello, collector=c)(dict(env), lambda *a: None)
    assert hasattr(sized, "__len__")
    assert len(sized) == 1  # type: ignore[arg-type]
    assert list(sized) == [b"hello"]
    unsized = EventmonMiddleware(stream, collector=c)(dict(env), lambda *a: None)
    assert not hasattr(unsized, "__len__")
    with pytest.raises(TypeError):
        len(unsized)  # type: ignore[arg-type]
    assert list(unsized) == [b"hel", b"lo"]
    for body in (sized, unsized):
        body.close()  # type: ignore[attr-defined]
    assert counts(c) == {("GET", UNMATCHED, "200"): 2}
    assert c.in_progress() == 0


# -------------------------------------------------------------- when it is recorded


def flask_app(collector: MetricsCollector) -> Flask:
    app = Flask("testclient")

    @app.route("/ok")
    def ok() -> str:
        return "ok"

    @app.route("/created", methods=["POST"])
    def created() -> tuple[str, int]:
        return "made", 201

    @app.route("/stream")
    def streamed() -> Response:
        def chunks() -> Iterator[str]:
            yield "a"
            yield "b"

        return Response(chunks())

    Eventmon(app, collector=collector)
    return app


def test_flask_test_client_records_the_real_status(collector: MetricsCollector) -> None:
    client = flask_app(collector).test_client()
    r = client.get("/ok")  # neither read nor closed: what most tests do
    assert r.status_code == 200
    assert counts(collector) == {("GET", "/ok", "200"): 1}
    assert collector.in_progress() == 0
    with client.post("/created") as made:  # closed unread
        assert made.status_code == 201
    with client.get("/missing"):
        pass
    assert client.get("/ok").text == "ok"  # read, not closed
    assert counts(collector) == {
        ("GET", "/ok", "200"): 2,
        ("POST", "/created", "201"): 1,
        ("GET", UNMATCHED, "404"): 1,
    }
    assert collector.in_progress() == 0


def test_flask_test_client_and_streams(collector: MetricsCollector) -> None:
    """A stream has no declared length: it is complete once read to its end."""
    client = flask_app(collector).test_client()
    assert client.get("/stream").data == b"ab"
    assert client.get("/stream", buffered=True).status_code == 200
    unread = client.get("/stream")
    assert collector.in_progress() == 1  # started, not finished
    unread.close()  # the client stopped after the first chunk: a client gone
    assert counts(collector) == {("GET", "/stream", "200"): 2, ("GET", "/stream", "499"): 1}
    assert collector.in_progress() == 0


def test_closed_before_iteration_is_the_status_not_499(collector: MetricsCollector) -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}
    for app in (hello, stream):  # the generator calls start_response lazily: never here
        body = EventmonMiddleware(app, collector=collector)(dict(environ), lambda *a: None)
        body.close()  # type: ignore[attr-defined]
    assert counts(collector) == {("GET", UNMATCHED, "200"): 1, ("GET", UNMATCHED, "500"): 1}


def test_declared_length_is_read_strictly(collector: MetricsCollector) -> None:
    """Complete once the declared bytes are out; a header eventmon cannot read
    leaves the end of the iterable as the only signal (the same in C and Python)."""

    def app_with(headers: list[Any]) -> Any:
        def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
            start_response("200 OK", headers)
            yield b"hel"
            yield b"lo"
            yield b""

        return EventmonMiddleware(app, collector=collector)

    cases = {
        "cl": [("content-LENGTH", "5")],
        "after-others": [("X-A", "1"), ("Content-Length", "5"), ("Content-Length", "9")],
        "signed": [("Content-Length", "+5")],
        "spaced": [("Content-Length", " 5")],
        "unicode-digits": [("Content-Length", "\u0665")],
        "bytes": [(b"Content-Length", b"5")],
        "list-item": [["Content-Length", "5"]],
        "too-long": [("Content-Length", "1" * 19)],
    }
    recorded_after_two = []
    for name, headers in cases.items():
        before = sum(counts(collector).values())
        body = app_with(headers)({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda *a: None)
        it = iter(body)
        next(it)
        next(it)
        if sum(counts(collector).values()) > before:
            recorded_after_two.append(name)
        assert list(it) == [b""]
        body.close()  # type: ignore[attr-defined]
    assert recorded_after_two == ["cl", "after-others"]
    assert collector.in_progress() == 0


def test_instrumenting_adds_no_reference_cycle() -> None:
    """With the cycle collector off, a dropped app is freed as an uninstrumented one is."""
    c = MetricsCollector(slow_hooks=())
    gc.collect()
    gc.disable()
    try:
        app = flask_app(c)
        client = app.test_client()
        client.get("/ok").close()
        del client
        app_ref = weakref.ref(app)
        del app
        assert app_ref() is None
    finally:
        gc.enable()
    assert counts(c) == {("GET", "/ok", "200"): 1}
