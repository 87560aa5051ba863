"""The metrics page as every framework adapter serves it: token check, method,
format negotiation, and a 500 rather than an exception when rendering fails.

Private: the adapters call :func:`metrics_response` for requests to their
``metrics_path`` and turn the :class:`MetricsPage` into their framework's response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from eventmon._auth import bearer_credentials, token_matches
from eventmon.exporters.prometheus import choose_format, render

if TYPE_CHECKING:
    from eventmon._adapter import AdapterOptions
    from eventmon.collector import MetricsCollector

__all__ = ["MetricsPage", "metrics_response"]


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
        body = render(
            collector,
            openmetrics=openmetrics,
            unit=options.unit,
            namespace=options.namespace,
            const_labels=options.const_labels,
            group_status_codes=options.group_status_codes,
        )
    except Exception:
        collector.internal_error(where)
        return _plain(500, b"eventmon could not render metrics\n")
    headers = (("Content-Type", content_type), ("Content-Length", str(len(body))))
    return MetricsPage(200, headers, b"" if method == "HEAD" else body)
