"""A generic JSON webhook: one POST per notification."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventmon.alerting.notifiers._http import check_url, post_json
from eventmon.alerting.notifiers.base import AlertNotice, Notification

__all__ = ["WebhookNotifier", "notification_to_dict"]


def notification_to_dict(n: Notification) -> dict[str, Any]:
    """A JSON-ready dict: ``kind`` is ``"alert"`` or ``"scaling"``."""
    if isinstance(n, AlertNotice):
        return {
            "kind": "alert",
            "name": n.name,
            "status": n.status,
            "severity": n.severity,
            "summary": n.summary,
            "condition": n.condition,
            "value": n.value,
            "labels": dict(n.labels),
            "annotations": dict(n.annotations),
            "startsAt": n.starts_at,
            "endsAt": n.ends_at,
            "repeat": n.repeat,
        }
    return {
        "kind": "scaling",
        "from": n.from_instances,
        "to": n.to_instances,
        "direction": n.direction,
        "reason": n.reason,
        "duration": n.duration,
        "at": n.at,
        "summary": n.summary,
        "labels": dict(n.labels),
        "error": n.error,
    }


class WebhookNotifier:
    """POSTs each notification as JSON (see :func:`notification_to_dict`) to ``url``."""

    def __init__(
        self, url: str, *, headers: Mapping[str, str] | None = None, name: str = "webhook"
    ) -> None:
        self.url = check_url(url, "url")
        self.headers = dict(headers or {})
        self.name = name

    def send(self, notification: Notification, timeout: float) -> None:
        post_json(self.url, notification_to_dict(notification), timeout, self.headers)
