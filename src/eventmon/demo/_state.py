"""What the demo app, the load generator and the simulated cluster share."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from eventmon.types import Clock

__all__ = ["DemoState", "SimulatedCluster", "TrafficProfile", "load_profile"]


@dataclass(frozen=True, slots=True)
class TrafficProfile:
    """The request mix and timing shape derived from a real access log."""

    classes: tuple[str, ...]
    shares: tuple[float, ...]
    status: dict[str, dict[str, float]]
    hourly: tuple[float, ...]
    gap_quantiles: tuple[float, ...]

    def rate_factor(self, day_fraction: float) -> float:
        """Relative traffic at a point of the day (0–1), mean 1.0."""
        x = (day_fraction % 1.0) * 24
        i = int(x)
        a, b = self.hourly[i], self.hourly[(i + 1) % 24]
        return a + (b - a) * (x - i)

    def gap(self, u: float) -> float:
        """An inter-arrival gap in mean gaps, for a uniform ``u`` in [0, 1)."""
        q = self.gap_quantiles
        x = u * (len(q) - 1)
        i = min(int(x), len(q) - 2)
        return q[i] + (q[i + 1] - q[i]) * (x - i)


def load_profile() -> TrafficProfile:
    """The profile shipped in eventmon/demo_data/traffic_profile.json."""
    raw = json.loads(
        resources.files("eventmon.demo_data").joinpath("traffic_profile.json").read_text()
    )
    mix: dict[str, Any] = raw["mix"]
    return TrafficProfile(
        classes=tuple(mix),
        shares=tuple(float(v["share"]) for v in mix.values()),
        status={k: dict(v["status"]) for k, v in mix.items()},
        hourly=tuple(float(h) for h in raw["hourly"]),
        gap_quantiles=tuple(float(g) for g in raw["gap_quantiles"]),
    )


class DemoState:
    """The phase of the simulated event: quiet, or doors open (spike, slow checkout)."""

    def __init__(
        self, *, cycle: float, opening_at: float, opening_for: float, clock: Clock
    ) -> None:
        self.cycle = cycle
        self.opening_at = opening_at
        self.opening_for = opening_for
        self.clock = clock
        self.started = clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def opening(self) -> bool:
        """Whether the event's ticket sale is open right now (the spike)."""
        t = self.elapsed() % self.cycle
        return self.opening_at <= t < self.opening_at + self.opening_for


class SimulatedCluster:
    """An in-process stand-in for a fleet, as a scaling backend and metrics source.

    Each instance handles ``capacity_rps`` requests/s at 100 % CPU, so cluster
    CPU = rps / (instances * capacity_rps), with the rps read from the collector.
    A scale-out takes ``boot_seconds`` (new instances starting), like a real one.
    """

    name = "simulated"

    def __init__(
        self,
        rps: Callable[[], float],
        *,
        instances: int = 2,
        capacity_rps: float = 25.0,
        boot_seconds: float = 0.5,
    ) -> None:
        self.instances = instances
        self.capacity_rps = capacity_rps
        self.boot_seconds = boot_seconds
        self._rps = rps
        self._lock = threading.Lock()

    def current(self) -> int:
        """Instances serving now (scaling backend protocol)."""
        with self._lock:
            return self.instances

    def scale_to(self, n: int) -> bool:
        """Apply a new count; a scale-out waits for the new instances to boot."""
        if n > self.current():
            time.sleep(self.boot_seconds)
        with self._lock:
            self.instances = n
        return True

    def cpu_percent(self) -> float:
        rps = self._rps()
        return min(100.0, 100.0 * rps / max(1, self.current()) / self.capacity_rps)

    def read(self) -> dict[str, float]:
        """Cluster load (metrics source protocol)."""
        return {"cpu_percent": self.cpu_percent(), "instances": float(self.current())}
