"""Pure ASGI middleware: Starlette, FastAPI, or any ASGI application.

One line::

    app.add_middleware(EventmonMiddleware)          # Starlette / FastAPI
    app = EventmonMiddleware(app)                   # any ASGI app

Per request it reads the clock twice, wraps ``send`` to see the status and the
final body message, and appends one entry to the collector's journal. The route
template is read from what Starlette's router leaves in the scope
(``scope["route"]``), so nothing is matched twice. Websocket and lifespan scopes
pass straight through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
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
from eventmon.core.exemplars import current_trace, request_trace_id
from eventmon.core.registry import UNMATCHED
from eventmon.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["EventmonMiddleware", "route_template"]

#: Status recorded when the client went away before the response was complete.
CLIENT_CLOSED = 499

#: Method label of a request whose scope has no method (a server at fault).
FALLBACK_METHOD = "other"


def _walk(routes: Iterable[Any], prefix: str, out: dict[int, tuple[Any, str]]) -> None:
    for route in routes:
        path = getattr(route, "path", "") or ""
        sub = getattr(route, "routes", None)
        if sub is not None and not hasattr(route, "endpoint"):
            # A Mount or Host: its routes sit under its path.
            try:
                _walk(sub, prefix + path, out)
            except Exception:  # a lazily built sub-app can fail to list its routes
                continue
        else:
            out[id(route)] = (route, prefix + path)


def route_template(app: Any) -> dict[int, tuple[Any, str]]:
    """Full route templates (mount prefixes included) keyed by ``id(route)``."""
    out: dict[int, tuple[Any, str]] = {}
    routes = getattr(app, "routes", None)
    if routes is None:
        router = getattr(app, "router", None)
        routes = getattr(router, "routes", None)
    if routes is not None:
        _walk(routes, "", out)
    return out


class _NoteTrace:
    """Notes the request's trace id for the collector's exemplars, then runs the app."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        # Route discovery (route_template) looks through to the wrapped app.
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = None
            try:
                for name, value in scope.get("headers", ()):
                    if name == b"traceparent":
                        header = value
                        break
                current_trace.set(request_trace_id(header))
            except Exception:  # a broken tracer must not fail the request
                current_trace.set(None)
        await self.app(scope, receive, send)


class EventmonMiddleware:
    """Records every HTTP request in a :class:`~eventmon.MetricsCollector`.

    Args:
        app: the ASGI application to wrap.
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
            ``{"tenant": tenant_of}``; each is called with the ASGI scope when the
            request ends and returns the value (``str()``-ed).
        unit: ``"s"`` (default) or ``"ms"`` for the histogram's exposition.
        endpoint_resolver: ``f(scope) -> str | None`` for apps without Starlette
            routing; ``None`` from it means unmatched.
        dashboard: serve the built-in dashboard: ``True`` for one on this
            collector at ``/eventmon/``, or a :class:`eventmon.dashboard.Dashboard`
            (prefix, token, providers); off by default. Not recorded as requests.
        exemplars: ``True`` notes each request's trace id (the active
            OpenTelemetry span's, else the ``traceparent`` header's) and turns
            exemplars on in the collector; ``None`` (default) follows
            ``collector.exemplars``. See :mod:`eventmon.core.exemplars`.
    """

    def __init__(
        self,
        app: ASGIApp,
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
        label_callbacks: Mapping[str, Callable[[Scope], object]] | None = None,
        unit: str = "s",
        endpoint_resolver: Callable[[Scope], str | None] | None = None,
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
        self.metrics_path = options.metrics_path
        self.unit = options.unit
        self.endpoint_resolver = endpoint_resolver
        self._extra = options.extra_labels
        if self._extra is not None:
            self.collector.use_extra_labels(self._extra.names)
            # Chosen here: without extra labels the request path is unchanged.
            self._endpoint = self._labelled_endpoint  # type: ignore[method-assign]
        if exemplars:
            self.collector.enable_exemplars()
        if self.collector.exemplars and exemplars is not False:
            # Noted in this task's context as the request enters the app, where
            # _finish (same task) reads it; off, the request path is unchanged.
            self.app = _NoteTrace(app)
        # Flattened for the request path.
        self._exact = options.exclude_exact
        self._prefixes = options.exclude_prefixes
        self._filtered = options.filters
        self._sized = options.size_metrics
        self._templates: dict[int, tuple[Any, str]] = {}
        self._root: Any = None
        self._dashboard: Any = None
        resolved = resolve_dashboard(dashboard, self.collector)
        if resolved is not None:
            from eventmon.dashboard import DashboardASGI

            self._dashboard = DashboardASGI(resolved)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One coroutine frame for the whole request: an inner helper coroutine
        # would cost about as much as everything else eventmon does.
        if scope["type"] != "http":
            try:
                await self.app(scope, receive, send)
            finally:
                if scope["type"] == "lifespan" and self.collector.multiprocess is not None:
                    # The server has drained its requests: write this worker's
                    # last state (uvicorn then dies by signal, skipping atexit).
                    self.collector.multiprocess.server_stopping()
            return
        path = scope["path"]
        if path == self.metrics_path:
            await self._serve_metrics(scope, send)
            return
        if self._dashboard is not None and self._dashboard.matches(path):
            await self._dashboard(scope, receive, send)
            return
        if (
            path in self._exact
            or (self._prefixes and path.startswith(self._prefixes))
            or (self._filtered and self._skipped(scope))
        ):
            await self.app(scope, receive, send)
            return
        collector = self.collector
        if self._root is None:
            self._root = scope.get("app", self.app)
        status = 0
        done = False
        disconnected = False
        sized = self._sized
        received = sent = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, done, sent
            kind = message["type"]
            if sized and kind == "http.response.body":
                sent += len(message.get("body", b""))
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body" and not message.get("more_body", False):
                await send(message)
                if not done:
                    done = True
                    endpoint = self._finish(token, scope, status, start)
                    if sized:
                        self._sizes(scope, endpoint, status, received, sent)
                return
            await send(message)

        async def receive_wrapper() -> Message:
            nonlocal disconnected, received
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            elif sized:
                received += len(message.get("body", b""))
            return message

        try:
            start = collector.clock()
            token = collector.begin()
        except Exception:
            collector.internal_error("asgi.begin")
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BaseException as exc:
            if not done:
                done = True
                # A cancelled task or a failed write means the client went away.
                client_gone = disconnected or isinstance(exc, (OSError, asyncio.CancelledError))
                code = CLIENT_CLOSED if client_gone else 500
                endpoint = self._finish(token, scope, code, start)
                if sized:
                    self._sizes(scope, endpoint, code, received, sent)
            raise
        else:
            if not done:
                # The app returned without finishing its response: the client went
                # away, or the server will answer 500 on the app's behalf.
                status = CLIENT_CLOSED if disconnected else (status or 500)
                endpoint = self._finish(token, scope, status, start)
                if sized:
                    self._sizes(scope, endpoint, status, received, sent)

    def _sizes(self, scope: Scope, endpoint: Any, status: int, received: int, sent: int) -> None:
        """Record body sizes (``size_metrics=True``): Content-Length, else the bytes read."""
        try:
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    received = max(int(value), 0)
                    break
            method = scope.get("method", FALLBACK_METHOD)
            self.collector.sizes.observe(method, endpoint, status, received, sent)
        except Exception:
            self.collector.internal_error("asgi.sizes")

    def _skipped(self, scope: Scope) -> bool:
        """Excluded by method or pattern (asked only when some are configured)."""
        pattern = self.options.exclude_pattern
        return scope.get("method") in self.options.exclude_methods or (
            pattern is not None and pattern.search(scope["path"]) is not None
        )

    def _finish(self, token: Any, scope: Scope, status: int, start: float) -> Any:
        # Called once per request, and ends it whatever fails: a resolver at fault
        # leaves the fallback labels (counted under asgi.endpoint); a fault while
        # recording is counted under asgi.observe. Neither reaches the app.
        # Returns the endpoint recorded, for the body sizes.
        method = FALLBACK_METHOD
        endpoint: Any = UNMATCHED
        try:
            method = scope["method"]
            endpoint = self._endpoint(scope)
        except Exception:
            self.collector.internal_error("asgi.endpoint")
        finally:
            try:
                self.collector.end(token, method, endpoint, status, start)
            except Exception:
                self.collector.internal_error("asgi.observe")
        return endpoint

    def _labelled_endpoint(self, scope: Scope) -> Any:
        """``(template, *extra label values)``: :meth:`_endpoint` with extra labels on."""
        extra = self._extra
        assert extra is not None
        return extra.asgi_key(EventmonMiddleware._endpoint(self, scope), scope, self.collector)

    def _endpoint(self, scope: Scope) -> Any:
        route = scope.get("route")
        if route is None:
            if self.endpoint_resolver is not None:
                return self.endpoint_resolver(scope) or UNMATCHED
            return UNMATCHED
        found = self._templates.get(id(route))
        if found is not None and found[0] is route:
            return found[1]
        return self._learn(route)

    def _learn(self, route: Any) -> str:
        """Find a route's full template (with mount prefixes) and remember it."""
        templates = route_template(self._root) if self._root is not None else {}
        found = templates.get(id(route))
        if found is None or found[0] is not route:
            # Not reachable from the root's routing table (added later, or a
            # non-Starlette router): its own path is the best we know.
            template = str(getattr(route, "path", "") or UNMATCHED)
            found = (route, template)
        if len(self._templates) < 10_000:
            self._templates.update(templates)
            self._templates[id(route)] = found
        return found[1]

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        accept = authorization = None
        for name, value in scope.get("headers", ()):
            if name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        page = metrics_response(
            self.collector,
            scope["method"],
            accept,
            authorization,
            options=self.options,
            where="asgi.metrics",
        )
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in page.headers]
        await send({"type": "http.response.start", "status": page.status, "headers": headers})
        await send({"type": "http.response.body", "body": page.body})
