"""An in-memory feed of alert and scaling events for the built-in dashboard."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Any

from eventmon._validate import integer
from eventmon.alerting.notifiers.base import Notification
from eventmon.alerting.notifiers.webhook import notification_to_dict

__all__ = ["DashboardFeed"]


class DashboardFeed:
    """Keeps the last ``maxlen`` notifications; readers ask for what is newer than an id.

    Each event is the webhook's JSON dict plus an increasing ``id``::

        feed = DashboardFeed()
        events = feed.events(since=last_id)          # poll
        feed.wait(last_id, timeout=15)               # long-poll / server-sent events
    """

    def __init__(self, maxlen: int = 500, *, name: str = "dashboard") -> None:
        self.name = name
        self._events: deque[dict[str, Any]] = deque(maxlen=integer("maxlen", maxlen, minimum=1))
        self._ids = itertools.count(1)
        self._cond = threading.Condition()

    def send(self, notification: Notification, timeout: float) -> None:
        item = notification_to_dict(notification)
        with self._cond:
            item["id"] = next(self._ids)
            self._events.append(item)
            self._cond.notify_all()

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """Events with an id above ``since``, oldest first."""
        with self._cond:
            return [dict(e) for e in self._events if e["id"] > since]

    def latest_id(self) -> int:
        with self._cond:
            return int(self._events[-1]["id"]) if self._events else 0

    def wait(self, since: int, timeout: float) -> list[dict[str, Any]]:
        """Block up to ``timeout`` for events newer than ``since``; return them."""
        with self._cond:
            self._cond.wait_for(
                lambda: bool(self._events) and self._events[-1]["id"] > since, timeout
            )
        return self.events(since)
