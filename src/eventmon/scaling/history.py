"""Request history for the forecaster: per-minute counts in SQLite, or Prometheus.

* :class:`HistoryStore` -- a SQLite file (WAL mode) of ``minute -> count``. Several
  worker processes may write to the same file: each adds its own delta with
  ``count = count + excluded.count``, so no minute is lost or double counted.
  Rows older than ``retention`` are deleted and their pages given back, so the
  file stays bounded.
* :class:`HistoryRecorder` -- a background thread that adds, every minute, the
  change in ``collector.total_requests()`` to a store. It never raises into the
  app: failures are logged and counted with ``collector.internal_error``, and the
  unsaved delta is kept for the next minute.
* :class:`PrometheusHistory` -- the same reading interface over Prometheus's
  ``/api/v1/query_range``, for a fleet whose history Prometheus already holds.

Both sources implement :class:`HistorySource`; times are epoch seconds, buckets
are ``[start, start + step)`` aligned to ``step``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from eventmon._exceptions import ConfigurationError, EventmonError
from eventmon._validate import number, seconds

if TYPE_CHECKING:
    from eventmon.collector import MetricsCollector

__all__ = [
    "HistoryError",
    "HistoryRecorder",
    "HistorySource",
    "HistoryStore",
    "PrometheusHistory",
]

logger = logging.getLogger("eventmon.scaling")

MINUTE = 60


class HistoryError(EventmonError):
    """A history source could not be read (Prometheus down, bad answer, ...)."""


@runtime_checkable
class HistorySource(Protocol):
    """Where the forecaster reads past traffic from."""

    def requests(self, start: float, end: float, *, step: float = 60) -> list[tuple[float, float]]:
        """``(bucket_start, requests)`` for buckets in ``[start, end)`` that have data."""

    def instances(
        self, start: float, end: float, *, step: float = 3600
    ) -> list[tuple[float, float]]:
        """``(bucket_start, mean instances)``; empty if the source does not know."""


def _check_step(step: float) -> int:
    step = number("step", step, minimum=MINUTE, unit="seconds")
    if step % MINUTE:
        raise ConfigurationError(f"step must be a whole number of minutes in seconds, got {step!r}")
    return int(step)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    minute INTEGER PRIMARY KEY,   -- epoch seconds, a multiple of 60
    count INTEGER NOT NULL,
    instances INTEGER             -- fleet size seen in that minute, if known
)
"""

_UPSERT = """
INSERT INTO requests (minute, count, instances) VALUES (?, ?, ?)
ON CONFLICT (minute) DO UPDATE SET
    count = count + excluded.count,
    instances = CASE
        WHEN excluded.instances IS NULL THEN instances
        WHEN instances IS NULL THEN excluded.instances
        ELSE max(instances, excluded.instances)
    END
"""


class HistoryStore:
    """Per-minute request counts in a SQLite file that survives restarts.

    Args:
        path: the database file (created with its directory if missing).
        retention: seconds of history kept (default 35 days).
        clock: wall clock in epoch seconds, used for pruning.
        busy_timeout: seconds a writer waits for another process's lock.

    ``HistoryStore("/var/lib/app/traffic.db").add(time.time(), 42)``
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: float = 35 * 86400,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 10.0,
    ) -> None:
        self.retention = seconds("retention", retention, minimum=3600)
        busy_timeout = seconds("busy_timeout", busy_timeout, allow_zero=True)
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._last_prune = -math.inf
        with self._lock:
            # auto_vacuum only takes effect before the first table exists.
            self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigurationError(
                    f"{self.path}: SQLite refused WAL mode ({mode}); use a local disk"
                )
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA journal_size_limit = 4194304")
            self._db.execute(_SCHEMA)

    def add(self, minute: float, count: int, instances: int | None = None) -> None:
        """Add ``count`` requests to the minute containing ``minute`` (epoch seconds)."""
        self.add_many([(minute, count, instances)])

    def add_many(self, rows: Iterable[tuple[float, int, int | None]]) -> None:
        """Add several ``(minute, count, instances)`` rows in one transaction."""
        data = [(int(m // MINUTE) * MINUTE, int(c), i) for m, c, i in rows]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_UPSERT, data)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        now = self.clock()
        if now - self._last_prune >= 3600:
            self.prune(now)

    def prune(self, now: float | None = None) -> int:
        """Delete minutes older than the retention and free their pages; returns rows deleted."""
        now = self.clock() if now is None else now
        self._last_prune = now
        with self._lock:
            cur = self._db.execute("DELETE FROM requests WHERE minute < ?", (now - self.retention,))
            deleted = cur.rowcount
            if deleted:
                # executescript steps to the end; execute() would free one page only
                self._db.executescript("PRAGMA incremental_vacuum;")
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return max(deleted, 0)

    def requests(self, start: float, end: float, *, step: float = 60) -> list[tuple[float, float]]:
        s = _check_step(step)
        with self._lock:
            rows = self._db.execute(
                "SELECT (minute / ?) * ? AS b, sum(count) FROM requests"
                " WHERE minute >= ? AND minute < ? GROUP BY b ORDER BY b",
                (s, s, int(start), math.ceil(end)),
            ).fetchall()
        return [(float(b), float(c)) for b, c in rows]

    def instances(
        self, start: float, end: float, *, step: float = 3600
    ) -> list[tuple[float, float]]:
        s = _check_step(step)
        with self._lock:
            rows = self._db.execute(
                "SELECT (minute / ?) * ? AS b, avg(instances) FROM requests"
                " WHERE minute >= ? AND minute < ? AND instances IS NOT NULL"
                " GROUP BY b ORDER BY b",
                (s, s, int(start), math.ceil(end)),
            ).fetchall()
        return [(float(b), float(n)) for b, n in rows]

    def minutes(self) -> int:
        """How many minutes the store holds."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM requests").fetchone()[0])

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HistoryRecorder:
    """Adds each minute's new requests from a collector to a :class:`HistoryStore`.

    ``instances`` (optional) returns the current fleet size, stored beside the
    count so that the capacity per instance can be learned. :meth:`tick` does one
    step (tests call it with an injected ``clock``); :meth:`start` runs it every
    ``interval`` seconds on a daemon thread.
    """

    def __init__(
        self,
        store: HistoryStore,
        collector: MetricsCollector,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        instances: Callable[[], int | None] | None = None,
    ) -> None:
        self.interval = seconds("interval", interval)
        self.store = store
        self.collector = collector
        self.clock = clock
        self._instances = instances
        self._last_total: int | None = None
        self._since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> bool:
        """Store the requests since the last tick; returns whether a row was written."""
        try:
            now = self.clock()
            total = self.collector.total_requests()
            if self._last_total is None:
                self._last_total, self._since = total, now
                return False
            # A smaller total means the collector was replaced: count from zero.
            delta = total - self._last_total if total >= self._last_total else total
            fleet = self._instances() if self._instances is not None else None
            self.store.add(self._since, delta, fleet)
            self._last_total, self._since = total, now
            return True
        except Exception:
            self.collector.internal_error("history.recorder")
            return False

    def start(self) -> None:
        """Start recording in the background; idempotent."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.tick()  # the baseline
        self._thread = threading.Thread(target=self._run, name="eventmon-history", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval - (self.clock() % self.interval)):
            self.tick()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after saving the last partial minute; idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            self.tick()


class PrometheusHistory:
    """Request history from a Prometheus server's ``query_range`` API.

    ``query`` is PromQL for the requests in one bucket; ``{range}`` is replaced by
    the step (``"3600s"``). ``instances_query`` (optional) gives the fleet size.

    ``PrometheusHistory("http://127.0.0.1:9090").requests(t0, t1, step=3600)``
    """

    MAX_POINTS = 10_000  # Prometheus refuses more than 11,000 points per series

    def __init__(
        self,
        url: str,
        *,
        query: str = "sum(increase(http_requests_total[{range}]))",
        instances_query: str | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigurationError(f"Prometheus url must be http(s)://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self.query = query
        self.instances_query = instances_query
        self.timeout = seconds("timeout", timeout)
        self.headers = dict(headers or {})

    def requests(self, start: float, end: float, *, step: float = 60) -> list[tuple[float, float]]:
        s = _check_step(step)
        return self._range(self.query.replace("{range}", f"{s}s"), start, end, s)

    def instances(
        self, start: float, end: float, *, step: float = 3600
    ) -> list[tuple[float, float]]:
        if self.instances_query is None:
            return []
        s = _check_step(step)
        return self._range(self.instances_query.replace("{range}", f"{s}s"), start, end, s)

    def _range(self, query: str, start: float, end: float, step: int) -> list[tuple[float, float]]:
        # A point at T covers (T - step, T]: it is the bucket that starts at T - step.
        first = (math.floor(start / step) + 1) * step
        last = math.ceil(end / step) * step
        sums: dict[float, float] = {}
        while first <= last:
            chunk_end = min(last, first + (self.MAX_POINTS - 1) * step)
            for series in self._get(query, first, chunk_end, step):
                for ts, value in series.get("values", []):
                    v = float(str(value))
                    if math.isfinite(v):
                        b = float(str(ts)) - step
                        sums[b] = sums.get(b, 0.0) + v
            first = chunk_end + step
        return sorted((b, v) for b, v in sums.items() if start <= b + step and b < end)

    def _get(
        self, query: str, start: float, end: float, step: int
    ) -> list[dict[str, list[list[object]]]]:
        params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": step})
        req = urllib.request.Request(
            f"{self.url}/api/v1/query_range?{params}", headers=self.headers
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            body = e.read()
            detail = _error_detail(body) or f"HTTP {e.code}"
            raise HistoryError(f"Prometheus query_range failed: {detail}") from e
        except (urllib.error.URLError, OSError) as e:
            raise HistoryError(f"cannot reach Prometheus at {self.url}: {e}") from e
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise HistoryError(f"Prometheus answered with something that is not JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("status") != "success":
            detail = _error_detail(body) or "no status 'success'"
            raise HistoryError(f"Prometheus query_range failed: {detail}")
        data = doc.get("data") or {}
        if data.get("resultType") != "matrix":
            raise HistoryError(
                f"expected a matrix from query_range, got {data.get('resultType')!r}"
            )
        result = data.get("result")
        if not isinstance(result, list):
            raise HistoryError("query_range answer has no result list")
        return result


def _error_detail(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(doc, dict) or "error" not in doc:
        return ""
    return f"{doc.get('errorType', 'error')}: {doc['error']}"
