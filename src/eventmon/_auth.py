"""Access tokens: checked once at start-up, compared in constant time per request.

The dashboard and the metrics page (in every adapter, and on the separate
metrics server) share these, so both accept and refuse exactly the same way.
"""

from __future__ import annotations

import hmac

from eventmon._exceptions import ConfigurationError

__all__ = ["bearer_credentials", "check_token", "token_matches"]


def check_token(token: object, what: str, *, header: bool = False) -> bytes | None:
    """``token`` as bytes for :func:`token_matches`; ``None`` for no token.

    Anything but a non-empty string is a ConfigurationError naming ``what``.
    ``header=True``: the token only ever travels in an ``Authorization``
    header, so it must be visible ASCII (servers decode headers as Latin-1 and
    strip spaces, which would make another token never match).
    """
    if token is None:
        return None
    if not isinstance(token, str) or not token:
        raise ConfigurationError(f"{what} must be a non-empty string or None, got {token!r}")
    if header and not all("!" <= ch <= "~" for ch in token):
        raise ConfigurationError(
            f"{what} must be printable ASCII without spaces (it travels in an Authorization"
            " header); secrets.token_urlsafe() makes a good one"
        )
    return token.encode("utf-8")


def bearer_credentials(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def token_matches(expected: bytes | None, offered: str | None) -> bool:
    """Whether ``offered`` is the token (always true when none is set); constant time."""
    if expected is None:
        return True
    if offered is None:
        return False
    return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), expected)
