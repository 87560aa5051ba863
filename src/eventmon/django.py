"""Django middleware, sync and async capable: one line in ``MIDDLEWARE``.

::

    MIDDLEWARE = [
        "eventmon.django.EventmonMiddleware",   # first, so it times everything
        ...
    ]
    EVENTMON = {"exclude_paths": ["/health"]}   # optional

Under ASGI the middleware runs on the event loop (no thread hop); under WSGI it
runs in the worker's thread. The endpoint label is the matched URL pattern,
``request.resolver_match.route`` with a leading ``/`` (``/events/<int:event_id>``);
requests that match no pattern share one label value. Streaming responses are
timed until their last chunk. An exception that escapes the view chain is
recorded once as 500 and re-raised.

``settings.EVENTMON`` keys: ``collector`` (a MetricsCollector or its dotted
import path), ``metrics_path`` (default ``"/metrics"``; ``None`` to serve the
page with :func:`metrics_view` from ``urls.py`` instead, or not at all),
``metrics_token`` (a bearer token the metrics page, or the view, requires), ``exclude_paths``,
``exclude_patterns``, ``exclude_methods``, ``namespace``, ``const_labels``,
``group_status_codes``, ``size_metrics``, ``header_labels``, ``label_callbacks`` (as the
WSGI middleware's arguments; a callback gets Django's ``HttpRequest``), ``unit``,
``dashboard`` (``True``, or a :class:`eventmon.dashboard.Dashboard` or its dotted
path: the built-in dashboard, served by the middleware under its prefix and not
recorded), ``dashboard_token`` (with ``dashboard: True``) and
``database_metrics`` (with ``"eventmon"`` in ``INSTALLED_APPS``: :mod:`eventmon.apps`).
Reading them touches no database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpResponse
from django.utils.module_loading import import_string

from eventmon._adapter import AdapterOptions, metrics_response, resolve_collector
from eventmon._exceptions import ConfigurationError
from eventmon.collector import MetricsCollector
from eventmon.core.exemplars import current_trace, request_trace_id
from eventmon.core.registry import UNMATCHED

__all__ = ["EventmonMiddleware", "metrics_view"]

# database_metrics is read by the eventmon app (eventmon.apps), not the middleware.
_KEYS = frozenset(
    {
        "collector",
        "metrics_path",
        "metrics_token",
        "exclude_paths",
        "exclude_patterns",
        "exclude_methods",
        "namespace",
        "const_labels",
        "group_status_codes",
        "size_metrics",
        "header_labels",
        "label_callbacks",
        "unit",
        "dashboard",
        "dashboard_token",
        "database_metrics",
    }
)
CLIENT_CLOSED = 499
#: Method label of a request without one (a fault upstream).
FALLBACK_METHOD = "other"


def _raw_settings() -> dict[str, Any]:
    raw = getattr(settings, "EVENTMON", None) or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"settings.EVENTMON must be a dict, got {type(raw).__name__}")
    return raw


def _settings() -> tuple[MetricsCollector, AdapterOptions]:
    raw = _raw_settings()
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigurationError(
            f"settings.EVENTMON has unknown keys {sorted(unknown)}; valid keys: {sorted(_KEYS)}"
        )
    collector = raw.get("collector")
    if isinstance(collector, str):
        try:
            collector = import_string(collector)
        except ImportError as e:
            raise ConfigurationError(f"settings.EVENTMON['collector']: {e}") from e
    collector = resolve_collector(collector, "settings.EVENTMON['collector']")
    options = AdapterOptions.build(
        metrics_path=raw.get("metrics_path", "/metrics"),
        metrics_token=raw.get("metrics_token"),
        exclude_paths=raw.get("exclude_paths", ()),
        exclude_patterns=raw.get("exclude_patterns", ()),
        exclude_methods=raw.get("exclude_methods", ()),
        namespace=raw.get("namespace"),
        const_labels=raw.get("const_labels"),
        group_status_codes=raw.get("group_status_codes", False),
        size_metrics=raw.get("size_metrics", False),
        header_labels=raw.get("header_labels"),
        label_callbacks=raw.get("label_callbacks"),
        unit=raw.get("unit", "s"),
        source="settings.EVENTMON",
    )
    return collector, options


def _dashboard(collector: MetricsCollector) -> Any:
    """The dashboard server settings ask for, or ``None`` (off by default)."""
    raw = _raw_settings()
    value = raw.get("dashboard")
    token = raw.get("dashboard_token")
    if value is None or value is False:
        if token is not None:
            raise ConfigurationError(
                "settings.EVENTMON['dashboard_token'] is set but the dashboard is off:"
                " add 'dashboard': True"
            )
        return None
    from eventmon.dashboard import Dashboard
    from eventmon.dashboard.django import DashboardDjango

    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as e:
            raise ConfigurationError(f"settings.EVENTMON['dashboard']: {e}") from e
    if value is True:
        value = Dashboard(collector, token=token)
    elif not isinstance(value, Dashboard):
        raise ConfigurationError(
            "settings.EVENTMON['dashboard'] must be True, False, an eventmon.dashboard.Dashboard"
            f" or its dotted path, got {value!r}"
        )
    elif token is not None:
        raise ConfigurationError(
            "settings.EVENTMON['dashboard_token'] only goes with 'dashboard': True;"
            " give your Dashboard its token=... instead"
        )
    return DashboardDjango(value)


def _metrics(request: Any, collector: MetricsCollector, options: AdapterOptions) -> Any:
    page = metrics_response(
        collector,
        request.method,
        request.headers.get("Accept"),
        request.headers.get("Authorization"),
        options=options,
        where="django.metrics",
    )
    response = HttpResponse(page.body, status=page.status)
    for name, value in page.headers:
        response[name] = value
    return response


def metrics_view(request: Any) -> Any:
    """The Prometheus page as a view: ``path("metrics", metrics_view)`` in ``urls.py``."""
    collector, options = _settings()
    return _metrics(request, collector, options)


class EventmonMiddleware:
    """Records every request Django serves in a :class:`~eventmon.MetricsCollector`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.collector, self.options = _settings()
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        self._metrics_path = self.options.metrics_path
        self._exact = self.options.exclude_exact
        self._prefixes = self.options.exclude_prefixes
        self._filtered = self.options.filters
        self._sized = self.options.size_metrics
        self._extra = self.options.extra_labels
        if self._extra is not None:
            self.collector.use_extra_labels(self._extra.names, where=" (settings.EVENTMON)")
        self._routes: dict[str, str] = {}
        self._dashboard = _dashboard(self.collector)
        if self.collector.exemplars:
            # A collector with exemplars on (EVENTMON["collector"]): note each
            # request's trace as it enters the view stack; off, nothing changes.
            self.get_response = _note_trace(get_response, self._async)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self.__acall__(request)
        path = request.path_info
        if path == self._metrics_path:
            return _metrics(request, self.collector, self.options)
        if self._dashboard is not None and self._dashboard.matches(path):
            return self._dashboard.respond(request)
        if (
            path in self._exact
            or (self._prefixes and path.startswith(self._prefixes))
            or (self._filtered and self._skipped(request))
        ):
            return self.get_response(request)
        collector = self.collector
        try:
            start = collector.clock()
            token = collector.begin()
        except Exception:
            collector.internal_error("django.begin")
            return self.get_response(request)
        try:
            response = self.get_response(request)
        except BaseException:
            self._finish(token, request, 500, start)
            raise
        if response.streaming:
            self._time_stream(token, request, response, start)
        elif self._sized:
            self._finish(token, request, response.status_code, start, len(response.content))
        else:
            self._finish(token, request, response.status_code, start)
        return response

    async def __acall__(self, request: Any) -> Any:
        path = request.path_info
        if path == self._metrics_path:
            return _metrics(request, self.collector, self.options)
        if self._dashboard is not None and self._dashboard.matches(path):
            return await self._dashboard.arespond(request)
        if (
            path in self._exact
            or (self._prefixes and path.startswith(self._prefixes))
            or (self._filtered and self._skipped(request))
        ):
            return await self.get_response(request)
        collector = self.collector
        try:
            start = collector.clock()
            token = collector.begin()
        except Exception:
            collector.internal_error("django.begin")
            return await self.get_response(request)
        try:
            response = await self.get_response(request)
        except BaseException:
            self._finish(token, request, 500, start)
            raise
        if response.streaming:
            self._time_stream(token, request, response, start)
        elif self._sized:
            self._finish(token, request, response.status_code, start, len(response.content))
        else:
            self._finish(token, request, response.status_code, start)
        return response

    def _skipped(self, request: Any) -> bool:
        """Excluded by method or pattern (asked only when some are configured)."""
        pattern = self.options.exclude_pattern
        return request.method in self.options.exclude_methods or (
            pattern is not None and pattern.search(request.path_info) is not None
        )

    def _time_stream(self, token: Any, request: Any, response: Any, start: float) -> None:
        stream = _Stream(self, token, request, start, response.status_code)
        try:
            # Recorded when the response is closed, which Django's handlers and WSGI
            # servers do once the body is out. (Django's own list of closers: a plain
            # function there keeps the response free of reference cycles.)
            closers = getattr(response, "_resource_closers", None)
            if closers is not None:
                closers.append(stream.closed)
                if getattr(response, "file_to_stream", None) is not None:
                    if stream.sent is not None:
                        stream.sent = _length(response.get("Content-Length"))
                    # A FileResponse: leave it whole, so that a WSGI server can still
                    # sendfile() it; it is timed until the server closes it.
                    return
            # And at the last chunk, or at an error or a disconnect while streaming.
            wrap = _timed_async if response.is_async else _timed_sync
            response.streaming_content = wrap(stream, response.streaming_content)
        except Exception:
            self.collector.internal_error("django.stream")
            stream.finish(stream.status)  # once, even if a closer was registered

    def _finish(
        self, token: Any, request: Any, status: int, start: float, sent: int | None = None
    ) -> None:
        # Called once per request, and ends it whatever fails: a fault finding the
        # route leaves the fallback labels (counted under django.endpoint); a fault
        # while recording is counted under django.observe. Neither reaches the app.
        method = FALLBACK_METHOD
        endpoint: Any = UNMATCHED
        try:
            method = request.method
            match = request.resolver_match
            if match is not None:
                route = match.route
                endpoint = self._routes.get(route) or self._learn(route)
            if self._extra is not None:
                endpoint = self._labelled(request, endpoint)
        except Exception:
            self.collector.internal_error("django.endpoint")
        finally:
            try:
                self.collector.end(token, method, endpoint, status, start)
                if sent is not None:  # size_metrics=True
                    received = _length(request.META.get("CONTENT_LENGTH"))
                    self.collector.sizes.observe(method, endpoint, status, received, sent)
            except Exception:
                self.collector.internal_error("django.observe")

    def _labelled(self, request: Any, endpoint: str) -> tuple[str, ...]:
        """``(template, *extra label values)``: headers from ``request.META``."""
        extra = self._extra
        assert extra is not None
        get = request.META.get
        headers = [get(h) for h in extra.wsgi_headers]
        return extra.key(endpoint, request, headers, self.collector)

    def _learn(self, route: str | None) -> str:
        # Django's route has no leading slash; a regex pattern keeps its own form.
        if not route:
            return UNMATCHED
        template = route if route.startswith("^") else "/" + route
        if len(self._routes) < 10_000:
            self._routes[route] = template
        return template


def _note_trace(get_response: Callable[[Any], Any], is_async: bool) -> Callable[[Any], Any]:
    """``get_response`` noting the request's trace id for the collector's exemplars."""

    def note(request: Any) -> None:
        try:
            current_trace.set(request_trace_id(request.META.get("HTTP_TRACEPARENT")))
        except Exception:  # a broken tracer must not fail the request
            current_trace.set(None)

    if is_async:

        async def traced_async(request: Any) -> Any:
            note(request)
            return await get_response(request)

        return traced_async

    def traced(request: Any) -> Any:
        note(request)
        return get_response(request)

    return traced


def _length(value: str | None) -> int:
    try:
        return max(int(value or 0), 0)
    except ValueError:
        return 0


class _Stream:
    """A streaming response in flight: recorded at its last chunk, or when closed."""

    __slots__ = (
        "done",
        "middleware",
        "request",
        "sent",
        "start",
        "started",
        "status",
        "token",
    )

    def __init__(
        self, middleware: EventmonMiddleware, token: Any, request: Any, start: float, status: int
    ) -> None:
        self.middleware = middleware
        self.token = token
        self.request = request
        self.start = start
        self.status = status
        self.started = False
        self.done = False
        #: Body bytes sent, counted with size_metrics=True (else None).
        self.sent: int | None = 0 if middleware._sized else None

    def finish(self, status: int) -> None:
        if not self.done:
            self.done = True
            self.middleware._finish(self.token, self.request, status, self.start, self.sent)

    def closed(self) -> None:
        # Closed after iteration began but before it ended: the client went away.
        self.finish(CLIENT_CLOSED if self.started else self.status)


def _timed_sync(stream: _Stream, content: Iterable[bytes]) -> Iterator[bytes]:
    stream.started = True
    try:
        if stream.sent is None:
            yield from content
        else:
            for chunk in content:
                stream.sent += len(chunk)
                yield chunk
    except GeneratorExit:
        stream.finish(CLIENT_CLOSED)
        raise
    except BaseException:
        stream.finish(500)
        raise
    stream.finish(stream.status)


async def _timed_async(stream: _Stream, content: Any) -> AsyncIterator[bytes]:
    stream.started = True
    try:
        async for chunk in content:
            if stream.sent is not None:
                stream.sent += len(chunk)
            yield chunk
    except (GeneratorExit, asyncio.CancelledError):
        stream.finish(CLIENT_CLOSED)
        raise
    except BaseException:
        stream.finish(500)
        raise
    stream.finish(stream.status)
