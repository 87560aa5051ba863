"""Alerting: rules over the collector's metrics, a Prometheus-style state machine, notifiers.

Example::

    from eventmon.alerting import AlertEngine, default_rules
    from eventmon.alerting.notifiers import EmailNotifier

    engine = AlertEngine(collector, default_rules(), notifiers=[EmailNotifier(...)])
    engine.start()
"""

from __future__ import annotations

from eventmon.alerting.notifiers.base import AlertNotice, Notifier, ScalingEvent

__all__ = ["AlertNotice", "Notifier", "ScalingEvent"]
