"""An alert's state: the record the engine steps, its published form, and a takeover.

:class:`AlertStatus` is what :meth:`~eventmon.alerting.AlertEngine.alerts` returns
and what a leading engine publishes (``alerts.json``) under worker aggregation;
:func:`adopt` lets the worker that takes over carry those states on instead of
starting every rule afresh (which re-sent every firing alert).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from eventmon.alerting.expr import Condition
from eventmon.alerting.rules import AlertRule

__all__ = ["Alert", "AlertStatus", "State", "adopt", "status_from_dict", "unknown"]

State = Literal["inactive", "pending", "firing", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """One rule's alert as of the last evaluation (times are Unix seconds)."""

    name: str
    state: State
    severity: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    value: float | None
    active_since: float | None  # when the condition last turned true
    fired_at: float | None
    last_notified: float | None
    resolved_at: float | None


@dataclass(slots=True)
class Alert:
    """One rule's alert as the engine steps it (times monotonic, ``wall`` Unix)."""

    rule: AlertRule
    condition: Condition
    state: State = "inactive"
    value: float | None = None
    active_since: float | None = None  # monotonic
    fired_at: float | None = None
    last_sent: float | None = None
    clear_since: float | None = None
    resolved_at: float | None = None
    wall: dict[str, float] = field(default_factory=dict)
    # Taken over from the previous leader (:func:`adopt`).
    adopted: bool = False


_STATES = ("inactive", "pending", "firing", "resolved")


def unknown(a: Alert, values: Mapping[str, float]) -> bool:
    """Whether any metric of ``a``'s rule reads NaN (no data yet)."""
    for m in a.condition.metrics:
        v = values.get(m.key)
        if isinstance(v, float) and math.isnan(v):
            return True
    return False


def status_from_dict(doc: dict[str, Any]) -> AlertStatus:
    """An AlertStatus from its published dict; ValueError/TypeError if it is not one."""
    status = AlertStatus(**doc)
    if status.state not in _STATES or not isinstance(status.name, str):
        raise ValueError(f"not an alert state: {doc!r}")
    return status


def adopt(alerts: Mapping[str, Alert], docs: list[dict[str, Any]], now: float, wall: float) -> bool:
    """Carry on the previous leader's published alerts; whether any was taken over.

    Pending alerts keep their start (their ``for`` goes on); firing ones are not sent
    again (only repeated after ``repeat_interval``, or resolved by this engine).
    ``now`` is this engine's monotonic clock, ``wall`` the Unix time: each published
    moment is placed as long before ``now`` as it was before ``wall``. A damaged or
    unknown entry is skipped (that alert starts afresh).
    """
    taken = False
    for doc in docs:
        try:
            status = status_from_dict(doc)
        except (TypeError, ValueError):
            continue
        a = alerts.get(status.name)
        if a is None or status.state == "inactive":
            continue
        times = {
            "active_since": status.active_since,
            "fired_at": status.fired_at,
            "last_sent": status.last_notified,
            "resolved_at": status.resolved_at,
        }
        a.wall = {k: float(t) for k, t in times.items() if isinstance(t, (int, float))}
        mono = {k: now - max(wall - t, 0.0) for k, t in a.wall.items()}
        a.state = status.state
        a.value = status.value
        a.active_since = mono.get("active_since")
        a.fired_at = mono.get("fired_at")
        a.last_sent = mono.get("last_sent")
        a.resolved_at = mono.get("resolved_at")
        if a.state in ("pending", "firing") and a.active_since is None:
            a.active_since = now
            a.wall["active_since"] = wall
        a.adopted = a.state in ("pending", "firing")
        taken = taken or a.adopted
    return taken
