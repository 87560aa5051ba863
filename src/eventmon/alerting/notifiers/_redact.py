"""URLs with their secrets cut off, for logs and stats.

A Slack or webhook URL is a credential (its path is the token), so errors name
the scheme and host only: ``https://hooks.slack.com/…``.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["redact_url", "redact_urls"]


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/…``: scheme and host only; path, query and login dropped."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<url>"
    if not parts.scheme or not host:
        return "<url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{'' if port is None else f':{port}'}/…"


_URL = re.compile(r"""\b([a-z][a-z0-9+.-]*://)([^\s/?#'"<>]*)([^\s'"<>]*)""", re.IGNORECASE)


def _redact_match(m: re.Match[str]) -> str:
    scheme, netloc, rest = m.groups()
    host = netloc.rpartition("@")[2]
    # Already redacted text keeps what follows the ellipsis (": no_service").
    return f"{scheme}{host}{rest if rest.startswith('/…') else '/…'}"


def redact_urls(text: str) -> str:
    """``text`` with every URL in it cut to its scheme and host, as :func:`redact_url` does."""
    return _URL.sub(_redact_match, text)
