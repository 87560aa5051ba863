"""POST JSON with the standard library (no HTTP client dependency for users).

Each POST runs under a :class:`~eventmon.alerting.notifiers._deadline.Deadline`
(``timeout`` bounds the whole exchange, not each read), and error messages
carry the URL's scheme and host only: webhook URLs are secrets.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon.alerting.notifiers._deadline import Deadline
from eventmon.alerting.notifiers._redact import redact_url
from eventmon.alerting.notifiers.dispatcher import RetryAfter

__all__ = ["HTTPError", "check_url", "post_json"]


class HTTPError(Exception):
    """The server answered with a status other than 2xx."""

    def __init__(self, status: int, body: str, url: str) -> None:
        super().__init__(f"HTTP {status} from {redact_url(url)}: {body[:200]}")
        self.status = status


def check_url(url: str, what: str) -> str:
    """``url`` if it is http(s); ConfigurationError otherwise."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        # Only the start: the rest of a mistyped webhook URL is still its secret.
        shown = repr(url[:12] + "…") if isinstance(url, str) and len(url) > 12 else repr(url)
        raise ConfigurationError(f"{what} must be an http:// or https:// URL, got {shown}")
    netloc = urllib.parse.urlsplit(url).netloc
    if "@" in netloc:
        # urllib cannot send user:password@host (delivery would fail every time); the
        # credentials are a secret, so none of the URL is shown.
        raise ConfigurationError(
            f"{what} must not carry credentials (user:password@host): send them in an"
            " Authorization header instead (WebhookNotifier(headers=...))"
        )
    if not netloc:
        raise ConfigurationError(f"{what} has no host: give the full URL, https://host/path")
    return url


def _connection(deadline: Deadline, cls: type[http.client.HTTPConnection]) -> Any:
    """A connection factory for ``do_open`` whose sockets ``deadline`` opens and watches."""

    def create_connection(
        address: tuple[str, int], timeout: object = None, source: tuple[str, int] | None = None
    ) -> socket.socket:
        return deadline.connect(address, source)

    def connection(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        conn = cls(host, **kwargs)
        # http.client opens every socket through this attribute, proxy tunnels included.
        conn._create_connection = create_connection  # type: ignore[attr-defined]
        return conn

    return connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection(self.deadline, http.client.HTTPConnection), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    # The default TLS context, as urllib.request.urlopen's own handler uses.
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection(self.deadline, http.client.HTTPSConnection), req)


def _retry_after(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # an HTTP date
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return max(0.0, when - time.time())
    except (TypeError, ValueError):
        return default


def post_json(
    url: str, payload: Any, timeout: float, headers: Mapping[str, str] | None = None
) -> bytes:
    """POST ``payload`` as JSON; raise RetryAfter on 429/503 with Retry-After, HTTPError else."""
    data = json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("User-Agent", "eventmon-alerting")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with Deadline(timeout) as deadline:
        opener = urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline))
        try:
            with opener.open(req, timeout=timeout) as resp:
                body: bytes = resp.read()
                return body
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            retry = e.headers.get("Retry-After") if e.headers else None
            e.close()
            if e.code == 429 or (e.code == 503 and retry):
                raise RetryAfter(
                    _retry_after(retry, 1.0), f"HTTP {e.code} from {redact_url(url)}"
                ) from None
            raise HTTPError(e.code, text, url) from None
