"""The dashboard's framework-neutral core: routing, token check, JSON documents.

The ASGI and WSGI apps (:mod:`eventmon.dashboard.asgi`, :mod:`eventmon.dashboard.wsgi`)
only translate their protocol into :meth:`Dashboard.handle` and
:meth:`Dashboard.stream_event` calls, so both serve exactly the same API.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from eventmon import __version__
from eventmon._auth import bearer_credentials, check_token, token_matches
from eventmon._exceptions import ConfigurationError
from eventmon.collector import MetricsCollector, default_collector
from eventmon.core._native import ACCELERATOR, REASON
from eventmon.snapshot import RealtimeMetrics
from eventmon.types import Clock

if TYPE_CHECKING:
    from eventmon.alerting._merged import MergedSampler
    from eventmon.exporters.multiprocess import MergedView

__all__ = ["API_VERSION", "Dashboard", "Provider", "Response"]

logger = logging.getLogger("eventmon.dashboard")

#: Bumped when a field of the JSON API changes meaning or disappears.
API_VERSION = 1

#: A callable returning JSON-able data (a list of alerts, scaling events, a forecast).
Provider = Callable[[], Any]

_STATIC = {
    "": ("index.html", "text/html; charset=utf-8"),
    "index.html": ("index.html", "text/html; charset=utf-8"),
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "style.css": ("style.css", "text/css; charset=utf-8"),
}
_SORT_KEYS = ("endpoint", "count", "errors", "error_rate", "mean_ms", "p50_ms", "p95_ms", "p99_ms")
_MAX_PER_PAGE = 500


@dataclass(frozen=True, slots=True)
class Response:
    """A finished response: status, headers, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _json_response(status: int, doc: Any) -> Response:
    body = json.dumps(doc, separators=(",", ":"), default=_json_default, allow_nan=False).encode()
    return Response(
        status,
        (
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
            ("content-length", str(len(body))),
        ),
        body,
    )


def _json_default(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _round(x: float, digits: int = 3) -> float:
    return round(_finite(float(x)), digits)


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
        self._merged: MergedSampler | None = None
        self._view: tuple[float, MergedView] | None = None

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
            rt = self.collector.get_realtime_metrics()
            endpoints = len(self.collector.endpoints())
        else:
            rt = self._merged_realtime(view, now)
            endpoints = len(view.endpoints())
        doc: dict[str, Any] = {
            "apiVersion": API_VERSION,
            **{k: (_round(v) if isinstance(v, float) else v) for k, v in rt.to_dict().items()},
            "endpointCount": endpoints,
            # Worker aggregation: the figures are every worker's, merged.
            "aggregated": view is not None,
            "workers": view.workers if view is not None else 1,
            "uptimeSeconds": _round(time.time() - self.collector.started, 1),
            # Which eventmon, and whether its C accelerator runs ("c") or not ("python").
            "version": __version__,
            "accelerator": ACCELERATOR,
            "acceleratorReason": REASON,
        }
        with self._lock:
            self._snap = (now, doc)
            if now - self._last_sample >= self.sample_interval:
                self._last_sample = now
                self._history.append(
                    {
                        "t": doc["timestamp"],
                        "rps": doc["requestsPerSecond"],
                        "avg": doc["averageResponseTime"],
                        "p50": doc["p50ResponseTime"],
                        "p95": doc["p95ResponseTime"],
                        "p99": doc["p99ResponseTime"],
                        "errorRate": doc["errorRate"],
                        "active": doc["activeConnections"],
                        "cpu": doc["cpuUsage"],
                        "memory": doc["memoryUsage"],
                    }
                )
        return doc

    def merged_view(self) -> MergedView | None:
        """Every worker merged (cached briefly) under worker aggregation, else None."""
        agg = self.collector.multiprocess
        if agg is None:
            return None
        now = self.clock()
        with self._lock:
            cached = self._view
            if cached is not None and now - cached[0] < min(0.5, self.stream_interval / 2):
                return cached[1]
        view: MergedView = agg.view()
        with self._lock:
            self._view = (now, view)
        return view

    def _merged_realtime(self, view: MergedView, now: float) -> RealtimeMetrics:
        from eventmon.alerting._merged import MergedSampler

        window = float(self.collector.window_seconds)
        with self._lock:
            if self._merged is None:
                # A sample per 1/12 window is plenty for a window's rate; not one per call.
                self._merged = MergedSampler(window, step=window / 12)
            return self._merged.realtime(view, now)

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
        source: Any = self.collector if view is None else view
        agg: dict[str, list[float]] = {}
        for s in source.series():
            row = agg.get(s.endpoint)
            if row is None:
                row = agg[s.endpoint] = [0, 0, 0.0]
            row[0] += s.count
            row[2] += s.sum
            if s.status_code.isdigit() and int(s.status_code) >= 500:
                row[1] += s.count
        quantiles = tuple(source.quantiles)
        pct = source.endpoint_percentiles()
        idx = {q: quantiles.index(q) for q in (0.5, 0.95, 0.99) if q in quantiles}
        rows: list[dict[str, Any]] = []
        for endpoint, (count, errors, total) in agg.items():
            values = pct.get(endpoint)
            row_doc: dict[str, Any] = {
                "endpoint": endpoint,
                "count": int(count),
                "errors": int(errors),
                "error_rate": _round(errors / count, 4) if count else 0.0,
                "mean_ms": _round(total / count * 1000.0) if count else 0.0,
            }
            for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
                i = idx.get(q)
                row_doc[key] = (
                    _round(values[i] * 1000.0) if values is not None and i is not None else None
                )
            if idx.get(0.95) is None:
                row_doc["p95_ms"] = _round(source.histogram(endpoint).percentile(95) * 1000.0)
            rows.append(row_doc)
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
        rows = self.endpoint_rows()
        if q:
            needle = q.lower()
            rows = [r for r in rows if needle in r["endpoint"].lower()]
        reverse = order != "asc"
        if sort == "endpoint":
            rows = sorted(rows, key=lambda r: r["endpoint"], reverse=reverse)
        else:
            rows = sorted(
                rows,
                key=lambda r: (r[sort] is not None, r[sort] or 0, r["endpoint"]),
                reverse=reverse,
            )
        total = len(rows)
        pages = max(1, math.ceil(total / per_page))
        page = min(max(1, page), pages)
        start = (page - 1) * per_page
        return {
            "total": total,
            "page": page,
            "pages": pages,
            "perPage": per_page,
            "sort": sort,
            "order": "desc" if reverse else "asc",
            "endpoints": rows[start : start + per_page],
        }

    def _provided(self, provider: Provider | None, where: str) -> dict[str, Any]:
        if provider is None:
            return {"available": False, "data": None}
        try:
            data = provider()
            json.dumps(data, default=_json_default, allow_nan=False)  # fail here, not mid-stream
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
            data = json.dumps(doc, separators=(",", ":"), default=_json_default, allow_nan=False)
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
        return _UNAUTHORIZED

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
                body = _LOGIN_PAGE.encode()
                return Response(
                    401,
                    (("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")),
                    body,
                )
            return _UNAUTHORIZED
        try:
            return self._route(subpath, query, static)
        except _BadRequest as exc:
            return _json_response(400, {"error": str(exc)})
        except Exception:
            self.collector.internal_error("dashboard.api")
            return _json_response(500, {"error": "eventmon could not answer this request"})

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
            if _flag(query, "history"):
                doc = {**doc, "history": self.history()}
            return _json_response(200, doc)
        if subpath == "api/history":
            return _json_response(200, {"history": self.history()})
        if subpath == "api/endpoints":
            sort = _one(query, "sort", "count")
            if sort not in _SORT_KEYS:
                raise _BadRequest(f"sort must be one of {', '.join(_SORT_KEYS)}")
            order = _one(query, "order", "desc")
            if order not in ("asc", "desc"):
                raise _BadRequest("order must be 'asc' or 'desc'")
            page = _int(query, "page", 1, 1, 1_000_000)
            per_page = _int(query, "per_page", 50, 1, _MAX_PER_PAGE)
            return _json_response(
                200,
                self.endpoints_page(
                    page=page, per_page=per_page, sort=sort, order=order, q=_one(query, "q", "")
                ),
            )
        if subpath == "api/alerts":
            return _json_response(200, self.alerts())
        if subpath == "api/scaling":
            return _json_response(200, self.scaling())
        if subpath == "api/forecast":
            return _json_response(200, self.forecast())
        return _json_response(404, {"error": f"no such dashboard resource: {subpath!r}"})

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


_UNAUTHORIZED = Response(
    401,
    (("content-type", "application/json"), ("www-authenticate", 'Bearer realm="eventmon"')),
    b'{"error":"a valid token is required (?token= or Authorization: Bearer)"}',
)


class _BadRequest(Exception):
    pass


def _one(query: Mapping[str, list[str]], key: str, default: str) -> str:
    values = query.get(key)
    return values[0] if values else default


def _flag(query: Mapping[str, list[str]], key: str) -> bool:
    return _one(query, key, "0").lower() in ("1", "true", "yes")


def _int(query: Mapping[str, list[str]], key: str, default: int, lo: int, hi: int) -> int:
    raw = _one(query, key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{key} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise _BadRequest(f"{key} must be between {lo} and {hi}, got {value}")
    return value


_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>eventmon: token required</title>
<style>body{font:16px system-ui,sans-serif;margin:4rem auto;max-width:28rem;color:#222}
input,button{font:inherit;padding:.4rem}</style></head><body>
<h1>eventmon</h1><p>This dashboard needs a token.</p>
<form method="get"><input name="token" type="password" placeholder="token" autofocus>
<button>Open</button></form></body></html>
"""
