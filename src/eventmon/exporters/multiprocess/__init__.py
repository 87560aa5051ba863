"""Worker aggregation for pre-fork servers (gunicorn, ``uvicorn --workers``).

Turned on by one setting: the environment variable ``EVENTMON_MULTIPROC_DIR``
(a directory private to this server on this host), or :func:`enable`. Then:

* every worker writes its **whole** aggregate state (per series count, sum and
  buckets; per endpoint HDR counts, sparse; slow requests; internal errors; user
  counters and gauges; in-flight requests; its CPU time and memory) to one file
  of its own, ``w-<pid>-<start>.json``, atomically (temp file + ``os.replace``),
  every ``interval`` seconds from a daemon thread, at every scrape it serves,
  and at exit;
* a scrape served by any worker merges the live workers' files and one
  ``archive.json`` (HDR counts are summed, so percentiles are those of all
  requests, not averages of per-worker percentiles);
* a worker found dead (its pid is gone, or now belongs to a process started at
  another time) is merged into the archive under an exclusive ``fcntl`` lock and
  its file removed: counters never go backwards, and a scrape reads one file per
  *live* worker plus the archive, however many workers have come and gone.

Readers hold a shared lock while they read the archive and the worker files, and
archiving takes the exclusive lock, so a scrape sees a dead worker's counts
either in its file or in the archive, never in both and never in neither.

Damage heals: every worker keeps copies of the archive and of the other workers'
files; a removed directory is made again, a damaged file moved aside, and the
archive rebuilt from the copies figure by figure (the larger value, never the
sum). See ``docs/multiprocess.md`` for crash safety and the exact guarantee.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventmon._exceptions import ConfigurationError
from eventmon._validate import seconds
from eventmon.core.process import rss_bytes
from eventmon.exporters.multiprocess._files import (
    _ARCHIVE,
    ENV_DIR,
    MultiprocessDamaged,
    _flock,
    _identity,
    _owner,
    _prepare_directory,
    _read_file,
    _write_file,
    process_alive,
)
from eventmon.exporters.multiprocess._state import (
    _FORMAT,
    _Corrupt,
    _Merged,
    _OtherBounds,
    _parse,
)
from eventmon.exporters.multiprocess._view import MergedView

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector
    from eventmon.exporters.prometheus import ProcessSample

__all__ = [
    "ENV_DIR",
    "ENV_INTERVAL",
    "MergedView",
    "MultiprocessConfig",
    "MultiprocessDamaged",
    "WorkerAggregator",
    "disable",
    "enable",
    "process_alive",
]

logger = logging.getLogger("eventmon")

#: Seconds between a worker's periodic writes (default 1): what a SIGKILL can lose.
ENV_INTERVAL = "EVENTMON_MULTIPROC_INTERVAL"


@dataclass(frozen=True, slots=True)
class MultiprocessConfig:
    """Where and how often workers write their state.

    ``stale_after``: also archive a file not rewritten for this many seconds even
    if its pid looks alive (off by default: pid plus start time is exact on Linux).
    """

    directory: Path
    interval: float = 1.0
    stale_after: float | None = None


# ---------------------------------------------------------------------- worker


class WorkerAggregator:
    """Writes this worker's state and merges every worker's at scrape time.

    Created by :func:`enable` (or by the collector itself when ``EVENTMON_MULTIPROC_DIR``
    is set). ``identity`` and ``is_alive`` are for tests that simulate workers.
    """

    def __init__(
        self,
        collector: MetricsCollector,
        config: MultiprocessConfig,
        *,
        identity: tuple[int, str] | None = None,
        is_alive: Callable[[int, str], bool] = process_alive,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.collector = collector
        self.config = config
        self.directory = config.directory
        self.is_alive = is_alive
        self.clock = clock
        self._fixed_identity = identity
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._set_identity()
        # This worker's copies, to mend the directory if it is damaged: of the
        # archive (every figure at least that of the last archive seen), and of
        # each worker file as last merged (bytes, checked when read).
        self._archive = _Merged()
        self._archive_bytes = b""
        self._copies: dict[str, bytes] = {}
        self._missing: dict[str, float] = {}  # files waited for, since when
        self._archive_damaged = False
        _prepare_directory(self.directory)

    def _set_identity(self) -> None:
        self.pid, self.start_ticks = self._fixed_identity or _identity()
        self.generation = 0
        self.seq = 0
        self._written = False
        self._baseline: _Merged | None = None
        self._hdr_cache: dict[str, tuple[int, list[int]]] = {}
        self._last_state: dict[str, Any] = {}
        self._fresh: dict[str, Any] | None = None  # the state last written (or tried)

    @property
    def token(self) -> str:
        gen = f"-g{self.generation}" if self.generation else ""
        return f"w-{self.pid}-{self.start_ticks}{gen}"

    @property
    def path(self) -> Path:
        return self.directory / f"{self.token}.json"

    # ------------------------------------------------------------ lifecycle

    def start(self) -> WorkerAggregator:
        """Start the periodic writer thread (once per process)."""
        if self._thread is None and not self._closed:
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, name="eventmon-multiproc", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.config.interval):
            self._tick()

    def _tick(self) -> None:
        try:
            with self._lock:
                archive_ok = self.write()
                if self._refresh_copies() or not archive_ok:
                    self._heal()
                self.sweep()
        except Exception:
            self.collector.internal_error("multiprocess.write")

    def _pause(self) -> None:
        """Before fork: stop the writer so that no lock is held across the fork."""
        thread = self._thread
        if thread is not None:
            self._stop.set()
            thread.join(5.0)
            self._thread = None

    def _after_fork_child(self) -> None:
        self._lock = threading.RLock()
        self._thread = None
        if self._fixed_identity is None:
            self._set_identity()
        self.start()

    def close(self, *, final_write: bool = True) -> None:
        """Stop the writer and write a last time; idempotent."""
        if self._closed:
            return
        self._pause()
        self._closed = True
        if final_write:
            try:
                self.write(last=True)
            except Exception:
                self.collector.internal_error("multiprocess.exit")

    def server_stopping(self) -> None:
        """Write now: the server has drained its requests (ASGI lifespan shutdown).

        uvicorn ends a graceful shutdown by re-raising SIGTERM with its default
        action, so ``atexit`` never runs there; this write is what keeps every
        request a drained worker served. Never raises.
        """
        try:
            self.write(last=True)
        except Exception:
            self.collector.internal_error("multiprocess.shutdown")

    # -------------------------------------------------------------- writing

    def dump(self) -> dict[str, Any]:
        """This worker's cumulative state as a document."""
        c = self.collector
        series = [
            [s.method, s.endpoint, s.status_code, s.count, s.sum, list(s.buckets)]
            for s in c.series()
        ]
        hdr: dict[str, list[int]] = {}
        cache = self._hdr_cache
        for endpoint in c.endpoints():
            h = c.histogram(endpoint)
            cached = cache.get(endpoint)
            if cached is None or cached[0] != h.total:
                counts = h.counts
                flat = [x for i, n in enumerate(counts) if n for x in (i, n)]
                cached = cache[endpoint] = (h.total, flat)
            if cached[0]:
                hdr[endpoint] = cached[1]
        counters = c.counters()
        gauges = c.gauges()
        histograms = c.histograms()
        times = os.times()
        return {
            "format": _FORMAT,
            "token": self.token,
            "pid": self.pid,
            "seq": self.seq + 1,
            "time": self.clock(),
            "bounds": list(c.bounds),
            "series": series,
            "hdr": hdr,
            "slow": [[m, e, n] for (m, e), n in c.slow_requests().items()],
            "errors": c.internal_errors(),
            "counters": [
                [name, list(k), v] for name, per in counters.items() for k, v in per.items()
            ],
            "counter_labels": {name: list(c.counter_labels(name)) for name in counters},
            "gauges": [[name, list(k), v] for name, per in gauges.items() for k, v in per.items()],
            "gauge_labels": {name: list(c.gauge_labels(name)) for name in gauges},
            "histograms": [
                [name, list(k), list(counts), total]
                for name, h in histograms.items()
                for k, (counts, total) in h.samples.items()
            ],
            "histogram_meta": {
                name: [h.help, list(h.label_names), list(h.bounds)]
                for name, h in histograms.items()
            },
            "inflight": c.in_progress(),
            "cpu": times.user + times.system,
            "rss": rss_bytes(),
        }

    def write(self, *, last: bool = False) -> bool:
        """Write this worker's state file now (atomically).

        Returns False if ``archive.json`` holds less than this worker's copy of it
        (lost or damaged): the caller heals it (:meth:`_heal`). ``last``: the
        write at exit, which makes a removed directory again only if its parent
        is still there (a test's or benchmark's temporary tree is gone for good).
        """
        with self._lock:
            state = self.dump()
            self._ensure_dir(parents=not last)
            with self._flock(fcntl.LOCK_SH):
                archive_ok = self._see_archive()
                if self._written and not os.path.lexists(self.path):
                    if self.token in self._archive.merged:
                        # Archived while alive (stale_after): the archive holds what we
                        # last wrote; from now on write only what came after it.
                        self._rebase()
                        state = self.dump()
                    else:
                        # Not archived, so removed by something else: write the whole
                        # state again (it is all in memory).
                        logger.warning("eventmon: %s vanished; writing it again", self.path)
                        self.collector.record_internal_error("multiprocess.damaged")
                if self._baseline is not None:
                    state = self._minus_baseline(state)
                self._fresh = state
                data = json.dumps(state, separators=(",", ":")).encode()
                _write_file(self.path, self.directory / f".tmp-{self.token}", data)
            self.seq += 1
            self._written = True
            self._last_state = state
            return archive_ok

    def _rebase(self) -> None:
        logger.warning("eventmon: %s was archived while alive; continuing", self.token)
        base = _Merged()
        if self._baseline is not None:
            base.add(self._baseline.to_state())
        base.add(self._last_state)
        self._baseline = base
        self.generation += 1
        self._written = False

    def _minus_baseline(self, state: dict[str, Any]) -> dict[str, Any]:
        assert self._baseline is not None
        diff = _Merged()
        diff.add(state)
        diff.add(self._baseline.to_state(), -1)
        out = dict(state)
        out.update(diff.to_state())
        out["merged"] = []
        out["cpu_exited"] = 0.0
        return out

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

    # -------------------------------------------------------------- reading

    def scrape(self) -> tuple[MergedView, list[ProcessSample]]:
        """Write this worker's file, archive dead workers, merge everything."""
        with self._lock:
            try:
                self.write()
                self.sweep()
            except Exception:
                # The merge below still shows this worker's counts (from memory)
                # and the others' (their files, or this worker's copies of them).
                self.collector.internal_error("multiprocess.write")
            merged = self.merge()
            return merged, merged.processes()

    def view(self) -> MergedView:
        """Every worker merged (for exporters); same as a scrape's."""
        return self.scrape()[0]

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


# --------------------------------------------------------------- enable/disable

_registered: weakref.WeakSet[WorkerAggregator] = weakref.WeakSet()
_hooks_installed = False


def _before_fork() -> None:
    for agg in list(_registered):
        agg._pause()


def _after_fork_parent() -> None:
    for agg in list(_registered):
        if not agg._closed:
            agg.start()


def _after_fork_child() -> None:
    for agg in list(_registered):
        if not agg._closed:
            agg._after_fork_child()


def _at_exit() -> None:
    for agg in list(_registered):
        agg.close()


def enable(
    collector: MetricsCollector,
    directory: str | os.PathLike[str] | None = None,
    *,
    interval: float | None = None,
    stale_after: float | None = None,
    identity: tuple[int, str] | None = None,
    is_alive: Callable[[int, str], bool] = process_alive,
    start: bool = True,
) -> WorkerAggregator:
    """Merge ``collector``'s workers: scrapes from any worker show all of them.

    ``directory`` defaults to ``$EVENTMON_MULTIPROC_DIR``; ``interval`` (seconds
    between periodic writes) to ``$EVENTMON_MULTIPROC_INTERVAL`` or 1.
    """
    global _hooks_installed
    if collector.multiprocess is not None:
        agg: WorkerAggregator = collector.multiprocess
        return agg
    raw_dir = directory if directory is not None else os.environ.get(ENV_DIR)
    if not raw_dir:
        raise ConfigurationError(
            f"worker aggregation needs a directory: set {ENV_DIR} or pass directory="
        )
    if interval is None:
        raw = os.environ.get(ENV_INTERVAL, "1")
        try:
            interval = seconds(ENV_INTERVAL, float(raw))
        except (ValueError, ConfigurationError):
            raise ConfigurationError(
                f"{ENV_INTERVAL} must be a finite number of seconds > 0 (e.g. 1), got {raw!r}"
            ) from None
    # inf, or more than threading can wait, would kill the writer thread at once.
    interval = seconds("interval", interval)
    if stale_after is not None:
        stale_after = seconds("stale_after", stale_after)
    if stale_after is not None and not stale_after > 2 * interval:
        raise ConfigurationError(
            f"stale_after must exceed twice the interval ({2 * interval} s), got {stale_after!r}"
        )
    config = MultiprocessConfig(Path(raw_dir), float(interval), stale_after)
    agg = WorkerAggregator(collector, config, identity=identity, is_alive=is_alive)
    collector.multiprocess = agg
    _registered.add(agg)
    if not _hooks_installed:
        _hooks_installed = True
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_parent,
            after_in_child=_after_fork_child,
        )
        atexit.register(_at_exit)
    if start:
        agg.start()
    return agg


def disable(collector: MetricsCollector) -> None:
    """Stop aggregating ``collector`` (writes a last time); scrapes show it alone again."""
    agg = collector.multiprocess
    if agg is not None:
        agg.close()
        _registered.discard(agg)
        collector.multiprocess = None
