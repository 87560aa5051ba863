"""The worker's side: its writer thread, its state document, its scrapes.

:class:`WorkerAggregator` writes this worker's whole state every ``interval``
seconds (a daemon thread), at each scrape it serves and at exit; what it does
with the other workers' files (archiving, copies, healing, merging) is
:class:`~eventmon.exporters.multiprocess._archive._Keeper`'s.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eventmon.core.process import rss_bytes
from eventmon.exporters.multiprocess._archive import _Keeper
from eventmon.exporters.multiprocess._files import (
    MultiprocessConfig,
    _identity,
    _prepare_directory,
    _write_file,
    process_alive,
)
from eventmon.exporters.multiprocess._schema import _FORMAT, _FORMAT_EXTRA
from eventmon.exporters.multiprocess._state import _Merged
from eventmon.exporters.multiprocess._view import MergedView

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector
    from eventmon.exporters.prometheus import ProcessSample

logger = logging.getLogger("eventmon")


class WorkerAggregator(_Keeper):
    """Writes this worker's state and merges every worker's at scrape time.

    Created by :func:`enable` (which :func:`eventmon.default_collector` calls when
    ``EVENTMON_MULTIPROC_DIR`` is set). ``identity`` and ``is_alive`` are for tests
    that simulate workers.
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
        self._forget_copies()
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
        extra = c.extra_label_names
        blank = [""] * len(extra)
        # With extra request labels (format 2) each row carries their values.
        series = [
            [s.method, s.endpoint, s.status_code, s.count, s.sum, list(s.buckets)]
            + ([list(s.extra) or blank] if extra else [])
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
        sizes = [
            [kind, [*values[:3], *(values[3:] or blank)], counts, total]
            for kind, per in c.size_histograms().items()
            for values, (counts, total) in per.items()
        ]
        exemplars: list[list[Any]] = []
        for (m, e, s), per in c.exemplars_by_series().items():
            template, values = _split_endpoint(e, blank)
            exemplars += ([m, template, s, values, bucket, *ex] for bucket, ex in per.items())
        times = os.times()
        return {
            "format": _FORMAT_EXTRA if extra else _FORMAT,
            **({"extra_labels": list(extra)} if extra else {}),
            "token": self.token,
            "pid": self.pid,
            "seq": self.seq + 1,
            "time": self.clock(),
            "bounds": list(c.bounds),
            "series": series,
            "hdr": hdr,
            "slow": [
                [m, e, n, *([list(v) or blank] if extra else [])]
                for (m, e, *v), n in c.slow_requests().items()
            ],
            "errors": c.internal_errors(),
            "counters": [
                [name, list(k), v] for name, per in counters.items() for k, v in per.items()
            ],
            "counter_labels": {name: list(c.counter_labels(name)) for name in counters},
            "counter_help": {n: text for n in counters if (text := c.counter_help(n))},
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
            **({"sizes": sizes} if sizes else {}),
            **({"exemplars": exemplars} if exemplars else {}),
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


def _split_endpoint(endpoint: str | tuple[str, ...], blank: list[str]) -> tuple[str, list[str]]:
    """(template, extra values) of an endpoint as recorded; blanks if it has none."""
    if type(endpoint) is str:
        return endpoint, list(blank)
    return endpoint[0], list(endpoint[1:]) or list(blank)
