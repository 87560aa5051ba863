"""Notification channels behind one Protocol, and the dispatcher that runs them."""

from __future__ import annotations

from eventmon.alerting.notifiers.base import (
    AlertNotice,
    Notification,
    Notifier,
    ScalingEvent,
    ScalingNotifiable,
    format_text,
)

__all__ = [
    "AlertNotice",
    "Notification",
    "Notifier",
    "ScalingEvent",
    "ScalingNotifiable",
    "format_text",
]
