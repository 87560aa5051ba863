"""The C WSGI response and its Python reference cannot drift apart unnoticed.

Runs whenever the extension is built, on every interpreter (the pure-Python run
skips it): the C types expose the names the middleware relies on, and a
hypothesis-generated run of requests through the real middleware gives the
server and the collector exactly the same things with either implementation.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FakeClock
from eventmon import MetricsCollector
from eventmon import wsgi as wsgi_module
from eventmon.core._native import speedups

pytestmark = pytest.mark.skipif(speedups is None, reason="the C accelerator is not in use")

# What the middleware and the servers use of a response; the C types show no more.
RESPONSE_NAMES = {"body", "close", "exhausted", "finish", "start_response", "token"}


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def test_the_c_responses_have_the_reference_names() -> None:
    assert speedups is not None
    for c_type, py_type in (
        (speedups.WSGIResponse, wsgi_module._Response),
        (speedups.WSGISizedResponse, wsgi_module._SizedResponse),
    ):
        assert _public(c_type) == RESPONSE_NAMES, c_type
        assert _public(py_type) >= RESPONSE_NAMES, py_type
        for dunder in ("__iter__", "__len__"):
            assert hasattr(c_type, dunder) == hasattr(py_type, dunder), (c_type, dunder)


def test_the_recorder_has_the_collectors_request_path() -> None:
    assert speedups is not None
    assert _public(speedups.Recorder) == {"begin", "end", "observe", "limit", "slow_threshold"}
    for name in ("begin", "end", "observe", "slow_threshold"):
        assert hasattr(MetricsCollector, name)


class Boom(Exception):
    pass


class Body:
    """A response body: chunks, optionally sized, optionally failing or closing badly."""

    def __init__(self, chunks: list[bytes], fail_at: int | None, close_fails: bool) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.close_fails = close_fails

    def __iter__(self) -> Iterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise Boom("body")
            yield chunk

    def close(self) -> None:
        if self.close_fails:
            raise Boom("close")


_PLAIN = {
    "status": "200 OK",
    "chunks": [b"ok"],
    "length": None,
    "sized": False,
    "kind": "list",
    "raise_in_app": None,
    "fail_at": None,
    "close_fails": False,
    "take": None,
    "path": "/a",
    "method": "GET",
    "endpoint": "/a/{id}",
}


class SizedBody(Body):
    def __len__(self) -> int:
        return len(self.chunks)


statuses = st.sampled_from(["200 OK", "201 Created", "404 Not Found", "503 Busy", "299 Odd", b"x"])
chunk_lists = st.lists(st.sampled_from([b"", b"a", b"bcd", b"efghij"]), max_size=4)
requests = st.fixed_dictionaries(
    {
        "status": statuses,
        "chunks": chunk_lists,
        "length": st.sampled_from([None, "exact", 0, 2, 100, "x1"]),
        "sized": st.booleans(),
        "kind": st.sampled_from(["body", "list"]),
        "raise_in_app": st.sampled_from([None, "before", "after"]),
        "fail_at": st.none() | st.integers(0, 3),
        "close_fails": st.booleans(),
        "take": st.none() | st.integers(0, 4),  # chunks the server reads; None: all
        "path": st.sampled_from(["/a", "/b", "/metrics-ish"]),
        "method": st.sampled_from(["GET", "POST"]),
        "endpoint": st.none() | st.sampled_from(["/a/{id}", ""]),
        # Extra request labels, when the middleware has them: a header and a callback.
        "tenant": st.none() | st.sampled_from(["acme", "", 'q"u']),
        "plan": st.sampled_from(["gold", "free", "raise"]),
    }
)


def _plan(environ: dict[str, Any]) -> str:
    plan = environ["test.request"]["plan"]
    if plan == "raise":
        raise Boom("plan")
    return str(plan)


def _run(script: list[dict[str, Any]], implementation: str, labelled: bool = False) -> list[Any]:
    """What the server and the collector saw, running ``script`` on one implementation.

    ``labelled``: the middleware has a header label and a label callback.
    """
    clock = FakeClock()
    collector = MetricsCollector(slow_hooks=(), clock=clock, slow_threshold=0.05)
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        r = environ["test.request"]
        if r["endpoint"] is not None:
            environ[wsgi_module.ENDPOINT_KEY] = r["endpoint"]
        if r["raise_in_app"] == "before":
            raise Boom("app")
        headers = [("Content-Type", "text/plain")]
        if r["length"] == "exact":
            headers.append(("Content-Length", str(sum(map(len, r["chunks"])))))
        elif r["length"] is not None:
            headers.append(("Content-Length", str(r["length"])))
        start_response(r["status"], headers)
        if r["raise_in_app"] == "after":
            raise Boom("app")
        if r["kind"] == "list":
            return list(r["chunks"])
        kind = SizedBody if r["sized"] else Body
        return kind(r["chunks"], r["fail_at"], r["close_fails"])

    labels: dict[str, Any] = {}
    if labelled:
        labels = {"header_labels": {"tenant": "X-Tenant"}, "label_callbacks": {"plan": _plan}}
    mw = wsgi_module.EventmonMiddleware(app, collector=collector, **labels)
    native = wsgi_module._native_response
    wsgi_module._native_response = native if implementation == "c" else None
    try:
        for r in script:
            environ = {
                "REQUEST_METHOD": r["method"],
                "PATH_INFO": r["path"],
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "80",
                "wsgi.input": io.BytesIO(),
                "test.request": r,
                **({"HTTP_X_TENANT": r["tenant"]} if r.get("tenant") is not None else {}),
            }
            started: list[Any] = []

            def server_start_response(
                status: Any, headers: Any, exc_info: Any = None, started: list[Any] = started
            ) -> None:
                started.append((status, list(headers)))

            try:
                result = mw(environ, server_start_response)
            except Boom as e:
                seen.append(("raised", str(e), started))
                clock.advance(0.01)
                continue
            seen.append(("length", len(result) if hasattr(result, "__len__") else None))
            got = []
            try:
                for i, chunk in enumerate(result):
                    if r["take"] is not None and i >= r["take"]:
                        break
                    got.append(chunk)
                    clock.advance(0.02)
            except Boom as e:
                got.append(("raised", str(e)))
            try:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            except Boom as e:
                got.append(("close raised", str(e)))
            clock.advance(0.01)
            seen.append((started, got, collector.in_progress()))
    finally:
        wsgi_module._native_response = native
    seen.append(
        sorted(
            (s.method, s.endpoint, s.status_code, s.extra, s.count, round(s.sum, 9), s.buckets)
            for s in collector.series()
        )
    )
    seen.append((collector.in_progress(), collector.internal_errors(), collector.slow_requests()))
    collector.shutdown()
    return seen


@settings(max_examples=60, deadline=None)
@given(st.lists(requests, min_size=1, max_size=8))
def test_a_request_script_gives_the_same_results_on_both(script: list[dict[str, Any]]) -> None:
    assert _run(script, "c") == _run(script, "python")


@settings(max_examples=60, deadline=None)
@given(st.lists(requests, min_size=1, max_size=8))
def test_a_labelled_request_script_gives_the_same_results_on_both(
    script: list[dict[str, Any]],
) -> None:
    # Extra labels ride on the C response too (the middleware's _label_key).
    assert _run(script, "c", labelled=True) == _run(script, "python", labelled=True)


def test_labelled_requests_take_the_c_response_and_carry_their_values() -> None:
    script = [
        {**r, "tenant": tenant, "plan": plan}
        for r, tenant, plan in (
            (_PLAIN, "acme", "gold"),
            (_PLAIN, None, "free"),
            (_PLAIN, "acme", "raise"),
        )
    ]
    seen = _run(script, "c", labelled=True)
    series, (in_progress, errors, _) = seen[-2], seen[-1]
    # (plan, tenant): the raising callback's value is "", a missing header's too.
    assert sorted(row[3] for row in series) == [("", "acme"), ("free", ""), ("gold", "acme")]
    assert in_progress == 0
    assert errors == {"label_callback": 1}
    # The labelled middleware hands the server the C response, as the default one does.
    assert speedups is not None
    c = MetricsCollector(slow_hooks=())
    mw = wsgi_module.EventmonMiddleware(
        lambda environ, start_response: start_response("200 OK", []) or [b"ok"],
        collector=c,
        header_labels={"tenant": "X-Tenant"},
    )
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "HTTP_X_TENANT": "acme"}
    result = mw(environ, lambda *a: None)
    assert isinstance(result, speedups.WSGIResponse)  # WSGISizedResponse for a list body
    assert list(result) == [b"ok"]
    result.close()
    assert [(s.endpoint, s.extra) for s in c.series()] == [("__unmatched__", ("acme",))]


def test_the_script_reaches_both_implementations() -> None:
    # The comparison above is only worth something if each side really ran.
    calls: list[str] = []
    native = wsgi_module._native_response
    assert native is not None
    reference = wsgi_module._Response.finish

    def counting_native(*args: Any) -> Any:
        calls.append("c")
        return native(*args)

    def counting_finish(self: Any, status: int) -> None:
        calls.append("python")
        reference(self, status)

    script = [
        dict.fromkeys(("length", "raise_in_app", "fail_at", "take", "endpoint"))
        | {"status": "200 OK", "chunks": [b"a"], "sized": False, "kind": "list"}
        | {"close_fails": False, "path": "/a", "method": "GET"}
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wsgi_module, "_native_response", counting_native)
        mp.setattr(wsgi_module._Response, "finish", counting_finish)
        _run(script, "c")
        _run(script, "python")
    assert calls == ["c", "python"]


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_a_resolver_fault_keeps_the_extra_label_values(implementation: str) -> None:
    def resolver(environ: dict[str, Any]) -> str:
        raise Boom("resolver")

    c = MetricsCollector(slow_hooks=())
    mw = wsgi_module.EventmonMiddleware(
        lambda environ, start_response: start_response("200 OK", []) or [b"ok"],
        collector=c,
        header_labels={"tenant": "X-Tenant"},
        endpoint_resolver=resolver,
    )
    native = wsgi_module._native_response
    wsgi_module._native_response = native if implementation == "c" else None
    try:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "HTTP_X_TENANT": "acme"}
        result = mw(environ, lambda *a: None)
        assert list(result) == [b"ok"]
        result.close()
    finally:
        wsgi_module._native_response = native
    assert [(s.endpoint, s.extra) for s in c.series()] == [("__unmatched__", ("acme",))]
    assert c.internal_errors() == {"wsgi.endpoint": 1}
