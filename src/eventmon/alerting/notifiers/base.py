"""What notifiers receive, and the Protocol a notification channel implements.

Two kinds of notification go through the same channels:

* :class:`AlertNotice` — an alert started firing, is still firing (a repeat),
  or resolved;
* :class:`ScalingEvent` — the autoscaler changed the instance count.

A channel is any object with a ``name`` and a ``send(notification, timeout)``
method (:class:`Notifier`). Channels are called from the dispatcher's worker
threads, never from a request; they may block up to ``timeout`` seconds and
raise on failure (the dispatcher retries, logs and counts).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from eventmon._exceptions import ConfigurationError

__all__ = [
    "AlertNotice",
    "Notification",
    "Notifier",
    "ScalingEvent",
    "ScalingNotifiable",
    "format_text",
]


def _frozen(m: Mapping[str, str] | None) -> Mapping[str, str]:
    return dict(m or {})


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One alert's news: it fires, fires still (``repeat``), or has resolved.

    Times are Unix wall-clock seconds. ``value`` is the rule's left-hand metric
    value at the last evaluation (``None`` when the condition has no single one).
    """

    name: str
    status: Literal["firing", "resolved"]
    severity: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None
    starts_at: float = 0.0
    ends_at: float | None = None
    condition: str = ""
    repeat: bool = False

    @property
    def fingerprint(self) -> str:
        """Identity of the alert across notices (name plus sorted labels)."""
        return self.name + "".join(f",{k}={v}" for k, v in sorted(self.labels.items()))

    @property
    def summary(self) -> str:
        """The ``summary`` annotation, or a line made from the condition."""
        s = self.annotations.get("summary")
        if s:
            return s
        return f"{self.name}: {self.condition}" if self.condition else self.name


@dataclass(frozen=True, slots=True)
class ScalingEvent:
    """The instance count changed: ``from_instances`` → ``to_instances``.

    ``duration`` is how long the change took to apply, in seconds (``None`` if
    not measured). Build one from a mapping with :meth:`coerce`, which accepts
    the keys ``from``/``to`` as well as ``from_instances``/``to_instances``.
    """

    from_instances: int
    to_instances: int
    reason: str = ""
    duration: float | None = None
    at: float = field(default_factory=time.time)
    labels: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    """Why the change failed, if it did."""

    @property
    def direction(self) -> str:
        """``"out"``, ``"in"`` or ``"none"``."""
        if self.to_instances > self.from_instances:
            return "out"
        if self.to_instances < self.from_instances:
            return "in"
        return "none"

    @property
    def summary(self) -> str:
        took = f" in {self.duration:.1f}s" if self.duration is not None else ""
        why = f" ({self.reason})" if self.reason else ""
        if self.error:
            return (
                f"scaling {self.direction} failed: {self.from_instances} -> {self.to_instances}"
                f"{why}: {self.error}"
            )
        return f"scaled {self.direction}: {self.from_instances} -> {self.to_instances}{took}{why}"

    @classmethod
    def coerce(cls, event: ScalingEvent | Mapping[str, Any] | Any) -> ScalingEvent:
        """A ScalingEvent from itself, a mapping, or any object with the same attributes."""
        if isinstance(event, ScalingEvent):
            return event

        def get(*names: str) -> Any:
            for n in names:
                if isinstance(event, Mapping):
                    if n in event:
                        return event[n]
                elif hasattr(event, n):
                    return getattr(event, n)
            return None

        frm = get("from_instances", "from", "from_", "old", "current")
        to = get("to_instances", "to", "new", "desired")
        if frm is None or to is None:
            raise ConfigurationError(
                f"a scaling event needs 'from' and 'to' instance counts, got {event!r}"
            )
        duration = get("duration", "duration_seconds", "seconds")
        at = get("at", "timestamp", "time")
        labels = get("labels")
        error = get("error")
        return cls(
            from_instances=int(frm),
            to_instances=int(to),
            reason=str(get("reason") or ""),
            duration=None if duration is None else float(duration),
            at=time.time() if not at else float(at),
            labels=_frozen(labels),
            error=None if error is None else str(error),
        )


Notification = AlertNotice | ScalingEvent


@runtime_checkable
class Notifier(Protocol):
    """A notification channel (Slack, email, a webhook, Alertmanager, the dashboard).

    ``send`` may block for up to ``timeout`` seconds and raises on failure; the
    dispatcher calls it on a worker thread of its own, retries with backoff,
    and logs and counts what still fails.
    """

    name: str

    def send(self, notification: Notification, timeout: float) -> None: ...


@runtime_checkable
class ScalingNotifiable(Protocol):
    """What the autoscaler calls: the dispatcher and the alert engine both are one."""

    def notify_scaling_event(self, event: ScalingEvent | Mapping[str, Any]) -> None: ...


def format_text(n: Notification) -> tuple[str, str]:
    """A subject line and a plain-text body for a notification."""
    if isinstance(n, ScalingEvent):
        lines = [
            n.summary,
            f"from: {n.from_instances}",
            f"to: {n.to_instances}",
            f"reason: {n.reason or '-'}",
            f"duration: {'-' if n.duration is None else f'{n.duration:.1f}s'}",
            f"at: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(n.at))}",
        ]
        return f"[eventmon] {n.summary}", "\n".join(lines) + "\n"
    tag = "RESOLVED" if n.status == "resolved" else "FIRING"
    subject = f"[{tag}] {n.name} ({n.severity})"
    lines = [
        f"{tag}: {n.summary}",
        f"alert: {n.name}",
        f"severity: {n.severity}",
        f"condition: {n.condition}",
    ]
    if n.value is not None:
        lines.append(f"value: {n.value:g}")
    lines.append(f"since: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(n.starts_at))}")
    if n.ends_at is not None:
        lines.append(f"ended: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(n.ends_at))}")
    for k, v in sorted(n.labels.items()):
        lines.append(f"label {k}: {v}")
    for k, v in sorted(n.annotations.items()):
        if k != "summary":
            lines.append(f"{k}: {v}")
    return subject, "\n".join(lines) + "\n"
