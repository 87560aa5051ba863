"""Runs notifiers concurrently: one worker thread per channel, timeouts, retries with backoff.

Each channel has its own queue and worker thread, so a channel that hangs or
fails holds up only its own queue, never the other channels, the alert
engine or a request. :meth:`NotificationDispatcher.dispatch` only appends to
the queues and returns. A send that raises is retried with exponential
backoff (or after the ``Retry-After`` a channel reports via
:class:`RetryAfter`); what still fails is logged and counted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon._validate import integer, seconds
from eventmon.alerting.notifiers._redact import redact_urls
from eventmon.alerting.notifiers.base import Notification, Notifier, ScalingEvent

__all__ = ["ChannelStats", "NotificationDispatcher", "RetryAfter"]

logger = logging.getLogger("eventmon.alerting")


def _describe(exc: BaseException) -> str:
    # Webhook URLs are credentials: whatever a channel raised, logs and stats
    # show only the scheme and host of a URL in it.
    return redact_urls(f"{type(exc).__name__}: {exc}")


class RetryAfter(Exception):
    """Raised by a channel that was told to come back later (HTTP 429 + Retry-After)."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds:g}s")
        self.seconds = seconds


@dataclass(slots=True)
class ChannelStats:
    """Counts for one channel since the dispatcher started."""

    sent: int = 0
    failed: int = 0
    retries: int = 0
    dropped: int = 0
    last_error: str = ""
    last_duration: float = 0.0


class _Channel:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.queue: deque[Notification] = deque()
        self.cond = threading.Condition()
        self.stats = ChannelStats()
        self.thread: threading.Thread | None = None
        self.busy = False


class NotificationDispatcher:
    """Delivers notifications to every channel without blocking the caller.

    Args:
        notifiers: the channels.
        timeout: seconds each send may take (handed to the channel).
        retries: further attempts after a failed send.
        backoff: first wait between attempts; doubles up to ``max_backoff``.
        max_retry_after: cap on a channel's ``Retry-After``.
        max_pending: queued notifications per channel; older ones are dropped
            (and counted) beyond it.
        on_error: called with ``"notifier:<name>"`` for every failed delivery,
            e.g. a collector's ``record_internal_error``.
    """

    def __init__(
        self,
        notifiers: Iterable[Notifier] = (),
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_retry_after: float = 300.0,
        max_pending: int = 1000,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.timeout = seconds("timeout", timeout)
        self.retries = integer("retries", retries, minimum=0)
        self.backoff = seconds("backoff", backoff, allow_zero=True)
        self.max_backoff = seconds("max_backoff", max_backoff, allow_zero=True)
        self.max_retry_after = seconds("max_retry_after", max_retry_after, allow_zero=True)
        self.max_pending = integer("max_pending", max_pending, minimum=1)
        if on_error is not None and not callable(on_error):
            raise ConfigurationError(f"on_error must be callable, got {on_error!r}")
        self.on_error = on_error
        self._channels: list[_Channel] = []
        self._stopping = threading.Event()
        self._pid = os.getpid()
        self._lock = threading.Lock()
        for n in notifiers:
            self.add(n)

    def add(self, notifier: Notifier) -> None:
        """Add a channel (anything with ``name`` and ``send(notification, timeout)``)."""
        if not isinstance(notifier, Notifier):
            raise ConfigurationError(
                f"{notifier!r} is not a notifier: it needs a 'name' and send(notification, timeout)"
            )
        names = {c.notifier.name for c in self._channels}
        if notifier.name in names:
            raise ConfigurationError(
                f"two notifiers are named {notifier.name!r}; give each a distinct name="
            )
        self._channels.append(_Channel(notifier))

    @property
    def notifiers(self) -> list[Notifier]:
        return [c.notifier for c in self._channels]

    def dispatch(self, notification: Notification) -> None:
        """Queue ``notification`` for every channel; returns at once."""
        if self._stopping.is_set():
            return
        if self._pid != os.getpid():  # forked: the parent's threads do not exist here
            self._pid = os.getpid()
            for c in self._channels:
                c.thread = None
                c.cond = threading.Condition()
        for c in self._channels:
            with c.cond:
                if len(c.queue) >= self.max_pending:
                    c.queue.popleft()
                    c.stats.dropped += 1
                c.queue.append(notification)
                if c.thread is None:
                    c.thread = threading.Thread(
                        target=self._run,
                        args=(c,),
                        name=f"eventmon-notify-{c.notifier.name}",
                        daemon=True,
                    )
                    c.thread.start()
                c.cond.notify()

    def notify_scaling_event(self, event: ScalingEvent | Mapping[str, Any] | Any) -> None:
        """Send a scaling event (from/to/reason/duration) to every channel."""
        self.dispatch(ScalingEvent.coerce(event))

    def stats(self) -> dict[str, ChannelStats]:
        """Per channel: sent, failed, retries, dropped, last error."""
        return {c.notifier.name: c.stats for c in self._channels}

    def _run(self, c: _Channel) -> None:
        # A channel with resend(timeout) and resend_interval (Alertmanager) is
        # also called every resend_interval while idle.
        every = float(getattr(c.notifier, "resend_interval", 0) or 0)
        resend = getattr(c.notifier, "resend", None) if every > 0 else None
        next_resend = time.monotonic() + every
        while True:
            with c.cond:
                while not c.queue and not self._stopping.is_set():
                    if resend is None:
                        c.cond.wait()
                        continue
                    left = next_resend - time.monotonic()
                    if left <= 0:
                        break
                    c.cond.wait(left)
                if self._stopping.is_set() and not c.queue:
                    return
                item = c.queue.popleft() if c.queue else None
                c.busy = True
            if item is None:
                next_resend = time.monotonic() + every
                try:
                    assert resend is not None
                    resend(self.timeout)
                except Exception as exc:
                    c.stats.last_error = _describe(exc)
                    logger.warning(
                        "eventmon: notifier %s: re-send failed: %s",
                        c.notifier.name,
                        c.stats.last_error,
                    )
                    if self.on_error is not None:
                        self.on_error(f"notifier:{c.notifier.name}")
                finally:
                    with c.cond:
                        c.busy = False
                        c.cond.notify_all()
                continue
            try:
                self._deliver(c, item)
            finally:
                with c.cond:
                    c.busy = False
                    c.cond.notify_all()

    def _deliver(self, c: _Channel, item: Notification) -> None:
        name = c.notifier.name
        delay = self.backoff
        for attempt in range(self.retries + 1):
            started = time.monotonic()
            try:
                c.notifier.send(item, self.timeout)
            except Exception as exc:
                c.stats.last_duration = time.monotonic() - started
                c.stats.last_error = _describe(exc)
                if attempt == self.retries or self._stopping.is_set():
                    c.stats.failed += 1
                    # The traceback repeats the raw message: left out when that held a URL.
                    raw = f"{type(exc).__name__}: {exc}"
                    logger.error(
                        "eventmon: notifier %s failed after %d attempt(s): %s",
                        name,
                        attempt + 1,
                        c.stats.last_error,
                        exc_info=exc if c.stats.last_error == raw else None,
                    )
                    if self.on_error is not None:
                        try:
                            self.on_error(f"notifier:{name}")
                        except Exception:
                            logger.exception("eventmon: on_error callback raised")
                    return
                c.stats.retries += 1
                if isinstance(exc, RetryAfter):
                    wait = min(max(exc.seconds, 0.0), self.max_retry_after)
                else:
                    wait = min(delay, self.max_backoff)
                    delay *= 2
                logger.warning(
                    "eventmon: notifier %s: %s; retrying in %.1fs", name, c.stats.last_error, wait
                )
                if self._stopping.wait(wait):
                    c.stats.failed += 1
                    return
            else:
                c.stats.last_duration = time.monotonic() - started
                c.stats.sent += 1
                return

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification was delivered or gave up."""
        deadline = time.monotonic() + timeout
        for c in self._channels:
            with c.cond:
                while c.queue or c.busy:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    c.cond.wait(left)
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop the workers; idempotent."""
        self.flush(timeout)
        self._stopping.set()
        for c in self._channels:
            with c.cond:
                c.cond.notify_all()
        deadline = time.monotonic() + 1.0
        for c in self._channels:
            t = c.thread
            if t is not None and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
            if t is None or not t.is_alive():
                c.thread = None
        # A later dispatch() starts fresh workers, so an engine can be restarted.
        self._stopping.clear()
