"""What every framework adapter shares: validated options, exclusions, the metrics page.

Private: the adapters (``wsgi``, ``flask``, ``django``) build one
:class:`AdapterOptions` at start-up, ask it per request whether a path is
excluded, and hand ``/metrics`` requests to :func:`metrics_response`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from eventmon._auth import bearer_credentials, check_token, token_matches
from eventmon._exceptions import ConfigurationError
from eventmon.collector import MetricsCollector, default_collector
from eventmon.exporters.prometheus import choose_format, render

__all__ = [
    "AdapterOptions",
    "MetricsPage",
    "check_endpoint_resolver",
    "metrics_response",
    "resolve_collector",
    "resolve_dashboard",
]


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    """Where metrics are served and who may read them, which paths are not recorded, the unit."""

    metrics_path: str | None = "/metrics"
    exclude_exact: frozenset[str] = frozenset()
    exclude_prefixes: tuple[str, ...] = ()
    unit: str = "s"
    metrics_token: bytes | None = None

    @classmethod
    def build(
        cls,
        *,
        metrics_path: str | None = "/metrics",
        exclude_paths: Iterable[str] = (),
        unit: str = "s",
        metrics_token: str | None = None,
        source: str = "",
    ) -> AdapterOptions:
        """Validate user settings; ``source`` names where they came from, for messages."""
        where = f" (in {source})" if source else ""
        token = check_token(metrics_token, f"metrics_token{where}", header=True)
        if metrics_path is not None and (
            not isinstance(metrics_path, str) or not metrics_path.startswith("/")
        ):
            raise ConfigurationError(
                f"metrics_path must start with '/' or be None, got {metrics_path!r}{where}"
            )
        if unit not in ("s", "ms"):
            raise ConfigurationError(f"unit must be 's' or 'ms', got {unit!r}{where}")
        if isinstance(exclude_paths, str):
            raise ConfigurationError(
                f"exclude_paths must be a list of paths, not one string{where}:"
                f" write [{exclude_paths!r}]"
            )
        excluded = list(exclude_paths)
        for p in excluded:
            if not isinstance(p, str) or not p.startswith("/"):
                raise ConfigurationError(
                    f"exclude_paths entries must start with '/', got {p!r}{where}"
                )
        return cls(
            metrics_path=metrics_path,
            exclude_exact=frozenset(p for p in excluded if not p.endswith("*")),
            exclude_prefixes=tuple(p[:-1] for p in excluded if p.endswith("*")),
            unit=unit,
            metrics_token=token,
        )

    def excluded(self, path: str) -> bool:
        """True if requests for ``path`` are not recorded (an entry ending in ``*`` is a prefix)."""
        return path in self.exclude_exact or (
            bool(self.exclude_prefixes) and path.startswith(self.exclude_prefixes)
        )


def check_endpoint_resolver(resolver: object) -> None:
    """Refuse an ``endpoint_resolver`` that cannot be called (at start-up, not per request)."""
    if resolver is not None and not callable(resolver):
        raise ConfigurationError(f"endpoint_resolver must be callable, got {resolver!r}")


def resolve_collector(collector: object, name: str = "collector") -> MetricsCollector:
    """The collector an adapter records into: ``collector``, or the process-wide one if ``None``.

    Anything but a :class:`~eventmon.MetricsCollector` is refused here, at start-up,
    rather than failing on the first request; ``name`` is the option's name for the message.
    """
    if collector is None:
        return default_collector()
    if not isinstance(collector, MetricsCollector):
        raise ConfigurationError(
            f"{name} must be an eventmon.MetricsCollector (or None for the process-wide"
            f" one), got {collector!r}"
        )
    return collector


class MetricsPage(NamedTuple):
    """The answer to a request for the metrics page."""

    status: int
    headers: tuple[tuple[str, str], ...]
    """Content-Type and Content-Length; WWW-Authenticate on a 401."""
    body: bytes
    """Empty for HEAD (Content-Length still says how long the page is)."""


def _plain(status: int, text: bytes, *extra: tuple[str, str]) -> MetricsPage:
    headers = (("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(text))))
    return MetricsPage(status, headers + extra, text)


_UNAUTHORIZED = _plain(
    401,
    b"a valid token is required: Authorization: Bearer <token>\n",
    ("WWW-Authenticate", 'Bearer realm="eventmon metrics"'),
)


def metrics_response(
    collector: MetricsCollector,
    method: str,
    accept: str | None,
    authorization: str | None,
    *,
    options: AdapterOptions,
    where: str,
) -> MetricsPage:
    """The metrics page for one request.

    With ``options.metrics_token`` set, a request without that bearer token gets
    a 401 (compared in constant time, as the dashboard does). GET and HEAD only;
    a fault while rendering is counted under ``where`` and answered with a 500,
    never raised into the host app.
    """
    if not token_matches(options.metrics_token, bearer_credentials(authorization)):
        return _UNAUTHORIZED
    if method not in ("GET", "HEAD"):
        return _plain(405, b"Method Not Allowed\n", ("Allow", "GET, HEAD"))
    openmetrics, content_type = choose_format(accept)
    try:
        body = render(collector, openmetrics=openmetrics, unit=options.unit)
    except Exception:
        collector.internal_error(where)
        return _plain(500, b"eventmon could not render metrics\n")
    headers = (("Content-Type", content_type), ("Content-Length", str(len(body))))
    return MetricsPage(200, headers, b"" if method == "HEAD" else body)


def resolve_dashboard(dashboard: Any, collector: MetricsCollector) -> Any:
    """The :class:`~eventmon.dashboard.Dashboard` an adapter's ``dashboard=`` asks for.

    ``None``/``False``: off (returns ``None``); ``True``: one on ``collector`` at
    ``/eventmon/``; a ``Dashboard``: that one. Anything else is a configuration error.
    """
    if dashboard is None or dashboard is False:
        return None
    from eventmon.dashboard import Dashboard

    if dashboard is True:
        return Dashboard(collector)
    if not isinstance(dashboard, Dashboard):
        raise ConfigurationError(
            f"dashboard must be True, False, None or a Dashboard, got {dashboard!r}"
        )
    return dashboard
