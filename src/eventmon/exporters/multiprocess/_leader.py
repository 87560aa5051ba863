"""One alert evaluator per aggregation directory: whoever holds ``engine.lock``.

Every worker's alert engine tries, at each tick, an exclusive non-blocking
``flock`` on ``engine.lock`` in the directory. The one that gets it evaluates
and notifies; the others stay quiet. The kernel drops the lock when its holder
exits, however it exits, so another worker takes over at its next tick.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

from eventmon.exporters.multiprocess._files import _read_file, _write_file
from eventmon.exporters.multiprocess._schema import _Corrupt

__all__ = [
    "ALERTS_FILE",
    "EVALUATOR_LOCK",
    "EvaluatorLock",
    "publish_alerts",
    "read_alerts",
    "read_published_alerts",
]

#: The lock file's name in the aggregation directory.
EVALUATOR_LOCK = "engine.lock"
#: Where the leader publishes its alerts' states for the other workers to show.
ALERTS_FILE = "alerts.json"

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open_lock(path: Path) -> int:
    """The lock file's descriptor: a regular file, mode 0600, never through a symlink."""
    for _ in range(2):
        try:
            fd = os.open(path, _FLAGS, 0o600)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            path.unlink()  # a symbolic link planted as the lock file
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        path.unlink()  # a FIFO or device planted under the name: make a real file
    raise OSError(errno.EEXIST, f"{path} keeps being replaced by something not a file")


class EvaluatorLock:
    """An exclusive ``flock`` on ``directory/engine.lock``, taken without waiting.

    :meth:`poll` takes the lock if it is free and reports whether this process
    holds it; :meth:`release` gives it up. A forked child never inherits the
    parent's hold (it polls afresh); a lock file removed or replaced (the
    directory cleaned while the server runs) counts as lost, so two workers can
    never both lead through two different files.

    Thread-safe: an engine's loop polls while ``stop()`` (or a lifespan's end, whose
    last evaluation may still be running in a worker thread) releases; one mutex
    keeps them from closing the same descriptor twice, which would close whatever
    the process had opened under that number in between. After :meth:`close`
    nothing takes the lock again until :meth:`reopen`.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / EVALUATOR_LOCK
        self._fd: int | None = None
        self._pid = os.getpid()
        self._mutex = threading.Lock()
        self._mutex_pid = self._pid
        self._closed = False

    @property
    def held(self) -> bool:
        """Whether this process held the lock at the last :meth:`poll`."""
        return self._fd is not None and self._pid == os.getpid()

    def poll(self) -> bool:
        """Keep or take the lock; True while this process holds it. Never blocks
        (but on the mutex, held only for a few system calls)."""
        with self._guard():
            return self._poll()

    def _guard(self) -> threading.Lock:
        if self._mutex_pid != os.getpid():
            # A forked child: the parent's mutex may have been held at fork time.
            self._mutex = threading.Lock()
            self._mutex_pid = os.getpid()
        return self._mutex

    def _poll(self) -> bool:
        if self._closed:
            return False
        if self._pid != os.getpid():
            # A forked child: the descriptor shares the parent's hold. Closing it
            # (never LOCK_UN, which would free the parent's) forgets it here only.
            self._pid = os.getpid()
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)
        if self._fd is not None:
            if self._still_the_file(self._fd):
                return True
            self._release()
        try:
            fd = _open_lock(self.path)
        except FileNotFoundError:
            return False  # the directory is gone; the aggregator makes it again
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self._fd = fd
        return True

    def _still_the_file(self, fd: int) -> bool:
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        """Give the lock up (another worker takes it at its next poll); idempotent."""
        with self._guard():
            self._release()

    def close(self) -> None:
        """Release the lock, and take it no more (an engine stopping) until :meth:`reopen`."""
        with self._guard():
            self._closed = True
            self._release()

    def reopen(self) -> None:
        """Let :meth:`poll` take the lock again (an engine started again)."""
        with self._guard():
            self._closed = False

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # The last descriptor closed releases the flock. In a forked child this is
            # its inherited copy: closing it (never LOCK_UN) leaves the parent's hold.
            with contextlib.suppress(OSError):
                os.close(fd)


def publish_alerts(directory: Path, alerts: list[dict[str, Any]], at: float) -> None:
    """Write the leader's alert states to ``alerts.json`` (atomically, mode 0600).

    ``at``: the Unix time of the evaluation they come from.
    """
    doc = {"pid": os.getpid(), "time": at, "alerts": alerts}
    data = json.dumps(doc, separators=(",", ":")).encode()
    _write_file(directory / ALERTS_FILE, directory / f".tmp-alerts-{os.getpid()}", data)


def read_alerts(directory: Path) -> list[dict[str, Any]] | None:
    """The alert states the leader published last; None if absent or not ours."""
    published = read_published_alerts(directory)
    return published[1] if published is not None else None


def read_published_alerts(directory: Path) -> tuple[float | None, list[dict[str, Any]]] | None:
    """(Unix time of the evaluation or None if not written, alert states); None if unreadable."""
    try:
        doc = json.loads(_read_file(directory / ALERTS_FILE))
    except (OSError, ValueError, _Corrupt):
        return None
    alerts = doc.get("alerts") if isinstance(doc, dict) else None
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
        return None
    at = doc.get("time")
    return (float(at) if type(at) in (int, float) else None), alerts
