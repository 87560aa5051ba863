"""Worker aggregation for pre-fork servers (gunicorn, ``uvicorn --workers``).

Turned on by one setting: the environment variable ``EVENTMON_MULTIPROC_DIR``
(a directory private to this server on this host), read when the process-wide
collector (:func:`eventmon.default_collector`) is made; or by :func:`enable`. Then:

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
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from eventmon._exceptions import ConfigurationError
from eventmon._validate import seconds
from eventmon.exporters.multiprocess._files import (
    ENV_DIR,
    MultiprocessConfig,
    MultiprocessDamaged,
    process_alive,
)
from eventmon.exporters.multiprocess._view import MergedView
from eventmon.exporters.multiprocess._worker import WorkerAggregator

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector

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

#: Seconds between a worker's periodic writes (default 1): what a SIGKILL can lose.
ENV_INTERVAL = "EVENTMON_MULTIPROC_INTERVAL"


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
