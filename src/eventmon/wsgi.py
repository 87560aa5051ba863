"""Pure WSGI middleware: Flask, Django, or any WSGI application.

One line::

    app = EventmonMiddleware(app)

A request is timed from the middleware's entry until its body is complete (the
iterable exhausted, or the declared ``Content-Length`` handed out) or the server
calls ``close()``, whichever comes first, so streaming and file responses are
timed until their last byte. The status comes from ``start_response``. An
exception from the application, or from iterating its body, is recorded once as
500 and re-raised unchanged; a body the server started iterating and stopped
before it was complete (the client went away) is recorded as 499, and nothing
else is. The response has a ``len()`` exactly when the app's body has one.

The endpoint label is read when the request ends: ``environ["eventmon.endpoint"]``
if the application (or a framework extension such as :mod:`eventmon.flask`)
put the route template there, else ``endpoint_resolver(environ)``, else the
shared "unmatched" value. A resolver that raises is logged and counted (internal
error ``wsgi.endpoint``) and the request recorded as unmatched: every request is
ended exactly once, whatever raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from types import TracebackType
from typing import Any

from eventmon._adapter import (
    AdapterOptions,
    check_endpoint_resolver,
    metrics_response,
    resolve_collector,
    resolve_dashboard,
)
from eventmon._exceptions import ConfigurationError
from eventmon.collector import MetricsCollector
from eventmon.core._native import speedups
from eventmon.core.exemplars import current_trace, request_trace_id
from eventmon.core.registry import UNMATCHED
from eventmon.types import StartResponse, WSGIApp, WSGIEnviron

__all__ = ["ENDPOINT_KEY", "EventmonMiddleware"]

#: The environ key where an application may leave the request's route template.
ENDPOINT_KEY = "eventmon.endpoint"

#: Status recorded when the server stopped sending the body (the client went away).
CLIENT_CLOSED = 499

#: Method label of a request whose environ has no REQUEST_METHOD (a server at fault).
FALLBACK_METHOD = "other"

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | None


class EventmonMiddleware:
    """Records every HTTP request of a WSGI app in a :class:`~eventmon.MetricsCollector`.

    Args:
        app: the WSGI application to wrap.
        collector: where to record (default: the process-wide collector).
        metrics_path: path at which to serve Prometheus metrics (``None``: don't,
            e.g. when :func:`~eventmon.exporters.prometheus.start_metrics_server`
            serves them on another port).
        metrics_token: if set, the metrics page answers 401 unless the request
            carries ``Authorization: Bearer <metrics_token>``.
        exclude_paths: paths not recorded; an entry ending in ``*`` is a prefix.
        exclude_patterns: regular expressions; a path any of them matches
            (``re.search``) is not recorded. Compiled at start-up.
        exclude_methods: request methods not recorded, e.g. ``{"OPTIONS", "HEAD"}``.
        namespace: prefix of the request metrics' names on the metrics page
            (``"tickets"``: ``tickets_http_requests_total``).
        const_labels: labels added to every series on the metrics page, e.g.
            ``{"app_name": "tickets"}`` (no cost per request).
        group_status_codes: show ``status_code`` as ``2xx``, ``4xx``... on the
            metrics page (the collector keeps the codes).
        size_metrics: also record request and response body sizes
            (``http_request_size_bytes``, ``http_response_size_bytes``); off by default.
        header_labels: extra request labels from request headers, e.g.
            ``{"tenant": "X-Tenant-ID"}``; a missing header gives ``""``.
        label_callbacks: extra request labels from callables, e.g.
            ``{"tenant": tenant_of}``; each is called with the WSGI environ when
            the request ends and returns the value (``str()``-ed).
        unit: ``"s"`` (default) or ``"ms"`` for the histogram's exposition.
        endpoint_resolver: ``f(environ) -> str | None``, called after the app
            ran, for apps that do not set ``environ["eventmon.endpoint"]``;
            ``None`` from it means unmatched.
        dashboard: serve the built-in dashboard: ``True`` for one on this
            collector at ``/eventmon/``, or a :class:`eventmon.dashboard.Dashboard`;
            off by default. Not recorded as requests.
        exemplars: ``True`` notes each request's trace id (the active
            OpenTelemetry span's, else the ``traceparent`` header's) and turns
            exemplars on in the collector; ``None`` (default) follows
            ``collector.exemplars``. See :mod:`eventmon.core.exemplars`.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        collector: MetricsCollector | None = None,
        metrics_path: str | None = "/metrics",
        metrics_token: str | None = None,
        exclude_paths: Iterable[str] = (),
        exclude_patterns: Iterable[str] = (),
        exclude_methods: Iterable[str] = (),
        namespace: str | None = None,
        const_labels: Mapping[str, str] | None = None,
        group_status_codes: bool = False,
        size_metrics: bool = False,
        header_labels: Mapping[str, str] | None = None,
        label_callbacks: Mapping[str, Callable[[WSGIEnviron], object]] | None = None,
        unit: str = "s",
        endpoint_resolver: Callable[[WSGIEnviron], str | None] | None = None,
        dashboard: Any = None,
        exemplars: bool | None = None,
    ) -> None:
        if exemplars is not None and not isinstance(exemplars, bool):
            raise ConfigurationError(f"exemplars must be True, False or None, got {exemplars!r}")
        options = AdapterOptions.build(
            metrics_path=metrics_path,
            exclude_paths=exclude_paths,
            exclude_patterns=exclude_patterns,
            exclude_methods=exclude_methods,
            namespace=namespace,
            const_labels=const_labels,
            group_status_codes=group_status_codes,
            size_metrics=size_metrics,
            header_labels=header_labels,
            label_callbacks=label_callbacks,
            unit=unit,
            metrics_token=metrics_token,
        )
        check_endpoint_resolver(endpoint_resolver)
        self.app = app
        self.collector = resolve_collector(collector)
        self.options = options
        self.endpoint_resolver = endpoint_resolver
        self._extra = options.extra_labels
        if self._extra is not None:
            self.collector.use_extra_labels(self._extra.names)
        if exemplars:
            self.collector.enable_exemplars()
        if self.collector.exemplars and exemplars is not False:
            # A class of its own, so that with exemplars off the request path is
            # exactly what it is without this option.
            self.__class__ = _TracedMiddleware
        # Flattened for the request path.
        self._metrics_path = options.metrics_path
        self._exact = options.exclude_exact
        self._prefixes = options.exclude_prefixes
        self._dashboard: Any = None
        resolved = resolve_dashboard(dashboard, self.collector)
        if resolved is not None:
            from eventmon.dashboard import DashboardWSGI

            self._dashboard = DashboardWSGI(resolved)
        # One startswith() per request tells whether a path may need anything but
        # instrumenting; the exact checks run only for paths that pass it.
        watch = [*self._exact, *self._prefixes]
        if self._metrics_path is not None:
            watch.append(self._metrics_path)
        if self._dashboard is not None:
            watch.append(self._dashboard.prefix[:-1])
        self._watch = tuple(watch)
        self._pattern = options.exclude_pattern
        self._methods = options.exclude_methods
        self._sized = options.size_metrics
        self._extended = self._sized or self._extra is not None
        if options.filters or self._extended:
            # Patterns, methods, sizes and extra labels need a look at every request:
            # only when configured, so the default path keeps its one startswith().
            self._watch = ("",)

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        try:
            path = environ["PATH_INFO"]
        except KeyError:  # PEP 3333 lets a server leave it out for the root
            path = ""
        if path.startswith(self._watch):
            special = self._special(path, environ)
            if special is not None:
                return special(environ, start_response)
        collector = self.collector
        try:
            start = collector.clock()
            token = collector.begin()
        except Exception:
            collector.internal_error("wsgi.begin")
            return self.app(environ, start_response)
        response: Any
        if _native_response is not None:  # the same object in C, when built
            response = _native_response(self, environ, start_response, token, start)
        else:
            response = _new(_Response)
            response.mw = self
            response.environ = environ
            response._start_response = start_response
            response.token = token
            response.start = start
            response.left = -1
        try:
            body = self.app(environ, response.start_response)
        except BaseException:
            response.finish(500)
            raise
        response.body = body  # the C response picks its sized type here itself
        if response.__class__ is _Response and hasattr(body.__class__, "__len__"):
            response.__class__ = _SizedResponse
        if body.__class__ is environ.get("wsgi.file_wrapper"):
            return _keep_file_wrapper(response, body)
        iterable: Iterable[bytes] = response
        return iterable

    def _special(self, path: str, environ: WSGIEnviron) -> WSGIApp | None:
        """What serves ``path`` if it is not an instrumented request of the app."""
        if path == self._metrics_path:
            return self._serve_metrics
        if self._dashboard is not None and self._dashboard.matches(path):
            return self._dashboard  # type: ignore[no-any-return]
        if (
            path in self._exact
            or (self._prefixes and path.startswith(self._prefixes))
            or environ.get("REQUEST_METHOD") in self._methods
            or (self._pattern is not None and self._pattern.search(path) is not None)
        ):
            return self.app
        return self._call_extended if self._extended else None

    def _call_extended(
        self, environ: WSGIEnviron, start_response: StartResponse
    ) -> Iterable[bytes]:
        """An instrumented request that also records body sizes or extra labels.

        Always the Python response (the C one records the plain endpoint).
        """
        collector = self.collector
        try:
            start = collector.clock()
            token = collector.begin()
        except Exception:
            collector.internal_error("wsgi.begin")
            return self.app(environ, start_response)
        response = _new(_CountingResponse if self._sized else _LabelledResponse)
        response.mw = self
        response.environ = environ
        response._start_response = start_response
        response.token = token
        response.start = start
        response.left = -1
        response.sent = 0
        try:
            body = self.app(environ, response.start_response)
        except BaseException:
            response.finish(500)
            raise
        response.body = body
        if hasattr(body.__class__, "__len__"):
            response.__class__ = _CountingSizedResponse if self._sized else _LabelledSizedResponse
        if body.__class__ is environ.get("wsgi.file_wrapper"):
            return _keep_file_wrapper(response, body)
        return response

    def _serve_metrics(
        self, environ: WSGIEnviron, start_response: StartResponse
    ) -> Iterable[bytes]:
        page = metrics_response(
            self.collector,
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("HTTP_ACCEPT"),
            environ.get("HTTP_AUTHORIZATION"),
            options=self.options,
            where="wsgi.metrics",
        )
        start_response(f"{page.status} {HTTPStatus(page.status).phrase}", list(page.headers))
        return [page.body]


class _TracedMiddleware(EventmonMiddleware):
    """The middleware with exemplars on: each request carries its trace id to its end.

    A WSGI request ends while the server iterates or closes its body, which a
    client may do after other requests ran on the thread (Werkzeug's test client
    does): so the trace id is noted when the request enters, and again when its
    body starts to be iterated and when it is closed.
    """

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        try:
            trace_id = request_trace_id(environ.get("HTTP_TRACEPARENT"))
        except Exception:  # a broken tracer must not fail the request
            self.collector.internal_error("wsgi.trace")
            trace_id = None
        current_trace.set(trace_id)
        body = EventmonMiddleware.__call__(self, environ, start_response)
        if isinstance(body, _RECORDED):
            traced = _new(_SizedTraced if hasattr(body.__class__, "__len__") else _Traced)
            traced.body = body
            traced.trace_id = trace_id
            return traced
        return body


class _Traced:
    """A recorded response that notes its request's trace again before it can end."""

    __slots__ = ("body", "trace_id")

    body: Any
    trace_id: str | None

    def __iter__(self) -> Iterator[bytes]:
        current_trace.set(self.trace_id)
        return iter(self.body)

    def close(self) -> None:
        current_trace.set(self.trace_id)
        self.body.close()


class _SizedTraced(_Traced):
    """The same for a body with a length (servers set ``Content-Length`` from it)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.body)


#: Status line -> code, so that a request does not parse its status line.
_CODES: dict[str, int] = {}


def _status_code(status: str) -> int:
    try:
        code = int(status[:3])
    except (ValueError, TypeError):  # the server will object, not us
        return 500
    if len(_CODES) < 256:  # bounded: apps may invent reason phrases
        _CODES[status] = code
    return code


class _Response:
    """One request's state; also the response iterable handed to the server.

    ``eventmon.core._speedups.WSGIResponse`` is the same in C, used when built;
    this class is the reference (``tests/adapters`` run on both).

    The request is recorded once, at the first of: the body is complete (its
    iterable is exhausted, or it has handed out as many bytes as the
    ``Content-Length`` the app declared) with the status from start_response;
    an exception from the app, its body or the body's ``close()`` (500); or
    ``close()`` (499 if the server had started iterating the body and stopped
    before it was complete: the client went away; else the status).

    Slots left unset mean defaults, so the common path stores less: ``code``
    unset is 500 (start_response never called), ``started`` unset means the
    body was not iterated yet, ``token`` None means already recorded; ``left``
    is the declared length still to hand out, -1 if none was declared.
    """

    __slots__ = (
        "_start_response",
        "body",
        "code",
        "environ",
        "exhausted",
        "left",
        "mw",
        "start",
        "started",
        "token",
    )

    mw: EventmonMiddleware
    environ: WSGIEnviron
    _start_response: StartResponse
    token: Any
    start: float
    code: int
    left: int
    started: bool
    exhausted: bool
    body: Iterable[bytes]

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo = None
    ) -> Callable[[bytes], object]:
        try:
            self.code = _CODES[status]
        except (KeyError, TypeError):  # a status line not seen yet (or not a string)
            self.code = _status_code(status)
        self.left = _declared_length(headers)
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        try:
            for chunk in self.body:
                # The left slot is read per chunk: a generator app may call
                # start_response on its first iteration (PEP 3333).
                if self.left >= 0:
                    left = self.left - len(chunk)
                    if left <= 0:  # all the declared bytes are handed out: complete
                        self.left = -1
                        self.complete()
                    else:
                        self.left = left
                yield chunk
        except GeneratorExit:
            raise
        except BaseException:
            self.finish(500)
            raise
        self.exhausted = True
        self.complete()

    def complete(self) -> None:
        """Record the request with its status: the body was handed out whole."""
        try:
            code = self.code
        except AttributeError:
            code = 500
        self.finish(code)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            try:
                close()
            except BaseException:
                self.finish(500)
                raise
        if self.token is None:
            return
        try:
            self.started  # noqa: B018
        except AttributeError:  # never iterated: nobody went away mid-body
            self.complete()
        else:  # the server stopped before the body was complete
            self.finish(CLIENT_CLOSED)

    def finish(self, status: int) -> None:
        """Record the request once, with ``status``; later calls do nothing.

        Ends it whatever fails: a resolver (or environ) at fault is counted under
        ``wsgi.endpoint`` and the request recorded under fallback labels; a fault
        while recording is counted under ``wsgi.observe``. Neither reaches the server.
        """
        token = self.token
        if token is None:
            return
        self.token = None
        mw = self.mw
        environ = self.environ
        method = FALLBACK_METHOD
        endpoint = UNMATCHED
        try:
            method = environ["REQUEST_METHOD"]
            found = environ.get(ENDPOINT_KEY)
            if found:
                endpoint = found
            else:
                resolve = mw.endpoint_resolver
                if resolve is not None:
                    endpoint = resolve(environ) or UNMATCHED
        except Exception:
            mw.collector.internal_error("wsgi.endpoint")
        finally:
            # Also when a BaseException is on its way out: the request must end.
            try:
                if self.extended:
                    self._end_extended(token, method, endpoint, status)
                else:
                    mw.collector.end(token, method, endpoint, status, self.start)
            except Exception:
                mw.collector.internal_error("wsgi.observe")

    extended = False

    def _end_extended(self, token: Any, method: str, endpoint: str, status: int) -> None:
        raise NotImplementedError  # only _LabelledResponse and its subclasses


class _LabelledResponse(_Response):
    """A response whose request also gets extra labels (``header_labels``,
    ``label_callbacks``); the base of the one that counts body sizes."""

    __slots__ = ("sent",)

    extended = True
    sent: int

    def _end_extended(self, token: Any, method: str, endpoint: str, status: int) -> None:
        mw = self.mw
        key: Any = endpoint
        if mw._extra is not None:
            try:
                key = mw._extra.wsgi_key(endpoint, self.environ, mw.collector)
            except Exception:  # a strange environ: the request keeps its template
                mw.collector.internal_error("wsgi.endpoint")
        mw.collector.end(token, method, key, status, self.start)
        self._record_sizes(method, key, status)

    def _record_sizes(self, method: str, endpoint: Any, status: int) -> None:
        pass  # only _CountingResponse records sizes


class _LabelledSizedResponse(_LabelledResponse):
    """A labelled response whose body has a length (see :class:`_SizedResponse`)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.body)  # type: ignore[arg-type]


class _CountingResponse(_LabelledResponse):
    """A response that also counts body bytes; used only with ``size_metrics=True``.

    The request size is its ``Content-Length`` (a chunked upload without one counts
    as 0); the response size is the bytes the body yielded, or its ``Content-Length``
    when the server sends a file wrapper itself.
    """

    __slots__ = ("length",)

    length: int

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo = None
    ) -> Callable[[bytes], object]:
        for name, value in headers:
            if name.lower() == "content-length":
                self.length = _int(value)
        write = super().start_response(status, headers, exc_info)

        def counted_write(data: bytes) -> object:
            self.sent += len(data)
            return write(data)

        return counted_write

    def __iter__(self) -> Iterator[bytes]:
        # Counted before the base class sees a chunk: it may record the request
        # when the chunk completes the declared Content-Length.
        self.body = _Counted(self, self.body)
        return super().__iter__()

    def _record_sizes(self, method: str, endpoint: Any, status: int) -> None:
        sent = self.sent
        if not sent and isinstance(self.body, _FileClose):
            sent = getattr(self, "length", 0)
        received = _int(self.environ.get("CONTENT_LENGTH") or "0")
        self.mw.collector.sizes.observe(method, endpoint, status, received, sent)


class _Counted:
    """A body whose chunks add to their response's ``sent``; other attributes pass through."""

    __slots__ = ("body", "response")

    def __init__(self, response: _CountingResponse, body: Iterable[bytes]) -> None:
        self.response = response
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        response = self.response
        for chunk in self.body:
            response.sent += len(chunk)
            yield chunk

    def __len__(self) -> int:
        return len(self.body)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.body, name)  # close(), as the server calls it


class _CountingSizedResponse(_CountingResponse):
    """A counting response whose body has a length (see :class:`_SizedResponse`)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.body)  # type: ignore[arg-type]


def _int(text: str) -> int:
    try:
        return max(int(text), 0)
    except (TypeError, ValueError):
        return 0


class _SizedResponse(_Response):
    """A response whose body has a length: servers read ``len()`` of the iterable.

    wsgiref and waitress give a one-chunk body its ``Content-Length`` from it
    (and keep the connection alive); without it they cannot.
    """

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.body)  # type: ignore[arg-type]


def _declared_length(headers: Any) -> int:
    """The ``Content-Length`` among ``headers`` as an int, or -1 if none is usable.

    Strict on purpose, and the same in C: a list of 2-tuples (the scan stops at
    anything else), the first header of that name, ASCII digits only (at most 18).
    """
    if headers.__class__ is not list:
        return -1
    for item in headers:
        if item.__class__ is not tuple or len(item) != 2:
            return -1
        name = item[0]
        if name.__class__ is str and len(name) == 14 and name.lower() == "content-length":
            value = item[1]
            if (
                value.__class__ is str
                and 0 < len(value) <= 18
                and value.isascii()
                and value.isdigit()
            ):
                return int(value)
            return -1
    return -1


class _FileClose:
    """Stands in as the body of a response whose file wrapper the server sends itself."""

    __slots__ = ("close",)

    def __init__(self, close: Callable[[], object] | None) -> None:
        self.close = close


def _keep_file_wrapper(response: _Response, body: Any) -> Iterable[bytes]:
    """Keep the server's sendfile path: time the file until the server closes it."""
    original = getattr(body, "close", None)
    try:
        body.close = response.close
    except Exception:  # a wrapper with __slots__: wrap it like any body
        return response
    response.body = _FileClose(original)  # type: ignore[assignment]
    return body  # type: ignore[no-any-return]


_new = object.__new__


def _report_fault(mw: EventmonMiddleware, exc: BaseException, where: str) -> None:
    """Log and count a fault the C response caught while recording a request."""
    try:
        raise exc
    except Exception:
        mw.collector.internal_error(where)


_native_response: Callable[..., Any] | None = None
_RECORDED: tuple[type, ...] = (_Response,)  # the response types that record a request
if speedups is not None:
    speedups.configure_wsgi(
        _CODES, _status_code, _report_fault, ENDPOINT_KEY, UNMATCHED, FALLBACK_METHOD
    )
    _native_response = speedups.wsgi_response
    _RECORDED = (_Response, speedups.WSGIResponse)
