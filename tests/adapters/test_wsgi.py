"""eventmon.wsgi beyond the shared suite: body lifecycle, file wrappers, options."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.test import Client
from werkzeug.wsgi import FileWrapper

from eventmon import ConfigurationError, MetricsCollector
from eventmon import wsgi as wsgi_module
from eventmon.core._native import speedups
from eventmon.core.registry import UNMATCHED
from eventmon.wsgi import ENDPOINT_KEY, EventmonMiddleware

# Every test here runs on each response implementation in the same run: the Python
# reference (eventmon.wsgi._Response) and, when the extension is built, its C twin.
RESPONSES = [
    "python",
    pytest.param(
        "c", marks=pytest.mark.skipif(speedups is None, reason="the C accelerator is not in use")
    ),
]


@pytest.fixture(autouse=True, params=RESPONSES)
def response_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Selects the WSGI response implementation the middleware builds."""
    if request.param == "python":
        monkeypatch.setattr(wsgi_module, "_native_response", None)
    else:
        assert wsgi_module._native_response is not None
    return str(request.param)


def environ(path: str = "/x", method: str = "GET", **extra: Any) -> dict[str, Any]:
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(),
    }
    env.update(extra)
    return env


def counts(c: MetricsCollector) -> dict[tuple[str, str, str], int]:
    return {(s.method, s.endpoint, s.status_code): s.count for s in c.series()}


def test_client_gone_before_the_last_chunk_is_499(collector: MetricsCollector) -> None:
    closed = []

    def app(env: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])

        def body() -> Iterator[bytes]:
            try:
                yield from (b"a", b"b", b"c")
            finally:
                closed.append(True)

        return body()

    mw = EventmonMiddleware(app, collector=collector)
    body = mw(environ(), lambda *a: None)
    it = iter(body)
    assert next(it) == b"a"
    assert collector.in_progress() == 1
    body.close()  # type: ignore[attr-defined]  # what a server does when the write fails
    assert closed == [True]
    assert counts(collector) == {("GET", UNMATCHED, "499"): 1}
    assert collector.in_progress() == 0


def test_duration_runs_until_the_body_is_complete_or_closed(clock: Any) -> None:
    c = MetricsCollector(slow_hooks=(), clock=clock)

    def app(env: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        env[ENDPOINT_KEY] = env["PATH_INFO"]
        start_response("200 OK", [])
        yield b"x"
        clock.advance(0.25)  # producing the rest
        yield b"y"

    mw = EventmonMiddleware(app, collector=c)
    body = mw(environ("/whole"), lambda *a: None)
    clock.advance(0.3)
    assert list(body) == [b"x", b"y"]  # recorded here: the last chunk is handed out
    clock.advance(0.2)  # the server closes later
    body.close()  # type: ignore[attr-defined]
    body = mw(environ("/cut"), lambda *a: None)
    assert next(iter(body)) == b"x"
    clock.advance(0.4)  # the server stops here: the client is gone
    body.close()  # type: ignore[attr-defined]
    assert {(s.endpoint, s.status_code): s.sum for s in c.series()} == {
        ("/whole", "200"): pytest.approx(0.55),
        ("/cut", "499"): pytest.approx(0.4),
    }


def test_file_wrapper_keeps_the_sendfile_path(clock: Any) -> None:
    c = MetricsCollector(slow_hooks=(), clock=clock)
    f = io.BytesIO(b"file contents")

    def app(env: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        return env["wsgi.file_wrapper"](f)

    mw = EventmonMiddleware(app, collector=c)
    body = mw(environ(**{"wsgi.file_wrapper": FileWrapper}), lambda *a: None)
    assert type(body) is FileWrapper  # the server can still recognise it and sendfile()
    clock.advance(1.25)
    body.close()
    assert f.closed
    assert [(s.status_code, s.count, s.sum) for s in c.series()] == [("200", 1, 1.25)]


def test_status_set_while_iterating(collector: MetricsCollector) -> None:
    """A generator app may call start_response on its first iteration (PEP 3333)."""

    def app(env: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("201 Created", [])
        yield b"made"

    r = Client(EventmonMiddleware(app, collector=collector)).post("/things")
    assert (r.status_code, r.get_data()) == (201, b"made")
    r.close()
    assert counts(collector) == {("POST", UNMATCHED, "201"): 1}


def test_error_while_closing_is_500_once(collector: MetricsCollector) -> None:
    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"x"
            yield b"y"

        def close(self) -> None:
            raise OSError("disk gone")

    def app(env: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    mw = EventmonMiddleware(app, collector=collector)
    body = mw(environ(), lambda *a: None)
    assert next(iter(body)) == b"x"
    with pytest.raises(OSError, match="disk gone"):
        body.close()  # type: ignore[attr-defined]
    assert counts(collector) == {("GET", UNMATCHED, "500"): 1}
    # Once the body was handed out whole the request is recorded: close() failing
    # afterwards still reaches the server, but the client had its 200.
    body = mw(environ(), lambda *a: None)
    assert list(body) == [b"x", b"y"]
    with pytest.raises(OSError, match="disk gone"):
        body.close()  # type: ignore[attr-defined]
    assert counts(collector) == {("GET", UNMATCHED, "500"): 1, ("GET", UNMATCHED, "200"): 1}


def test_endpoint_resolver_and_environ_key(collector: MetricsCollector) -> None:
    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        if env["PATH_INFO"].startswith("/users/"):
            env["myapp.route"] = "/users/{id}"
        if env["PATH_INFO"] == "/explicit":
            env[ENDPOINT_KEY] = "/explicit-template"
        start_response("200 OK", [])
        return [b""]

    mw = EventmonMiddleware(
        app, collector=collector, endpoint_resolver=lambda env: env.get("myapp.route")
    )
    client = Client(mw)
    for path in ("/users/1", "/users/2", "/explicit", "/other"):
        r = client.get(path)
        r.get_data()
        r.close()
    assert counts(collector) == {
        ("GET", "/users/{id}", "200"): 2,
        ("GET", "/explicit-template", "200"): 1,
        ("GET", UNMATCHED, "200"): 1,
    }


def test_metrics_head_and_content_length(
    collector: MetricsCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process's CPU time and memory change between two renders (and with them the
    # page's length); hold them still so HEAD and GET describe the same page.
    import os

    from eventmon.exporters import prometheus

    frozen = os.times()
    monkeypatch.setattr(prometheus.os, "times", lambda: frozen)
    monkeypatch.setattr(prometheus, "rss_bytes", lambda: 123_456_789)
    mw = EventmonMiddleware(lambda e, s: [b""], collector=collector)
    client = Client(mw)
    full = client.get("/metrics")
    head = client.head("/metrics")
    assert head.status_code == 200
    assert head.get_data() == b""
    assert int(head.headers["Content-Length"]) == len(full.get_data()) > 0
    assert full.headers["Content-Type"].startswith("text/plain; version=0.0.4")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics_path": "metrics"}, "metrics_path must start with '/'"),
        ({"exclude_paths": "/health"}, "write \\['/health'\\]"),
        ({"exclude_paths": ["health"]}, "exclude_paths entries must start with '/'"),
        ({"unit": "h"}, "unit must be 's' or 'ms'"),
        ({"endpoint_resolver": "not callable"}, "endpoint_resolver must be callable"),
        ({"collector": "oops"}, "collector must be an eventmon.MetricsCollector"),
        ({"collector": MetricsCollector}, "collector must be an eventmon.MetricsCollector"),
    ],
)
def test_configuration_mistakes_fail_at_once(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        EventmonMiddleware(lambda e, s: [], **kwargs)


def test_a_fault_while_recording_is_logged_and_counted(
    collector: MetricsCollector, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("201 Created", [])
        return [b"made"]

    def broken(*args: Any) -> None:
        raise RuntimeError("eventmon bug in end")

    monkeypatch.setattr(collector, "end", broken)
    mw = EventmonMiddleware(app, collector=collector)
    for env in (environ(), {"PATH_INFO": "/no-method"}):  # the second lacks REQUEST_METHOD
        body = mw(env, lambda *a: None)
        assert list(body) == [b"made"]
        body.close()  # type: ignore[attr-defined]  # does not raise into the server
    # The second also counts the missing method (recorded under a fallback label).
    assert collector.internal_errors() == {"wsgi.observe": 2, "wsgi.endpoint": 1}
    logged = [r for r in caplog.records if "wsgi.observe" in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
    assert "eventmon bug in end" in str(logged[0].exc_info[1])


def test_status_line_that_is_not_a_string(collector: MetricsCollector) -> None:
    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(["not", "hashable"], [])
        return [b""]

    body = EventmonMiddleware(app, collector=collector)(environ(), lambda *a: None)
    list(body)
    body.close()  # type: ignore[attr-defined]
    assert counts(collector) == {("GET", UNMATCHED, "500"): 1}


def test_start_response_passes_exc_info_and_returns_the_servers_write(
    collector: MetricsCollector,
) -> None:
    seen: list[Any] = []

    def server_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        seen.append((status, exc_info))
        return seen.append

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("503 Busy", [("Retry-After", "1")], exc_info=None)
        write(b"early")
        return []

    body = EventmonMiddleware(app, collector=collector)(environ(), server_start_response)
    list(body)
    body.close()  # type: ignore[attr-defined]
    assert seen == [("503 Busy", None), b"early"]
    assert counts(collector) == {("GET", UNMATCHED, "503"): 1}


def test_a_body_whose_close_is_none(collector: MetricsCollector) -> None:
    class Body(list[bytes]):
        close = None

    def app(env: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body([b"ok"])

    body = EventmonMiddleware(app, collector=collector)(environ(), lambda *a: None)
    assert list(body) == [b"ok"]
    body.close()  # type: ignore[attr-defined]
    assert counts(collector) == {("GET", UNMATCHED, "200"): 1}


def test_start_response_by_keyword_reaches_the_server_positionally(
    collector: MetricsCollector,
) -> None:
    seen: list[tuple[Any, ...]] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status="201 Created", headers=[])
        return [b""]

    mw = EventmonMiddleware(app, collector=collector)
    body = mw(environ(), lambda *a: seen.append(a))  # a server that takes no keywords
    list(body)
    body.close()  # type: ignore[attr-defined]
    assert seen == [("201 Created", [], None)]
    assert counts(collector) == {("GET", UNMATCHED, "201"): 1}


def test_the_failing_body_is_the_exception_being_handled_while_recording(
    collector: MetricsCollector,
) -> None:
    import sys

    handled: list[Any] = []

    def resolver(env: dict[str, Any]) -> str:
        handled.append(sys.exc_info()[1])
        return "/resolved"

    def app(env: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"a"
        raise ValueError("body broke")

    body = EventmonMiddleware(app, collector=collector, endpoint_resolver=resolver)(
        environ(), lambda *a: None
    )
    with pytest.raises(ValueError, match="body broke"):
        list(body)
    assert len(handled) == 1
    assert isinstance(handled[0], ValueError)
    assert counts(collector) == {("GET", "/resolved", "500"): 1}


def test_an_interrupt_while_recording_a_failure_wins_and_keeps_the_cause(
    collector: MetricsCollector,
) -> None:
    def resolver(env: dict[str, Any]) -> str:
        raise KeyboardInterrupt

    def app(env: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        raise ValueError("body broke")
        yield b""  # pragma: no cover

    body = EventmonMiddleware(app, collector=collector, endpoint_resolver=resolver)(
        environ(), lambda *a: None
    )
    with pytest.raises(KeyboardInterrupt) as caught:
        list(body)
    assert isinstance(caught.value.__context__, ValueError)


def test_size_metrics_count_a_file_wrapper_by_its_content_length(collector: Any) -> None:
    f = io.BytesIO(b"file contents")

    def app(env: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", "13")])
        return env["wsgi.file_wrapper"](f)

    mw = EventmonMiddleware(app, collector=collector, size_metrics=True)
    body = mw(environ(**{"wsgi.file_wrapper": FileWrapper}), lambda *a: None)
    assert type(body) is FileWrapper  # still the server's to sendfile()
    body.close()
    assert collector.size_histograms()[1] == {
        ("GET", UNMATCHED, "200"): ([1, 0, 0, 0, 0, 0, 0], 13.0)
    }


def test_size_metrics_count_write_and_iterated_bytes_under_wsgiref(collector: Any) -> None:
    """A real server (wsgiref on 127.0.0.1): bytes from write() and from the iterable."""
    import threading
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"x" * 1000)  # the legacy write() callable
        env["wsgi.input"].read(int(env.get("CONTENT_LENGTH") or 0))
        return [b"y" * 500]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    mw = EventmonMiddleware(app, collector=collector, size_metrics=True)
    server = make_server("127.0.0.1", 0, mw, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/upload"
        with urllib.request.urlopen(url, data=b"z" * 20_000, timeout=10) as r:
            assert len(r.read()) == 1500
    finally:
        server.shutdown()
        server.server_close()
    assert collector.size_histograms() == {
        0: {("POST", UNMATCHED, "200"): ([0, 0, 0, 1, 0, 0, 0], 20_000.0)},
        1: {("POST", UNMATCHED, "200"): ([0, 0, 1, 0, 0, 0, 0], 1500.0)},
    }
