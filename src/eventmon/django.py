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

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpResponse

from eventmon import _django_stream
from eventmon._adapter import AdapterOptions, metrics_response
from eventmon._django_settings import dashboard_from_settings, read_settings
from eventmon._django_stream import Stream, content_length, timed_async, timed_sync
from eventmon.collector import MetricsCollector
from eventmon.core.exemplars import current_trace, request_trace_id
from eventmon.core.registry import UNMATCHED

__all__ = ["EventmonMiddleware", "metrics_view"]

#: Status recorded when the client went away before a streaming response's last chunk.
CLIENT_CLOSED = _django_stream.CLIENT_CLOSED

#: Method label of a request without one (a fault upstream).
FALLBACK_METHOD = "other"


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
    collector, options = read_settings()
    return _metrics(request, collector, options)


class EventmonMiddleware:
    """Records every request Django serves in a :class:`~eventmon.MetricsCollector`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.collector, self.options = read_settings()
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
        self._dashboard = dashboard_from_settings(self.collector)
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
        stream = Stream(self, token, request, start, response.status_code)
        try:
            # Recorded when the response is closed, which Django's handlers and WSGI
            # servers do once the body is out. (Django's own list of closers: a plain
            # function there keeps the response free of reference cycles.)
            closers = getattr(response, "_resource_closers", None)
            if closers is not None:
                closers.append(stream.closed)
                if getattr(response, "file_to_stream", None) is not None:
                    if stream.sent is not None:
                        stream.sent = content_length(response.get("Content-Length"))
                    # A FileResponse: leave it whole, so that a WSGI server can still
                    # sendfile() it; it is timed until the server closes it.
                    return
            # And at the last chunk, or at an error or a disconnect while streaming.
            wrap = timed_async if response.is_async else timed_sync
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
                    received = content_length(request.META.get("CONTENT_LENGTH"))
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
