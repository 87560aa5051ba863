"""Alerting: rules over the collector's metrics, a Prometheus-style state machine, notifiers.

Example::

    from eventmon.alerting import AlertEngine, default_rules
    from eventmon.alerting.notifiers import EmailNotifier

    engine = AlertEngine(collector, default_rules(), notifiers=[EmailNotifier(...)])
    engine.start()

The notifier classes live in :mod:`eventmon.alerting.notifiers`; this package
imports no third-party library.
"""

from __future__ import annotations

from eventmon.alerting.engine import AlertEngine, AlertStatus
from eventmon.alerting.expr import Condition, MetricInfo, parse
from eventmon.alerting.metrics import (
    BUILTIN_METRICS,
    RuleMetrics,
    count_db_connection_error,
    instrument_sqlalchemy,
)
from eventmon.alerting.notifiers.base import AlertNotice, Notifier, ScalingEvent
from eventmon.alerting.notifiers.dispatcher import NotificationDispatcher
from eventmon.alerting.rules import (
    AlertRule,
    default_rules,
    format_duration,
    load_rules,
    parse_duration,
    rules_from_data,
)

__all__ = [
    "BUILTIN_METRICS",
    "AlertEngine",
    "AlertNotice",
    "AlertRule",
    "AlertStatus",
    "Condition",
    "MetricInfo",
    "NotificationDispatcher",
    "Notifier",
    "RuleMetrics",
    "ScalingEvent",
    "count_db_connection_error",
    "default_rules",
    "format_duration",
    "instrument_sqlalchemy",
    "load_rules",
    "parse",
    "parse_duration",
    "rules_from_data",
]
