"""The Protocol a scaling backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["ScalingBackend"]


@runtime_checkable
class ScalingBackend(Protocol):
    """Something whose instance count can be read and set.

    ``current()`` is the number of instances serving (or about to), not
    counting ones being drained. ``scale_to(n)`` applies a new count and, for a
    scale-out, blocks until the new instances serve or the backend's own
    timeout passes; it returns whether they were confirmed serving. Both may
    raise; the autoscaler logs, counts and carries on.
    """

    name: str

    def current(self) -> int: ...

    def scale_to(self, n: int) -> bool: ...
