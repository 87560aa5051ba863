"""Slow-request hooks, run on a background thread so they never delay a response.

A request slower than the threshold is handed to a queue; one daemon thread
calls the hooks with ``(method, endpoint, status_code, seconds)``. A hook that
raises is logged and counted, and the others still run. If hooks fall far
behind (more than ``max_pending`` queued), further slow requests are counted
but not handed to hooks, so a stuck hook cannot grow memory.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence

from eventmon.types import SlowRequestHook

__all__ = ["SlowRequestDispatcher", "log_slow_request"]

logger = logging.getLogger("eventmon")

_Item = tuple[str, str, int, float] | threading.Event | None


def log_slow_request(method: str, endpoint: str, status_code: int, seconds: float) -> None:
    """The default hook: ``Slow request detected: GET /events/{event_id} - 1234ms``.

    ``seconds`` is the request's duration; the message shows it in milliseconds.
    """
    logger.warning(
        "Slow request detected: %s %s - %dms (status %d)",
        method,
        endpoint,
        round(seconds * 1000),
        status_code,
    )


class SlowRequestDispatcher:
    """Queues slow requests and calls the hooks on a daemon thread.

    ``on_error(where)`` counts a hook that raised; past ``max_pending`` queued
    requests, further ones are counted in ``dropped`` instead.
    """

    def __init__(
        self,
        hooks: Sequence[SlowRequestHook],
        *,
        on_error: Callable[[str], None],
        max_pending: int = 10_000,
    ) -> None:
        self.hooks = list(hooks)
        self.max_pending = max_pending
        self.dropped = 0
        self._on_error = on_error
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()

    def add_hook(self, hook: SlowRequestHook) -> None:
        """Also call ``hook(method, endpoint, status_code, seconds)``."""
        self.hooks.append(hook)

    def submit(self, method: str, endpoint: str, status_code: int, seconds: float) -> None:
        """Hand one slow request (its duration in ``seconds``) to the hooks; returns at once."""
        if not self.hooks:
            return
        if self._pid != os.getpid():  # first use, or first use after a fork
            self._start()
        if self._queue.qsize() >= self.max_pending:
            self.dropped += 1
            return
        self._queue.put((method, endpoint, status_code, seconds))

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(
                target=self._run, name="eventmon-slow-hooks", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            for hook in list(self.hooks):
                try:
                    hook(*item)
                except Exception:
                    logger.exception("eventmon: slow-request hook %r raised", hook)
                    self._on_error("slow_hook")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds until every slow request queued so far has
        gone through the hooks; ``False`` if they had not by then."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the hook thread after the queued items, waiting up to ``timeout`` seconds.

        Idempotent.
        """
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        self._queue.put(None)
        thread.join(timeout)
