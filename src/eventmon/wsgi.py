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

from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from eventmon import _wsgi_response
from eventmon._adapter import (
    AdapterOptions,
    check_endpoint_resolver,
    metrics_response,
    resolve_collector,
    resolve_dashboard,
)
from eventmon._exceptions import ConfigurationError

# The response objects (the Python reference of the C WSGIResponse) live in
# eventmon._wsgi_response. The request path reads them as globals of this module,
# and tests swap _native_response here (None: the Python reference).
from eventmon._wsgi_response import (
    _RECORDED,
    _CountingResponse,
    _CountingSizedResponse,
    _keep_file_wrapper,
    _native_response,
    _new,
    _Response,
    _SizedResponse,
    _SizedTraced,
    _Traced,
)
from eventmon.collector import MetricsCollector
from eventmon.core.exemplars import current_trace, request_trace_id
from eventmon.types import StartResponse, WSGIApp, WSGIEnviron

__all__ = ["ENDPOINT_KEY", "EventmonMiddleware"]

#: The environ key where an application may leave the request's route template.
ENDPOINT_KEY = _wsgi_response.ENDPOINT_KEY

#: Status recorded when the server stopped sending the body (the client went away).
CLIENT_CLOSED = _wsgi_response.CLIENT_CLOSED

#: Method label of a request whose environ has no REQUEST_METHOD (a server at fault).
FALLBACK_METHOD = _wsgi_response.FALLBACK_METHOD


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
        #: Read by the response objects (C and Python) when a request ends.
        self._label_key: Callable[[str, WSGIEnviron], Any] | None = None
        if self._extra is not None:
            self.collector.use_extra_labels(self._extra.names)
            self._label_key = self._label
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
        if options.filters or self._sized:
            # Patterns, methods and sizes need a look at every request: only when
            # configured, so the default path keeps its one startswith().
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
        return self._call_sized if self._sized else None

    def _label(self, endpoint: str, environ: WSGIEnviron) -> tuple[str, ...]:
        """The request's key with its extra label values: ``(template, *values)``."""
        assert self._extra is not None
        return self._extra.wsgi_key(endpoint, environ, self.collector)

    def _call_sized(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        """An instrumented request that also records body sizes (``size_metrics``).

        Always the Python response (the C one does not count bytes).
        """
        collector = self.collector
        try:
            start = collector.clock()
            token = collector.begin()
        except Exception:
            collector.internal_error("wsgi.begin")
            return self.app(environ, start_response)
        response = _new(_CountingResponse)
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
            response.__class__ = _CountingSizedResponse
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
