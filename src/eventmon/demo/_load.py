"""A bounded load generator that replays the shipped traffic profile over HTTP."""

from __future__ import annotations

import contextlib
import http.client
import logging
import queue
import random
import threading
import time

from eventmon.demo._app import EVENT_IDS
from eventmon.demo._state import DemoState, TrafficProfile

__all__ = ["LoadGenerator"]

logger = logging.getLogger("eventmon.demo")

Request = tuple[str, str, dict[str, str], bytes | None]


def _event() -> int:
    # A few events are far more popular than the rest, as on a real ticketing site.
    return EVENT_IDS[min(len(EVENT_IDS) - 1, int(random.expovariate(0.25)))]


def request_for(cls: str, status: str) -> Request:
    """An HTTP request to the sample app that stands for a logged request of ``cls``."""
    e = _event()
    if status == "3xx":
        if cls == "asset":
            return (
                "GET",
                f"/static/img/{random.randint(1, 60)}.png",
                {"If-None-Match": '"v1"'},
                None,
            )
        return ("GET", f"/e/{e}", {}, None)
    if status == "4xx":
        missing = {
            "asset": f"/assets/old/{random.randint(1, 99)}.png",
            "page": "/events/9999",
            "search": "/search?q=",
            "feed": "/feed.rss",
        }
        return ("GET", missing.get(cls, "/wp-login.php"), {}, None)
    if status == "5xx":
        return ("GET", "/internal/report", {}, None)
    if cls == "asset":
        return ("GET", f"/static/img/{random.randint(1, 60)}.png", {}, None)
    if cls == "page":
        return ("GET", f"/events/{e}" + random.choice(("", "/seats")), {}, None)
    if cls == "search":
        return ("GET", f"/search?q={random.choice(('jazz', 'rock', 'expo', 'talks'))}", {}, None)
    if cls == "index":
        return ("GET", random.choice(("/", "/events")), {}, None)
    if cls == "feed":
        return ("GET", "/feed.xml", {}, None)
    return ("GET", "/health", {}, None)


class LoadGenerator:
    """Replays the profile's mix and burstiness at ``base_rate`` requests/s (mean).

    One simulated day lasts ``day_seconds``. While the event opens, traffic is
    ``spike`` times higher and half of the extra is ticket purchases. Bounded:
    at most ``workers`` requests in flight and ``max_rate`` per second; arrivals
    that find the queue full are dropped, not queued without end.
    """

    def __init__(
        self,
        port: int,
        profile: TrafficProfile,
        state: DemoState,
        *,
        base_rate: float = 25.0,
        spike: float = 4.0,
        day_seconds: float = 120.0,
        workers: int = 24,
        max_rate: float = 400.0,
    ) -> None:
        self.port = port
        self.profile = profile
        self.state = state
        self.base_rate = base_rate
        self.spike = spike
        self.day_seconds = day_seconds
        self.workers = workers
        self.max_rate = max_rate
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[Request | None] = queue.Queue(maxsize=workers * 4)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def rate(self) -> float:
        """The arrival rate (requests/s) right now."""
        r = self.base_rate * self.profile.rate_factor(self.state.elapsed() / self.day_seconds)
        if self.state.opening:
            r *= self.spike
        return min(r, self.max_rate)

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"eventmon-demo-load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._dispatch, name="eventmon-demo-dispatch", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        for _ in range(self.workers):
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def next_request(self) -> Request:
        p = self.profile
        if self.state.opening and random.random() < (self.spike - 1) / self.spike / 2:
            # The crowd at the doors: ticket purchases on the headline event.
            e = random.choice(EVENT_IDS[:3])
            return ("POST", f"/events/{e}/tickets", {"Content-Type": "application/json"}, b"{}")
        cls = random.choices(p.classes, weights=p.shares)[0]
        statuses = p.status[cls]
        status = random.choices(list(statuses), weights=list(statuses.values()))[0]
        return request_for(cls, status)

    def _dispatch(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                gap = self.profile.gap(random.random()) / max(self.rate(), 0.1)
                # A long quiet gap in the log must not stall the demo for minutes.
                next_at += min(gap, 2.0)
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -1.0:
                    next_at = time.monotonic()  # fell behind: do not burst to catch up
                try:
                    self._queue.put_nowait(self.next_request())
                except queue.Full:
                    self.dropped += 1
            except Exception:
                logger.exception("eventmon demo: load dispatcher failed")
                self._stop.wait(0.5)

    def _work(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                break
            method, path, headers, body = item
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                self.sent += 1
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                self.failed += 1
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.1)
        if conn is not None:
            conn.close()
