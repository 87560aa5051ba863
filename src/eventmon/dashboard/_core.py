"""The dashboard's framework-neutral core: the :class:`Dashboard`, its token check and routing.

The ASGI, WSGI and Django apps (:mod:`eventmon.dashboard.asgi`, :mod:`eventmon.dashboard.wsgi`,
:mod:`eventmon.dashboard.django`) only translate their protocol into :meth:`Dashboard.handle`
and :meth:`Dashboard.stream_event` calls, so all serve exactly the same API. The JSON
documents are built in :mod:`._documents`, the HTTP pieces live in :mod:`._http`, and the
merged figures under worker aggregation come from :mod:`._merged`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from eventmon._auth import bearer_credentials, check_token, token_matches
from eventmon._exceptions import ConfigurationError
from eventmon.collector import MetricsCollector, default_collector
from eventmon.dashboard import _documents
from eventmon.dashboard._documents import API_VERSION, SORT_KEYS
from eventmon.dashboard._http import (
    LOGIN_PAGE,
    UNAUTHORIZED,
    BadRequest,
    Response,
    dumps,
    flag,
    integer,
    json_response,
    one,
)
from eventmon.dashboard._merged import MergedFigures
from eventmon.types import Clock

if TYPE_CHECKING:
    from eventmon.exporters.multiprocess import MergedView

__all__ = ["API_VERSION", "Dashboard", "Provider", "Response"]

logger = logging.getLogger("eventmon.dashboard")

#: A callable returning JSON-able data (a list of alerts, scaling events, a forecast).
Provider = Callable[[], Any]

_STATIC = {
    "": ("index.html", "text/html; charset=utf-8"),
    "index.html": ("index.html", "text/html; charset=utf-8"),
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "style.css": ("style.css", "text/css; charset=utf-8"),
}
_MAX_PER_PAGE = 500


class Dashboard:
    """The built-in dashboard: a page, a JSON API and a server-sent-events stream.

    Off unless an adapter is given one (``EventmonMiddleware(app, dashboard=True)``).

    Args:
        collector: the collector to show (default: the process-wide one).
        prefix: URL path it is served under; must start and end with ``/``.
        token: if set, every request needs ``?token=`` or ``Authorization: Bearer``.
        alerts_provider: ``() -> list`` of alerts (JSON-able dicts) with their state.
        scaling_provider: ``() -> dict | list`` of scaling state and recent events.
        forecast_provider: ``() -> dict | list``, the current forecast.
        stream_interval: seconds between two server-sent events.
        stream_endpoints: endpoints (busiest first) included in each streamed event.
        max_stream_seconds: a stream ends after this long; browsers reconnect by themselves.
        history_size: samples of the realtime snapshot kept for the charts.
        sample_interval: at most one history sample per this many seconds.
        clock: monotonic clock in seconds.

    Example::

        dash = Dashboard(token="s3cret", alerts_provider=engine.alerts)
        app = EventmonMiddleware(app, dashboard=dash)   # page at /eventmon/
    """

    def __init__(
        self,
        collector: MetricsCollector | None = None,
        *,
        prefix: str = "/eventmon/",
        token: str | None = None,
        alerts_provider: Provider | None = None,
        scaling_provider: Provider | None = None,
        forecast_provider: Provider | None = None,
        stream_interval: float = 1.0,
        stream_endpoints: int = 25,
        max_stream_seconds: float = 300.0,
        history_size: int = 600,
        sample_interval: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if not (isinstance(prefix, str) and prefix.startswith("/") and prefix.endswith("/")):
            raise ConfigurationError(
                f"dashboard prefix must start and end with '/', e.g. '/eventmon/'; got {prefix!r}"
            )
        expected_token = check_token(token, "dashboard token")
        for name, provider in (
            ("alerts_provider", alerts_provider),
            ("scaling_provider", scaling_provider),
            ("forecast_provider", forecast_provider),
        ):
            if provider is not None and not callable(provider):
                raise ConfigurationError(f"{name} must be a callable returning JSON-able data")
        if not stream_interval > 0:
            raise ConfigurationError(f"stream_interval must be > 0 seconds, got {stream_interval}")
        if not max_stream_seconds > 0:
            raise ConfigurationError("max_stream_seconds must be > 0")
        if stream_endpoints < 0 or history_size < 1:
            raise ConfigurationError("stream_endpoints must be >= 0 and history_size >= 1")
        self.collector = collector if collector is not None else default_collector()
        self.prefix = prefix
        self.alerts_provider = alerts_provider
        self.scaling_provider = scaling_provider
        self.forecast_provider = forecast_provider
        self.stream_interval = float(stream_interval)
        self.stream_endpoints = int(stream_endpoints)
        self.max_stream_seconds = float(max_stream_seconds)
        self.sample_interval = float(sample_interval)
        self.clock = clock
        self._token = expected_token
        self._history: deque[dict[str, float]] = deque(maxlen=history_size)
        self._lock = threading.Lock()
        self._snap: tuple[float, dict[str, Any]] | None = None
        self._table: tuple[float, list[dict[str, Any]]] | None = None
        self._last_sample = -math.inf
        self._static: dict[str, bytes] = {}
        self._merged = MergedFigures(self.collector, ttl=min(0.5, self.stream_interval / 2))

    # ----------------------------------------------------------------- access

    @property
    def protected(self) -> bool:
        """Whether a token is required."""
        return self._token is not None

    def authorized(self, query: Mapping[str, list[str]], authorization: str | None) -> bool:
        """Whether the request carries the token (constant-time comparison)."""
        if self._token is None:
            return True
        offered = bearer_credentials(authorization)
        if offered is None and query.get("token"):
            offered = query["token"][0]
        return token_matches(self._token, offered)

    # -------------------------------------------------------------- documents

    def snapshot(self) -> dict[str, Any]:
        """The realtime snapshot, cached for a fraction of a second, and sampled into history."""
        now = self.clock()
        with self._lock:
            cached = self._snap
            if cached is not None and now - cached[0] < min(0.5, self.stream_interval / 2):
                return cached[1]
        view = self.merged_view()
        if view is None:
            doc = _documents.snapshot(
                self.collector.get_realtime_metrics(),
                endpoint_count=len(self.collector.endpoints()),
                workers=None,
                started=self.collector.started,
            )
        else:
            doc = _documents.snapshot(
                self._merged.realtime(view, now),
                endpoint_count=len(view.endpoints()),
                workers=view.workers,
                started=self.collector.started,
            )
        with self._lock:
            self._snap = (now, doc)
            if now - self._last_sample >= self.sample_interval:
                self._last_sample = now
                self._history.append(_documents.history_point(doc))
        return doc

    def merged_view(self) -> MergedView | None:
        """Every worker merged (cached briefly) under worker aggregation, else None."""
        return self._merged.view(self.clock())

    def sample(self) -> None:
        """Take a history sample now if one is due (a host may call this periodically)."""
        try:
            self.snapshot()
        except Exception:
            self.collector.internal_error("dashboard.sample")

    def history(self) -> list[dict[str, float]]:
        """Past samples of the snapshot, oldest first."""
        with self._lock:
            return list(self._history)

    def endpoint_rows(self) -> list[dict[str, Any]]:
        """One row per endpoint (count, errors, error rate, mean and percentiles), cached 1 s."""
        now = self.clock()
        with self._lock:
            cached = self._table
            if cached is not None and now - cached[0] < 1.0:
                return cached[1]
        view = self.merged_view()
        rows = _documents.endpoint_rows(self.collector if view is None else view)
        with self._lock:
            self._table = (now, rows)
        return rows

    def endpoints_page(
        self,
        *,
        page: int = 1,
        per_page: int = 50,
        sort: str = "count",
        order: str = "desc",
        q: str = "",
    ) -> dict[str, Any]:
        """A sorted, filtered page of the endpoint table."""
        return _documents.endpoints_page(
            self.endpoint_rows(), page=page, per_page=per_page, sort=sort, order=order, q=q
        )

    def _provided(self, provider: Provider | None, where: str) -> dict[str, Any]:
        if provider is None:
            return {"available": False, "data": None}
        try:
            data = provider()
            dumps(data)  # fail here, not mid-stream
        except Exception:
            self.collector.internal_error(f"dashboard.{where}")
            return {"available": True, "data": None, "error": f"the {where} provider failed"}
        return {"available": True, "data": data}

    def alerts(self) -> dict[str, Any]:
        """``{"available", "data"}`` from the alerts provider."""
        return self._provided(self.alerts_provider, "alerts")

    def scaling(self) -> dict[str, Any]:
        """``{"available", "data"}`` from the scaling provider."""
        return self._provided(self.scaling_provider, "scaling")

    def forecast(self) -> dict[str, Any]:
        """``{"available", "data"}`` from the forecast provider."""
        return self._provided(self.forecast_provider, "forecast")

    def stream_event(self) -> bytes:
        """One server-sent event: snapshot, busiest endpoints, alerts, scaling, forecast."""
        try:
            rows = self.endpoint_rows()
            top = sorted(rows, key=lambda r: (-r["count"], r["endpoint"]))[: self.stream_endpoints]
            doc = {
                "snapshot": self.snapshot(),
                "endpoints": top,
                "endpointTotal": len(rows),
                "alerts": self.alerts(),
                "scaling": self.scaling(),
                "forecast": self.forecast(),
            }
            data = dumps(doc)
        except Exception:
            self.collector.internal_error("dashboard.stream")
            return b'event: error\ndata: {"error":"eventmon could not build the update"}\n\n'
        return f"event: update\ndata: {data}\n\n".encode()

    # ---------------------------------------------------------------- routing

    def is_stream(self, subpath: str) -> bool:
        """Whether ``subpath`` (the path below the prefix) is the event stream."""
        return subpath == "api/stream"

    def refuse(self, query_string: str, authorization: str | None) -> Response | None:
        """The 401 answer for a request without the right token, or ``None`` if it may pass."""
        if self.authorized(parse_qs(query_string), authorization):
            return None
        return UNAUTHORIZED

    def handle(
        self, method: str, subpath: str, query_string: str, authorization: str | None
    ) -> Response:
        """Answer one request for ``prefix + subpath`` (the stream excepted)."""
        query = parse_qs(query_string, keep_blank_values=False)
        if method not in ("GET", "HEAD"):
            return Response(
                405,
                (("allow", "GET, HEAD"), ("content-type", "text/plain")),
                b"Method Not Allowed\n",
            )
        static = _STATIC.get(subpath)
        # Script and stylesheet hold no data; the page and the API do.
        public = subpath in ("app.js", "style.css")
        if not public and not self.authorized(query, authorization):
            if static is not None and subpath in ("", "index.html"):
                body = LOGIN_PAGE.encode()
                return Response(
                    401,
                    (("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")),
                    body,
                )
            return UNAUTHORIZED
        try:
            return self._route(subpath, query, static)
        except BadRequest as exc:
            return json_response(400, {"error": str(exc)})
        except Exception:
            self.collector.internal_error("dashboard.api")
            return json_response(500, {"error": "eventmon could not answer this request"})

    def _route(
        self, subpath: str, query: Mapping[str, list[str]], static: tuple[str, str] | None
    ) -> Response:
        if static is not None:
            name, content_type = static
            return Response(
                200,
                (("content-type", content_type), ("cache-control", "no-cache")),
                self._asset(name),
            )
        if subpath == "api/snapshot":
            doc = self.snapshot()
            if flag(query, "history"):
                doc = {**doc, "history": self.history()}
            return json_response(200, doc)
        if subpath == "api/history":
            return json_response(200, {"history": self.history()})
        if subpath == "api/endpoints":
            sort = one(query, "sort", "count")
            if sort not in SORT_KEYS:
                raise BadRequest(f"sort must be one of {', '.join(SORT_KEYS)}")
            order = one(query, "order", "desc")
            if order not in ("asc", "desc"):
                raise BadRequest("order must be 'asc' or 'desc'")
            page = integer(query, "page", 1, 1, 1_000_000)
            per_page = integer(query, "per_page", 50, 1, _MAX_PER_PAGE)
            return json_response(
                200,
                self.endpoints_page(
                    page=page, per_page=per_page, sort=sort, order=order, q=one(query, "q", "")
                ),
            )
        if subpath == "api/alerts":
            return json_response(200, self.alerts())
        if subpath == "api/scaling":
            return json_response(200, self.scaling())
        if subpath == "api/forecast":
            return json_response(200, self.forecast())
        return json_response(404, {"error": f"no such dashboard resource: {subpath!r}"})

    def _asset(self, name: str) -> bytes:
        body = self._static.get(name)
        if body is None:
            body = (
                resources.files("eventmon.dashboard").joinpath("static").joinpath(name).read_bytes()
            )
            if name == "index.html":
                body = body.replace(b"{{PREFIX}}", self.prefix.encode())
            self._static[name] = body
        return body
