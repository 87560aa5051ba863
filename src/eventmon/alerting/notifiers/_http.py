"""POST JSON with the standard library (no HTTP client dependency for users)."""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon.alerting.notifiers.dispatcher import RetryAfter

__all__ = ["HTTPError", "check_url", "post_json"]


class HTTPError(Exception):
    """The server answered with a status other than 2xx."""

    def __init__(self, status: int, body: str, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:200]}")
        self.status = status


def check_url(url: str, what: str) -> str:
    """``url`` if it is http(s); ConfigurationError otherwise."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"{what} must be an http:// or https:// URL, got {url!r}")
    return url


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
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body: bytes = resp.read()
            return body
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        retry = e.headers.get("Retry-After") if e.headers else None
        e.close()
        if e.code == 429 or (e.code == 503 and retry):
            raise RetryAfter(_retry_after(retry, 1.0), f"HTTP {e.code} from {url}") from None
        raise HTTPError(e.code, text, url) from None
