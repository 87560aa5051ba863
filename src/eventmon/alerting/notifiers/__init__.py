"""Notification channels behind one Protocol, and the dispatcher that runs them."""

from __future__ import annotations

from eventmon.alerting.notifiers.alertmanager import AlertmanagerNotifier
from eventmon.alerting.notifiers.base import (
    AlertNotice,
    Notification,
    Notifier,
    ScalingEvent,
    ScalingNotifiable,
    format_text,
)
from eventmon.alerting.notifiers.dashboard import DashboardFeed
from eventmon.alerting.notifiers.dispatcher import ChannelStats, NotificationDispatcher, RetryAfter
from eventmon.alerting.notifiers.slack import SlackNotifier
from eventmon.alerting.notifiers.smtp import EmailNotifier
from eventmon.alerting.notifiers.webhook import WebhookNotifier, notification_to_dict

__all__ = [
    "AlertNotice",
    "AlertmanagerNotifier",
    "ChannelStats",
    "DashboardFeed",
    "EmailNotifier",
    "Notification",
    "NotificationDispatcher",
    "Notifier",
    "RetryAfter",
    "ScalingEvent",
    "ScalingNotifiable",
    "SlackNotifier",
    "WebhookNotifier",
    "format_text",
    "notification_to_dict",
]
