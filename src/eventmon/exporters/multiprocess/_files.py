"""The files in the multiprocess directory: liveness, safe reads and writes, the lock.

Every write goes through a temp file opened ``O_EXCL|O_NOFOLLOW`` (mode 0600)
and a rename; every read refuses symlinks and anything but a regular file, so a
file planted in the directory is never followed. The lock (``.lock``) is an
``flock``: shared while reading, exclusive while archiving a dead worker.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from eventmon._exceptions import ConfigurationError, EventmonError
from eventmon.exporters.multiprocess._schema import _Corrupt

#: The one setting: the directory where workers keep their state.
ENV_DIR = "EVENTMON_MULTIPROC_DIR"

_ARCHIVE = "archive.json"
_LOCK = ".lock"


@dataclass(frozen=True, slots=True)
class MultiprocessConfig:
    """Where and how often workers write their state.

    ``stale_after``: also archive a file not rewritten for this many seconds even
    if its pid looks alive (off by default: pid plus start time is exact on Linux).
    """

    directory: Path
    interval: float = 1.0
    stale_after: float | None = None


# --------------------------------------------------------------------- liveness


def _start_ticks(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot ("" if unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    # Field 22; the command name (field 2) may hold spaces and parentheses.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""


def process_alive(pid: int, start: str) -> bool:
    """True if ``pid`` runs and, where the OS says, started at ``start`` (not reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start and not start.startswith("t"):
        now = _start_ticks(pid)
        if now and now != start:
            return False  # the pid was reused by another process
    return True


def _identity() -> tuple[int, str]:
    pid = os.getpid()
    return pid, _start_ticks(pid) or f"t{time.time_ns()}"


# ------------------------------------------------------------------- directory


def _prepare_directory(directory: Path) -> None:
    """Create ``directory`` (mode 0700) or check it at start-up; ConfigurationError if unfit."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
    except FileExistsError:
        raise ConfigurationError(
            f"{ENV_DIR} must name a directory, but {directory} is a file: point it elsewhere"
        ) from None
    except OSError as e:
        raise ConfigurationError(
            f"cannot use {directory} for worker aggregation ({e.strerror}): "
            f"point {ENV_DIR} at a directory this server may create and write"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigurationError(
            f"{ENV_DIR} must name a directory, but {directory} is a file: point it elsewhere"
        )
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        # Anyone could replace or plant worker files in it (and the counts with them).
        raise ConfigurationError(
            f"{directory} is world-writable without the sticky bit: "
            f"use a directory private to this server (chmod 700 {directory})"
        )


# ------------------------------------------------------------------ files


class MultiprocessDamaged(EventmonError):
    """A scrape refused for a moment: a live worker's file is lost or damaged.

    Its worker writes it again within ``interval`` (it has all its counts in
    memory); until then a merged answer could be lower than an earlier one.
    """


def _read_file(path: Path) -> bytes:
    """A regular file's bytes, never through a symlink (FileNotFoundError if absent)."""
    try:
        # O_NONBLOCK: a FIFO planted under a worker's name must not hang a scrape.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _Corrupt("a symbolic link") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Corrupt("not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _write_file(path: Path, tmp: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write ``data`` to ``path`` atomically (temp file, then rename), mode 0600.

    With ``replace=False`` an existing ``path`` is left alone (returns False).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileExistsError:
        # Left by a crash, or planted: O_EXCL refused to write through it; start afresh.
        tmp.unlink()
        fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails if path exists: never over a newer version
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # renamed already, or linked, or left by a failed write


def _owner(name: str) -> tuple[int, str] | None:
    """(pid, start) of a worker file's name ``w-<pid>-<start>[-g<n>].json``."""
    parts = name[2:-5].split("-")
    try:
        return int(parts[0]), parts[1]
    except (IndexError, ValueError):
        return None


@contextlib.contextmanager
def _flock(directory: Path, mode: int, on_missing: Callable[[], None]) -> Iterator[None]:
    """Hold the directory's lock (``fcntl.LOCK_SH`` or ``LOCK_EX``).

    ``on_missing`` makes the directory again if it was removed.
    """
    path = directory / _LOCK
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        on_missing()
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        path.unlink()  # a symbolic link planted as the lock file
        fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing releases the lock
