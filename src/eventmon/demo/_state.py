"""What the demo app, the load generator and the simulated cluster share."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
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
    """An in-process stand-in for a fleet: instances, and a CPU load that follows traffic.

    Each instance is taken to handle ``capacity_rps`` requests/s at 100 % CPU, so
    cluster CPU = rps / (instances * capacity_rps). ``set_instances`` takes effect at once.
    """

    def __init__(
        self, *, instances: int = 2, capacity_rps: float = 25.0, clock: Clock = time.monotonic
    ) -> None:
        self.instances = instances
        self.capacity_rps = capacity_rps
        self.clock = clock
        self.rps = 0.0
        self.events: deque[dict[str, Any]] = deque(maxlen=50)
        self._lock = threading.Lock()

    def cpu_percent(self) -> float:
        with self._lock:
            return min(100.0, 100.0 * self.rps / max(1, self.instances) / self.capacity_rps)

    def current_instances(self) -> int:
        return self.instances

    def set_instances(self, n: int, reason: str = "") -> None:
        with self._lock:
            old = self.instances
            if n == old:
                return
            self.instances = n
            self.events.append(
                {
                    "time": time.time(),
                    "from": old,
                    "to": n,
                    "direction": "up" if n > old else "down",
                    "reason": reason,
                }
            )

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            events = list(self.events)
            instances = self.instances
        return {
            "instances": instances,
            "backend": "simulated",
            "cpu": round(min(100.0, 100.0 * self.rps / max(1, instances) / self.capacity_rps), 1)
            if math.isfinite(self.rps)
            else 0.0,
            "events": events,
        }
