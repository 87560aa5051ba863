"""The event schedule the host app supplies, and a simple in-memory one.

:class:`EventSchedule` is the Protocol: upcoming events with an id, start, end and
the registrations so far. :class:`InMemoryEventSchedule` keeps them in a dict.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from eventmon._exceptions import ConfigurationError, EventmonError

__all__ = [
    "EventNotFoundError",
    "EventSchedule",
    "InMemoryEventSchedule",
    "ScheduledEvent",
]


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """An upcoming event: start and end in epoch seconds, registrations so far."""

    id: str
    start: float
    end: float
    registered: int


@runtime_checkable
class EventSchedule(Protocol):
    """What the host app supplies: its upcoming events, looked up by id."""

    def get(self, event_id: str) -> ScheduledEvent | None:
        """The event with this id, or None."""

    def upcoming(self, now: float) -> Iterable[ScheduledEvent]:
        """Events that have not ended at ``now``."""


class InMemoryEventSchedule:
    """An :class:`EventSchedule` kept in a dict; thread-safe."""

    def __init__(self, events: Iterable[ScheduledEvent] = ()) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, ScheduledEvent] = {}
        for e in events:
            self.add(e)

    def add(self, event: ScheduledEvent) -> None:
        """Add or replace an event (e.g. with an updated registration count)."""
        if event.end <= event.start:
            raise ConfigurationError(f"event {event.id!r} must end after it starts")
        if event.registered < 0:
            raise ConfigurationError(f"event {event.id!r} has a negative registered count")
        with self._lock:
            self._events[event.id] = event

    def remove(self, event_id: str) -> None:
        with self._lock:
            self._events.pop(event_id, None)

    def get(self, event_id: str) -> ScheduledEvent | None:
        with self._lock:
            return self._events.get(event_id)

    def upcoming(self, now: float) -> list[ScheduledEvent]:
        with self._lock:
            return sorted((e for e in self._events.values() if e.end > now), key=lambda e: e.start)


class EventNotFoundError(EventmonError, KeyError):
    """``pre_scale_for_event`` was given an id the schedule does not know."""
