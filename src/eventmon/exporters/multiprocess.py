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
either in its file or in the archive, never in both and never in neither. See
``docs/multiprocess.md`` for crash safety.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventmon._exceptions import ConfigurationError
from eventmon.collector import SeriesSnapshot
from eventmon.core.histogram import HdrLayout
from eventmon.core.process import rss_bytes
from eventmon.core.registry import escape_label_value

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector
    from eventmon.exporters.prometheus import ProcessSample

__all__ = [
    "ENV_DIR",
    "ENV_INTERVAL",
    "MergedView",
    "MultiprocessConfig",
    "WorkerAggregator",
    "disable",
    "enable",
    "process_alive",
]

logger = logging.getLogger("eventmon")

#: The one setting: the directory where workers keep their state.
ENV_DIR = "EVENTMON_MULTIPROC_DIR"
#: Seconds between a worker's periodic writes (default 1): what a SIGKILL can lose.
ENV_INTERVAL = "EVENTMON_MULTIPROC_INTERVAL"

_FORMAT = 1
_ARCHIVE = "archive.json"
_LOCK = ".lock"
_KEEP_MERGED = 4096  # tokens of archived workers remembered against double merging
_MICROS = 1_000_000


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


# ------------------------------------------------------------------ merged state


class _Merged:
    """Sum of worker states; also the archive's content."""

    __slots__ = (
        "counter_labels",
        "counters",
        "cpu",
        "errors",
        "gauge_labels",
        "gauges",
        "hdr",
        "inflight",
        "merged",
        "processes",
        "series",
        "slow",
        "workers",
    )

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, str], list[Any]] = {}  # [count, sum, [buckets]]
        self.hdr: dict[str, dict[int, int]] = {}
        self.slow: dict[tuple[str, str], int] = {}
        self.errors: dict[str, int] = {}
        self.counters: dict[str, dict[tuple[str, ...], float]] = {}
        self.counter_labels: dict[str, tuple[str, ...]] = {}
        self.gauges: dict[str, dict[tuple[str, ...], float]] = {}
        self.gauge_labels: dict[str, tuple[str, ...]] = {}
        self.cpu = 0.0  # CPU seconds of exited workers
        self.inflight = 0
        self.merged: list[str] = []  # tokens of workers already in the archive
        self.processes: list[ProcessSample] = []
        self.workers = 0

    def add(self, state: Mapping[str, Any], sign: int = 1, *, live: bool = False) -> None:
        """Add (or with ``sign=-1`` subtract) one state document."""
        series = self.series
        for method, endpoint, status, count, total, buckets in state.get("series", ()):
            key = (method, endpoint, status)
            acc = series.get(key)
            if acc is None:
                series[key] = [sign * count, sign * total, [sign * b for b in buckets]]
            else:
                acc[0] += sign * count
                acc[1] += sign * total
                acc_b = acc[2]
                for i, b in enumerate(buckets):
                    acc_b[i] += sign * b
        hdr = self.hdr
        for endpoint, flat in state.get("hdr", {}).items():
            acc_h = hdr.get(endpoint)
            if acc_h is None:
                acc_h = hdr[endpoint] = {}
            it = iter(flat)
            for i, c in zip(it, it, strict=True):
                acc_h[i] = acc_h.get(i, 0) + sign * c
        for method, endpoint, n in state.get("slow", ()):
            k2 = (method, endpoint)
            self.slow[k2] = self.slow.get(k2, 0) + sign * n
        for where, n in state.get("errors", {}).items():
            self.errors[where] = self.errors.get(where, 0) + sign * n
        for name, values, v in state.get("counters", ()):
            per = self.counters.setdefault(name, {})
            k = tuple(values)
            per[k] = per.get(k, 0) + sign * v
        for name, names in state.get("counter_labels", {}).items():
            self.counter_labels.setdefault(name, tuple(names))
        self.cpu += sign * state.get("cpu_exited", 0.0)
        for token in state.get("merged", ()):
            self.merged.append(token)
        if live:
            self.workers += 1
            self.inflight += state.get("inflight", 0)
            pid = str(state.get("pid", "?"))
            self.processes.append((f'worker="{pid}"', state.get("cpu", 0.0), state.get("rss", 0)))
            for name, values, v in state.get("gauges", ()):
                key = (*values, pid)
                self.gauges.setdefault(name, {})[key] = v
            for name, names in state.get("gauge_labels", {}).items():
                self.gauge_labels.setdefault(name, (*names, "worker"))
        elif sign > 0:
            self.cpu += state.get("cpu", 0.0) if "token" in state else 0.0

    def to_state(self) -> dict[str, Any]:
        """This sum as a state document (the archive's format)."""
        return {
            "format": _FORMAT,
            "series": [[m, e, s, a[0], a[1], a[2]] for (m, e, s), a in self.series.items()],
            "hdr": {
                ep: [x for i in sorted(h) if h[i] for x in (i, h[i])] for ep, h in self.hdr.items()
            },
            "slow": [[m, e, n] for (m, e), n in self.slow.items()],
            "errors": dict(self.errors),
            "counters": [
                [name, list(k), v] for name, per in self.counters.items() for k, v in per.items()
            ],
            "counter_labels": {k: list(v) for k, v in self.counter_labels.items()},
            "cpu_exited": self.cpu,
            "merged": self.merged[-_KEEP_MERGED:],
        }


class MergedView:
    """All workers merged, read like a collector by :func:`render_families`."""

    def __init__(
        self,
        merged: _Merged,
        bounds: tuple[float, ...],
        quantiles: tuple[float, ...],
        layout: HdrLayout,
    ) -> None:
        self._m = merged
        self.bounds = bounds
        self.quantiles = quantiles
        self.layout = layout
        self.workers = merged.workers

    def series(self) -> list[SeriesSnapshot]:
        out = []
        for (method, endpoint, status), (count, total, buckets) in self._m.series.items():
            labels = (
                f'method="{escape_label_value(method)}",'
                f'endpoint="{escape_label_value(endpoint)}",'
                f'status_code="{escape_label_value(status)}"'
            )
            out.append(
                SeriesSnapshot(method, endpoint, status, labels, count, total, tuple(buckets))
            )
        return out

    def endpoints(self) -> list[str]:
        return [ep for ep, h in self._m.hdr.items() if any(h.values())]

    def percentiles_at(self, ps: Sequence[float]) -> dict[str, list[float]]:
        """Per endpoint, percentiles ``ps`` (0–100) in seconds, from the merged HDR counts."""
        layout = self.layout
        out: dict[str, list[float]] = {}
        for endpoint, counts in self._m.hdr.items():
            slots = sorted((i, c) for i, c in counts.items() if c > 0)
            total = sum(c for _, c in slots)
            if not total:
                continue
            values = []
            for p in ps:
                # Nearest rank, reported as the top of the slot: as LatencyHistogram does.
                rank = max(1, _ceil(p / 100.0 * total - 1e-9))
                seen = 0
                for i, c in slots:
                    seen += c
                    if seen >= rank:
                        values.append(layout.highest_equivalent(i) / _MICROS)
                        break
            out[endpoint] = values
        return out

    def endpoint_percentiles(self) -> dict[str, list[float]]:
        return self.percentiles_at([q * 100.0 for q in self.quantiles])

    def in_progress(self) -> int:
        return max(self._m.inflight, 0)

    def slow_requests(self) -> dict[tuple[str, str], int]:
        return dict(self._m.slow)

    def internal_errors(self) -> dict[str, int]:
        return dict(self._m.errors)

    def counters(self) -> dict[str, dict[tuple[str, ...], float]]:
        return {k: dict(v) for k, v in self._m.counters.items()}

    def counter_labels(self, name: str) -> tuple[str, ...]:
        return self._m.counter_labels.get(name, ())

    def gauges(self) -> dict[str, dict[tuple[str, ...], float]]:
        return {k: dict(v) for k, v in self._m.gauges.items()}

    def gauge_labels(self, name: str) -> tuple[str, ...]:
        return self._m.gauge_labels.get(name, ("worker",))

    def processes(self) -> list[ProcessSample]:
        """Per live worker (``worker="<pid>"``) CPU and memory; exited workers' CPU."""
        out = sorted(self._m.processes)
        out.append(('worker="exited"', self._m.cpu, None))
        return out


def _ceil(x: float) -> int:
    i = int(x)
    return i + 1 if x > i else i


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
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / _LOCK).touch(exist_ok=True)

    def _set_identity(self) -> None:
        self.pid, self.start_ticks = self._fixed_identity or _identity()
        self.generation = 0
        self.seq = 0
        self._written = False
        self._baseline: _Merged | None = None
        self._hdr_cache: dict[str, tuple[int, list[int]]] = {}
        self._last_sweep = 0.0
        self._last_state: dict[str, Any] = {}

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
            self.write()
            now = self.clock()
            if now - self._last_sweep >= max(10 * self.config.interval, 5.0):
                self._last_sweep = now
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
                self.write()
            except Exception:
                self.collector.internal_error("multiprocess.exit")

    def server_stopping(self) -> None:
        """Write now: the server has drained its requests (ASGI lifespan shutdown).

        uvicorn ends a graceful shutdown by re-raising SIGTERM with its default
        action, so ``atexit`` never runs there; this write is what keeps every
        request a drained worker served. Never raises.
        """
        try:
            self.write()
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
            "inflight": c.in_progress(),
            "cpu": times.user + times.system,
            "rss": rss_bytes(),
        }

    def write(self) -> None:
        """Write this worker's state file now (atomically)."""
        with self._lock:
            state = self.dump()
            with self._flock(fcntl.LOCK_SH):
                if self._written and not self.path.exists():
                    # Archived while alive (stale_after): the archive holds what we
                    # last wrote; from now on write only what came after it.
                    self._rebase()
                    state = self.dump()
                if self._baseline is not None:
                    state = self._minus_baseline(state)
                data = json.dumps(state, separators=(",", ":")).encode()
                tmp = self.directory / f".tmp-{self.token}"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            self.seq += 1
            self._written = True
            self._last_state = state

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

    @contextlib.contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the lock

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
            parts = name[2:-5].split("-")
            try:
                pid, start = int(parts[0]), parts[1]
            except (IndexError, ValueError):
                continue
            if not self.is_alive(pid, start):
                dead.append(Path(entry.path))
            elif stale is not None:
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat().st_mtime > stale:
                        dead.append(Path(entry.path))
        return dead

    def sweep(self) -> int:
        """Merge dead workers' files into the archive; returns how many."""
        dead = self._dead()
        if not dead:
            return 0
        done = 0
        with self._flock(fcntl.LOCK_EX):
            archive = _Merged()
            archive.add(self._read_archive())
            already = set(archive.merged)
            to_remove = []
            for path in dead:
                try:
                    state = json.loads(path.read_bytes())
                except FileNotFoundError:
                    continue  # another worker archived it first
                except ValueError:
                    self.collector.internal_error("multiprocess.corrupt")
                    path.replace(path.with_suffix(".corrupt"))
                    continue
                token = state.get("token", path.stem)
                if token not in already:
                    archive.add(state)
                    archive.merged.append(token)
                    already.add(token)
                to_remove.append(path)
            if to_remove:
                self._write_archive(archive.to_state())
                for path in to_remove:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    with contextlib.suppress(FileNotFoundError):
                        (self.directory / f".tmp-{path.stem}").unlink()
                    done += 1
        return done

    def _read_archive(self) -> dict[str, Any]:
        # Read afresh every time: a cache keyed on inode, size and mtime can be
        # fooled by inode reuse within one coarse mtime tick, and a stale archive
        # written back would lose counts.
        try:
            state: dict[str, Any] = json.loads((self.directory / _ARCHIVE).read_bytes())
        except FileNotFoundError:
            return {}
        return state

    def _write_archive(self, state: dict[str, Any]) -> None:
        tmp = self.directory / f".tmp-archive-{self.pid}"
        with open(tmp, "wb") as f:
            f.write(json.dumps(state, separators=(",", ":")).encode())
        os.replace(tmp, self.directory / _ARCHIVE)

    # -------------------------------------------------------------- reading

    def scrape(self) -> tuple[MergedView, list[ProcessSample]]:
        """Write this worker's file, archive dead workers, merge everything."""
        self.write()
        self.sweep()
        merged = self.merge()
        return merged, merged.processes()

    def view(self) -> MergedView:
        """Every worker merged (for exporters); same as a scrape's."""
        return self.scrape()[0]

    def merge(self) -> MergedView:
        """Merge the archive and every live worker's file (no writing, no archiving)."""
        c = self.collector
        merged = _Merged()
        with self._flock(fcntl.LOCK_SH):
            merged.add(self._read_archive())
            names = sorted(
                e.name
                for e in os.scandir(self.directory)
                if e.name.startswith("w-") and e.name.endswith(".json")
            )
            for name in names:
                try:
                    state = json.loads((self.directory / name).read_bytes())
                except (FileNotFoundError, ValueError):
                    c.internal_error("multiprocess.read")
                    continue
                if state.get("bounds") != list(c.bounds):
                    c.record_internal_error("multiprocess.bounds_mismatch")
                    continue
                merged.add(state, live=True)
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
            interval = float(raw)
        except ValueError:
            raise ConfigurationError(f"{ENV_INTERVAL} must be seconds > 0, got {raw!r}") from None
    if not interval > 0:
        raise ConfigurationError(f"interval must be seconds > 0, got {interval!r}")
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
