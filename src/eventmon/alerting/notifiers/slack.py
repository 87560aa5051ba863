"""Slack incoming webhooks.

Uses the standard library rather than ``slack_sdk``: a webhook is one JSON
POST, and the SDK's only extra here (its 429 retry handler) is what the
dispatcher already does for every channel, honouring ``Retry-After``.
"""

from __future__ import annotations

from eventmon.alerting.notifiers._http import check_url, post_json
from eventmon.alerting.notifiers.base import AlertNotice, Notification, format_text

__all__ = ["SlackNotifier"]

_COLORS = {"critical": "#d7263d", "warning": "#f4a261", "info": "#457b9d"}
_RESOLVED = "#2a9d8f"


class SlackNotifier:
    """Posts to a Slack incoming webhook URL.

    Args:
        webhook_url: ``https://hooks.slack.com/services/...``.
        channel, username, icon_emoji: overrides, if the webhook allows them.
        name: the channel's name in logs and stats.
    """

    def __init__(
        self,
        webhook_url: str,
        *,
        channel: str | None = None,
        username: str | None = None,
        icon_emoji: str | None = None,
        name: str = "slack",
    ) -> None:
        self.url = check_url(webhook_url, "webhook_url")
        self.channel = channel
        self.username = username
        self.icon_emoji = icon_emoji
        self.name = name

    def payload(self, n: Notification) -> dict[str, object]:
        """The JSON body for one notification."""
        subject, body = format_text(n)
        if isinstance(n, AlertNotice):
            color = _RESOLVED if n.status == "resolved" else _COLORS.get(n.severity, "#6c757d")
            fields = [
                {"title": "severity", "value": n.severity, "short": True},
                {"title": "status", "value": n.status, "short": True},
            ]
            if n.value is not None:
                fields.append({"title": "value", "value": f"{n.value:g}", "short": True})
        else:
            color = "#457b9d"
            fields = [{"title": "reason", "value": n.reason or "-", "short": False}]
        out: dict[str, object] = {
            "text": subject,
            "attachments": [{"color": color, "title": subject, "text": body, "fields": fields}],
        }
        if self.channel:
            out["channel"] = self.channel
        if self.username:
            out["username"] = self.username
        if self.icon_emoji:
            out["icon_emoji"] = self.icon_emoji
        return out

    def send(self, notification: Notification, timeout: float) -> None:
        post_json(self.url, self.payload(notification), timeout)
