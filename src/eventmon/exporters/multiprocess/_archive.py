"""This worker's view of the shared directory: archiving, copies, healing, merging.

A worker found dead is merged into ``archive.json`` under the exclusive lock
and its file removed. Every worker keeps copies of the archive and of the
other workers' files, so that a removed directory, a lost file or a damaged
one is mended from them figure by figure (the larger value, never the sum).
A scrape merges the archive and every live worker's file under the shared lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventmon.exporters.multiprocess._files import (
    _ARCHIVE,
    MultiprocessConfig,
    MultiprocessDamaged,
    _flock,
    _owner,
    _read_file,
    _write_file,
)
from eventmon.exporters.multiprocess._schema import _Corrupt, _OtherBounds, _parse
from eventmon.exporters.multiprocess._state import _Merged
from eventmon.exporters.multiprocess._view import MergedView

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector

logger = logging.getLogger("eventmon")


class _Keeper:
    """The directory as one worker keeps it (base of :class:`WorkerAggregator`)."""

    collector: MetricsCollector
    config: MultiprocessConfig
    directory: Path
    is_alive: Callable[[int, str], bool]
    clock: Callable[[], float]
    pid: int
    start_ticks: str
    generation: int
    _lock: threading.RLock
    _fresh: dict[str, Any] | None  # this worker's state last written (or tried)

    def _forget_copies(self) -> None:
        # This worker's copies, to mend the directory if it is damaged: of the
        # archive (every figure at least that of the last archive seen), and of
        # each worker file as last merged (bytes, checked when read).
        self._archive = _Merged()
        self._archive_bytes = b""
        self._copies: dict[str, bytes] = {}
        self._missing: dict[str, float] = {}  # files waited for, since when
        self._archive_damaged = False

    @property
    def token(self) -> str:
        gen = f"-g{self.generation}" if self.generation else ""
        return f"w-{self.pid}-{self.start_ticks}{gen}"

    @property
    def path(self) -> Path:
        return self.directory / f"{self.token}.json"

    def _ensure_dir(self, *, parents: bool = True) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(mode=0o700, parents=parents, exist_ok=True)
            logger.warning("eventmon: %s was missing; made it again", self.directory)
            self.collector.record_internal_error("multiprocess.damaged")

    def _flock(self, mode: int) -> contextlib.AbstractContextManager[None]:
        return _flock(self.directory, mode, self._ensure_dir)

    # ------------------------------------------------------------ damage

    def _load(self, path: Path, *, set_aside: bool = False) -> tuple[bytes, dict[str, Any]] | None:
        """Read and check a worker file: (bytes, state), None if absent.

        Raises _Corrupt (after moving the file aside if ``set_aside``: only under
        the exclusive lock, when no worker can be replacing it) or _OtherBounds.
        """
        c = self.collector
        try:
            data = _read_file(path)
            return data, _parse(data, list(c.bounds), c.layout.counts_len, worker=True)
        except FileNotFoundError:
            return None
        except _Corrupt as e:
            if set_aside:
                self._set_aside(path, str(e))
            raise

    def _set_aside(self, path: Path, why: str) -> None:
        aside = path.with_name(f"{path.name}.corrupt-{time.time_ns()}")
        try:
            path.rename(aside)
        except FileNotFoundError:
            return
        except OSError as e:  # e.g. another user's file in a sticky directory
            logger.warning("eventmon: %s is damaged (%s) and cannot be moved: %s", path, why, e)
        else:
            logger.warning("eventmon: %s is damaged (%s); moved it to %s", path, why, aside.name)
        self.collector.record_internal_error("multiprocess.corrupt")

    def _see_archive(self, *, set_aside: bool = False) -> bool:
        """Refresh this worker's copy of the archive; False if the file holds less.

        The copy is what lets a lost or damaged archive be rebuilt: each worker
        keeps the last archive it read (or the larger of it and its copy, figure by
        figure), at every periodic write and every scrape. Call with a lock held.
        """
        path = self.directory / _ARCHIVE
        c = self.collector
        self._archive_damaged = False
        try:
            data = _read_file(path)
            if data == self._archive_bytes:
                return True
            state = _parse(data, list(c.bounds), c.layout.counts_len, worker=False)
            self._missing.pop(_ARCHIVE, None)
        except FileNotFoundError:
            self._missing.pop(_ARCHIVE, None)
            return self._archive.empty()
        except _Corrupt as e:
            self._archive_damaged = True
            if set_aside and not self._wait_for_a_copy():
                self._set_aside(path, str(e))
            return False
        disk = _Merged()
        disk.add(state)
        if disk.covers(self._archive):
            self._archive, self._archive_bytes = disk, data
            return True
        self._archive.join(disk)
        self._archive_bytes = b""  # the copy is no longer that file
        return False

    def _wait_for_a_copy(self) -> bool:
        """True while a damaged archive is better left to a worker that has a copy.

        This worker has none (it started after the archive was last written): for
        up to the grace period, it neither answers scrapes nor touches the archive.
        """
        if not (self._archive_damaged and self._archive.empty()):
            return False
        now = self.clock()
        return now - self._missing.setdefault(_ARCHIVE, now) < self._grace

    def _heal(self, damaged: Sequence[Path] = ()) -> None:
        """Mend what damage took; never raises (counted).

        Damaged files are moved aside; the archive becomes the larger of it and
        this worker's copy, figure by figure; a dead worker's file that is gone
        but not archived is archived from this worker's copy of it. (A live
        worker's lost file is its own to write again: it has it all in memory.)
        """
        try:
            with self._lock, self._flock(fcntl.LOCK_EX):
                for path in damaged:
                    with contextlib.suppress(_Corrupt, _OtherBounds):
                        self._load(path, set_aside=True)
                self._sweep_locked(self._dead(), force=True)
        except Exception:
            self.collector.internal_error("multiprocess.heal")

    def _refresh_copies(self) -> bool:
        """Copy every other worker's file (bytes that look whole), at each periodic write.

        Reading is cheap next to writing (no parsing; checked only if ever used).
        A file that is gone but not archived keeps its last copy; returns True if
        there is such a file (to archive if its worker is dead: :meth:`_heal`).
        """
        copies: dict[str, bytes] = {}
        for entry in os.scandir(self.directory):
            name = entry.name
            if name.startswith("w-") and name.endswith(".json") and name != self.path.name:
                with contextlib.suppress(OSError, _Corrupt):
                    data = _read_file(Path(entry.path))
                    if data.startswith(b'{"format":') and data.endswith(b"}"):
                        copies[name] = data
        archived = set(self._archive.merged)
        lost = False
        for name, data in self._copies.items():
            if name not in copies and name[:-5] not in archived:
                copies[name] = data
                lost = True
        self._copies = copies
        return lost

    # ------------------------------------------------------------ archiving

    def _dead(self) -> list[Path]:
        dead = []
        now = self.clock()
        stale = self.config.stale_after
        for entry in os.scandir(self.directory):
            name = entry.name
            if not name.startswith("w-") or not name.endswith(".json"):
                continue
            if name == self.path.name:
                continue
            owner = _owner(name)
            if owner is None:
                continue
            if not self.is_alive(*owner):
                dead.append(Path(entry.path))
            elif stale is not None:
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > stale:
                        dead.append(Path(entry.path))
        return dead

    def sweep(self) -> int:
        """Merge dead workers' files into the archive; returns how many."""
        with self._lock:
            dead = self._dead()
            if not dead:
                return 0
            with self._flock(fcntl.LOCK_EX):
                return self._sweep_locked(dead)

    def _sweep_locked(self, dead: list[Path], *, force: bool = False) -> int:
        """Archive ``dead`` (under the exclusive lock); ``force``: also mend the archive."""
        disk_ok = self._see_archive(set_aside=True)
        if self._wait_for_a_copy():
            return 0  # dead workers' files wait: archiving would write over it
        archive = _Merged()
        archive.join(self._archive)
        already = set(archive.merged)
        if force:
            # Dead workers' files lost with the directory, as this worker last read them.
            for name in self._copies:
                owner = _owner(name)
                path = self.directory / name
                if owner and not self.is_alive(*owner) and not os.path.lexists(path):
                    dead.append(path)
        done = 0
        to_remove = []
        for path in dead:
            try:
                loaded = self._load(path, set_aside=True)
            except _OtherBounds:
                self._set_aside(path, "other bucket bounds")
                loaded = None
            except _Corrupt:
                loaded = None
            token = path.name[:-5]
            if token in already:
                to_remove.append(path)  # archived before the file was removed
                continue
            state = loaded[1] if loaded is not None else self._copy_of(path.name)
            if state is None:
                continue
            archive.add(state)
            archive.merged.append(token)
            already.add(token)
            to_remove.append(path)
        if to_remove or not disk_ok:
            if not archive.empty():
                data = json.dumps(archive.to_state(), separators=(",", ":")).encode()
                tmp = self.directory / f".tmp-archive-{self.pid}"
                _write_file(self.directory / _ARCHIVE, tmp, data)
                self._archive, self._archive_bytes = archive, data
            for path in to_remove:
                self._copies.pop(path.name, None)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f".tmp-{path.stem}").unlink()
                done += 1
        return done

    @property
    def _grace(self) -> float:
        # How long a scrape waits for a live worker to rewrite its lost file.
        return max(3 * self.config.interval, 1.0)

    def _copy_of(self, name: str) -> dict[str, Any] | None:
        data = self._copies.get(name)
        if data is None:
            return None
        c = self.collector
        return _parse(data, list(c.bounds), c.layout.counts_len, worker=True)

    # -------------------------------------------------------------- merging

    def merge(self) -> MergedView:
        """Merge the archive and every worker's file (no writing; mends damage it finds).

        Never below what this worker merged before, whatever happened to the
        files: a missing or damaged one is replaced by the copy kept from the
        last merge, until its worker rewrites it or it is archived.
        """
        with self._lock:
            c = self.collector
            merged = _Merged()
            damaged: list[Path] = []
            copies: dict[str, bytes] = {}
            with self._flock(fcntl.LOCK_SH):
                heal = not self._see_archive()
                now = self.clock()
                waiting = [_ARCHIVE] if self._wait_for_a_copy() else []
                merged.join(self._archive)
                archived = set(self._archive.merged)
                names = sorted(
                    e.name
                    for e in os.scandir(self.directory)
                    if e.name.startswith("w-") and e.name.endswith(".json")
                )
                for name in names:
                    if name == self.path.name:
                        continue
                    try:
                        loaded = self._load(self.directory / name)
                    except _OtherBounds:
                        c.record_internal_error("multiprocess.bounds_mismatch")
                        continue
                    except _Corrupt:
                        damaged.append(self.directory / name)
                        loaded = None
                    if loaded is not None:
                        copies[name] = loaded[0]
                        merged.add(loaded[1], live=True)
                still = {_ARCHIVE} if self._archive_damaged else set()
                for name, data in self._copies.items():
                    if name in copies or name[:-5] in archived:
                        continue
                    # Gone or damaged, and not archived: from this worker's copy.
                    heal = True
                    copies[name] = data
                    owner = _owner(name)
                    alive = owner is not None and self.is_alive(*owner)
                    if alive:
                        still.add(name)
                        if now - self._missing.setdefault(name, now) < self._grace:
                            waiting.append(name)  # its writer has newer figures: wait
                            continue
                    with contextlib.suppress(_Corrupt, _OtherBounds):
                        merged.add(self._copy_of(name) or {}, live=alive)
                self._missing = {k: v for k, v in self._missing.items() if k in still}
                if self._fresh is not None:
                    merged.add(self._fresh, live=True)
                self._copies = copies
            if heal or damaged:
                self._heal(damaged)
            if waiting:
                # Answering now would show less than an earlier scrape may have:
                # a failed scrape is a gap to Prometheus, a lower one a reset.
                raise MultiprocessDamaged(
                    f"{', '.join(sorted(waiting))} lost or damaged; waiting (at most "
                    f"{self._grace:g} s) for the workers that can write them again"
                )
            return MergedView(merged, c.bounds, c.quantiles, c.layout)
