"""Worker counts of a pre-fork server on this machine, changed by signals to its master."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventmon._exceptions import ConfigurationError, EventmonError
from eventmon._validate import seconds
from eventmon.scaling.sources import worker_processes
from eventmon.types import Clock

__all__ = ["PreforkBackend", "ScalingFailed"]

logger = logging.getLogger("eventmon.scaling")


class ScalingFailed(EventmonError):
    """The backend could not apply a new instance count."""


class PreforkBackend:
    """Shared logic of the gunicorn and uvicorn backends.

    Workers are added one signal at a time (two identical signals sent close
    together may be merged into one by the kernel); each is waited for until
    ``ready(pid)`` says it serves, or ``ready_timeout`` passes. The worker the
    master retires on a remove signal (``retires="oldest"`` or ``"newest"``)
    is remembered as draining and no longer counted by :meth:`current`.
    """

    name = "prefork"
    add_signal: signal.Signals = signal.SIGTTIN
    remove_signal: signal.Signals = signal.SIGTTOU
    retires = "oldest"

    def __init__(
        self,
        master_pid: int | None = None,
        *,
        pidfile: str | os.PathLike[str] | None = None,
        ready_timeout: float = 60.0,
        settle: float = 1.0,
        ready_check: Callable[[int], bool | None] | None = None,
        poll_interval: float = 0.05,
        clock: Clock = time.monotonic,
    ) -> None:
        if (master_pid is None) == (pidfile is None):
            raise ConfigurationError("give exactly one of master_pid or pidfile")
        if master_pid is not None and (
            not isinstance(master_pid, int) or isinstance(master_pid, bool) or master_pid <= 0
        ):
            raise ConfigurationError(f"master_pid must be a positive pid, got {master_pid!r}")
        ready_timeout = seconds("ready_timeout", ready_timeout, allow_zero=True)
        settle = seconds("settle", settle, allow_zero=True)
        poll_interval = seconds("poll_interval", poll_interval)
        try:
            import psutil  # noqa: F401 - optional dependency
        except ImportError as e:  # pragma: no cover - psutil is in the extras
            raise ConfigurationError(
                f"the {self.name} backend needs psutil: pip install 'eventmon[all]'"
            ) from e
        self._pid = master_pid
        self._pidfile = Path(pidfile) if pidfile is not None else None
        self.ready_timeout = float(ready_timeout)
        self.settle = float(settle)
        self.poll_interval = poll_interval
        self.clock = clock
        self._ready_check = ready_check
        self._retiring: set[int] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reading

    @property
    def master_pid(self) -> int:
        """The master's pid (read from the pidfile each time, if one was given)."""
        if self._pid is not None:
            return self._pid
        assert self._pidfile is not None
        try:
            return int(self._pidfile.read_text().strip())
        except (OSError, ValueError) as e:
            raise ScalingFailed(f"cannot read a pid from {self._pidfile}: {e}") from e

    def draining(self) -> set[int]:
        """Pids of workers told to stop that are still finishing their requests."""
        import psutil

        alive = set()
        for pid in self._retiring:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.add(pid)
            except psutil.NoSuchProcess:
                continue
        self._retiring = alive
        return set(alive)

    def workers(self) -> list[Any]:
        """Serving workers (psutil processes), oldest first, draining ones left out."""
        import psutil

        try:
            procs = worker_processes(self.master_pid)
        except psutil.NoSuchProcess as e:
            raise ScalingFailed(f"{self.name} master {self.master_pid} is not running") from e
        gone = self.draining()
        return [p for p in procs if p.pid not in gone]

    def current(self) -> int:
        """Number of serving workers."""
        return len(self.workers())

    def is_ready(self, pid: int) -> bool:
        """Whether worker ``pid`` serves (True when the platform cannot tell)."""
        check = self._ready_check or self._default_ready
        answer = check(pid)
        return True if answer is None else bool(answer)

    def _default_ready(self, pid: int) -> bool | None:
        return None

    # ------------------------------------------------------------------ writing

    def scale_to(self, n: int) -> bool:
        """Signal the master until ``n`` workers serve; True if all new ones were seen serving."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigurationError(f"a worker count must be an int >= 1, got {n!r}")
        with self._lock:
            ok = True
            workers = self.workers()
            while len(workers) < n:
                ok = self._add_one(workers) and ok
                workers = self.workers()
            while len(workers) > n:
                self._remove_one(workers)
                workers = self.workers()
            return ok

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.kill(self.master_pid, sig)
        except ProcessLookupError as e:
            raise ScalingFailed(f"{self.name} master {self.master_pid} is not running") from e

    def _add_one(self, before: list[Any]) -> bool:
        known = {p.pid for p in before} | self._retiring
        self._signal(self.add_signal)
        deadline = self.clock() + self.ready_timeout
        new_pid = None
        while self.clock() < deadline:
            fresh = [p.pid for p in self.workers() if p.pid not in known]
            if fresh:
                new_pid = fresh[-1]
                break
            time.sleep(self.poll_interval)
        if new_pid is None:
            raise ScalingFailed(
                f"{self.name} master {self.master_pid} started no worker within"
                f" {self.ready_timeout:g}s of {self.add_signal.name}"
            )
        while self.clock() < deadline:
            if self.is_ready(new_pid):
                return True
            time.sleep(self.poll_interval)
        logger.warning(
            "eventmon: %s worker %d not serving after %.0fs", self.name, new_pid, self.ready_timeout
        )
        return False

    def _remove_one(self, workers: list[Any]) -> None:
        if len(workers) <= 1:
            raise ScalingFailed(f"{self.name} keeps at least one worker")
        victim = workers[0] if self.retires == "oldest" else workers[-1]
        self._retiring.add(victim.pid)
        self._signal(self.remove_signal)
        # Give the master time to act on this signal before the next one, so
        # the kernel does not merge them; stop early once the victim has exited.
        deadline = self.clock() + self.settle
        while self.clock() < deadline and victim.pid in self.draining():
            time.sleep(self.poll_interval)
