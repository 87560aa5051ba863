"""Email over SMTP (standard library ``smtplib``), with optional STARTTLS or TLS and login."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon._validate import integer
from eventmon.alerting.notifiers._deadline import Deadline
from eventmon.alerting.notifiers.base import Notification, format_text

__all__ = ["EmailNotifier"]


class _SMTP(smtplib.SMTP):
    """``smtplib.SMTP`` whose socket is opened, and cut off at expiry, by a Deadline."""

    deadline: Deadline

    def __init__(self, *args: Any, deadline: Deadline | None = None, **kwargs: Any) -> None:
        if deadline is not None:  # _SMTPS sets it itself; either way before __init__ connects
            self.deadline = deadline
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self.deadline.connect((host, port))


class _SMTPS(smtplib.SMTP_SSL, _SMTP):
    """TLS from the start: SMTP_SSL wraps the socket that ``_SMTP`` opened (the MRO's order)."""

    def __init__(self, host: str, port: int, *, deadline: Deadline, **kwargs: Any) -> None:
        self.deadline = deadline
        super().__init__(host, port, **kwargs)


class EmailNotifier:
    """Sends one plain-text email per notification.

    Args:
        host, port: the SMTP server.
        sender: the From address.
        recipients: the To addresses.
        starttls: upgrade the connection with STARTTLS before login.
        use_tls: connect with TLS from the start (port 465 style).
        username, password: log in if given.
        ssl_context: for certificate settings (default: system trust store).
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        recipients: Sequence[str],
        starttls: bool = False,
        use_tls: bool = False,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "email",
    ) -> None:
        if isinstance(recipients, str):
            recipients = [recipients]
        if not recipients:
            raise ConfigurationError("EmailNotifier needs at least one address in recipients=")
        if starttls and use_tls:
            raise ConfigurationError("choose starttls=True or use_tls=True, not both")
        if (username is None) != (password is None):
            raise ConfigurationError("give both username= and password=, or neither")
        self.host = host
        self.port = integer("port", port, minimum=1, maximum=65535)
        self.sender = sender
        self.recipients = list(recipients)
        self.starttls = starttls
        self.use_tls = use_tls
        self.username = username
        self.password = password
        self.ssl_context = ssl_context
        self.name = name

    def message(self, n: Notification) -> EmailMessage:
        subject, body = format_text(n)
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="eventmon")
        msg.set_content(body)
        return msg

    def send(self, notification: Notification, timeout: float) -> None:
        """Deliver one message; ``timeout`` bounds the whole SMTP conversation."""
        msg = self.message(notification)
        smtp: smtplib.SMTP
        with Deadline(timeout) as deadline:
            if self.use_tls:
                ctx = self.ssl_context or ssl.create_default_context()
                smtp = _SMTPS(self.host, self.port, deadline=deadline, timeout=timeout, context=ctx)
            else:
                smtp = _SMTP(self.host, self.port, timeout=timeout, deadline=deadline)
            with smtp:
                if self.starttls:
                    smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                if self.username is not None and self.password is not None:
                    smtp.login(self.username, self.password)
                smtp.send_message(msg)
