"""Alertmanager: ``POST /api/v2/alerts``, re-sent while firing as Alertmanager expects.

Alertmanager forgets an alert once its ``endsAt`` passes, so a client must keep
re-posting every alert that still fires (Prometheus does so every minute).
This channel remembers the firing alerts and re-posts them every
``resend_interval`` seconds with ``endsAt`` four intervals ahead; if the app
dies, the alerts then resolve in Alertmanager on their own. A resolved alert
is posted once with ``endsAt`` set to when it cleared. Scaling events are not
alerts and are not sent here.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon._validate import seconds
from eventmon.alerting.notifiers._http import check_url, post_json
from eventmon.alerting.notifiers.base import AlertNotice, Notification

__all__ = ["AlertmanagerNotifier"]


def _rfc3339(t: float) -> str:
    return (
        datetime.fromtimestamp(t, timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class AlertmanagerNotifier:
    """Posts alerts to one or more Alertmanagers (``http://host:9093``).

    Args:
        urls: base URL(s) of Alertmanager.
        resend_interval: seconds between re-posts of the firing alerts.
        generator_url: link back to your app (shown by Alertmanager).
        labels: added to every alert (e.g. ``{"instance": "web-1"}``).
    """

    def __init__(
        self,
        urls: str | list[str],
        *,
        resend_interval: float = 60.0,
        generator_url: str = "",
        labels: dict[str, str] | None = None,
        name: str = "alertmanager",
        wall_clock: Any = time.time,
    ) -> None:
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ConfigurationError("AlertmanagerNotifier needs at least one URL")
        # The dispatcher waits this long between re-sends: inf would kill its thread.
        self.resend_interval = seconds("resend_interval", resend_interval)
        self.urls = [check_url(u, "Alertmanager URL").rstrip("/") for u in urls]
        self.generator_url = generator_url
        self.labels = dict(labels or {})
        self.name = name
        self.wall_clock = wall_clock
        self._active: dict[str, AlertNotice] = {}
        self._lock = threading.Lock()

    def alert(self, n: AlertNotice) -> dict[str, Any]:
        """The Alertmanager API object for one notice."""
        labels = {"alertname": n.name, "severity": n.severity, **self.labels, **dict(n.labels)}
        if n.status == "resolved":
            ends = n.ends_at if n.ends_at is not None else self.wall_clock()
        else:
            ends = self.wall_clock() + 4 * self.resend_interval
        out: dict[str, Any] = {
            "labels": labels,
            "annotations": {"summary": n.summary, **dict(n.annotations)},
            "startsAt": _rfc3339(n.starts_at),
            "endsAt": _rfc3339(ends),
        }
        if self.generator_url:
            out["generatorURL"] = self.generator_url
        return out

    def _post(self, alerts: list[dict[str, Any]], timeout: float) -> None:
        errors = []
        for url in self.urls:
            try:
                post_json(url + "/api/v2/alerts", alerts, timeout)
            except Exception as e:
                errors.append(e)
        if len(errors) == len(self.urls):
            raise errors[0]

    def send(self, notification: Notification, timeout: float) -> None:
        if not isinstance(notification, AlertNotice):
            return
        with self._lock:
            if notification.status == "firing":
                self._active[notification.fingerprint] = notification
            else:
                self._active.pop(notification.fingerprint, None)
        self._post([self.alert(notification)], timeout)

    def active(self) -> list[AlertNotice]:
        with self._lock:
            return list(self._active.values())

    def resend(self, timeout: float) -> None:
        """Re-post every firing alert (the dispatcher calls this every resend_interval)."""
        alerts = [self.alert(n) for n in self.active()]
        if alerts:
            self._post(alerts, timeout)
