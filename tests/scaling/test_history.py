from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eventmon import ConfigurationError, MetricsCollector
from eventmon.scaling.history import (
    HistoryError,
    HistoryRecorder,
    HistorySource,
    HistoryStore,
    PrometheusHistory,
)
from servers import free_port, prometheus_server, require_binary

T0 = 1_700_000_040.0  # a minute boundary


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ SQLite store


def test_upsert_sums_per_minute_and_buckets_by_step(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.db", clock=Clock(T0)) as store:
        assert isinstance(store, HistorySource)
        store.add(T0 + 1, 5)
        store.add(T0 + 59.9, 7)  # same minute
        store.add(T0 + 60, 2)
        store.add_many([(T0 + 3600 + 5, 10, None), (T0 + 3600 + 65, 1, None)])
        assert store.requests(T0, T0 + 7200) == [
            (T0, 12.0),
            (T0 + 60, 2.0),
            (T0 + 3600, 10.0),
            (T0 + 3660, 1.0),
        ]
        hour = (T0 // 3600) * 3600
        assert store.requests(hour, hour + 7200, step=3600) == [(hour, 14.0), (hour + 3600, 11.0)]
        assert store.requests(T0 + 60, T0 + 120) == [(T0 + 60, 2.0)]  # [start, end)
        assert store.minutes() == 4
        with pytest.raises(ConfigurationError, match="whole number of minutes"):
            store.requests(T0, T0 + 60, step=90)


def test_store_survives_restart_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "h.db"
    with HistoryStore(path, clock=Clock(T0)) as store:
        store.add(T0, 3, instances=2)
    with HistoryStore(path, clock=Clock(T0)) as again:
        again.add(T0, 4, instances=5)
        assert again.requests(T0, T0 + 60) == [(T0, 7.0)]
        assert again.instances(T0, T0 + 60, step=60) == [(T0, 5.0)]  # the larger fleet wins
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def _writer(path: str, worker: int, minutes: int, start: multiprocessing.synchronize.Event) -> None:
    store = HistoryStore(path, clock=lambda: T0)
    start.wait(10)
    for m in range(minutes):
        store.add(T0 + m * 60, 1 + worker)  # one transaction per minute: maximum contention
    store.close()


def test_concurrent_writers_from_several_processes_lose_no_minute(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    HistoryStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers, minutes = 4, 300
    procs = [ctx.Process(target=_writer, args=(path, w, minutes, start)) for w in range(workers)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with HistoryStore(path, clock=lambda: T0) as store:
        rows = store.requests(T0, T0 + minutes * 60)
    assert len(rows) == minutes
    assert {c for _, c in rows} == {float(sum(1 + w for w in range(workers)))}  # 1+2+3+4


def test_retention_bounds_rows_and_file_size(tmp_path: Path) -> None:
    clock = Clock(T0)
    path = tmp_path / "h.db"

    def size() -> int:
        return sum(p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("h.db"))

    sizes = []
    with HistoryStore(path, retention=86400, clock=clock) as store:
        for hour in range(24 * 8):
            base = T0 + hour * 3600
            store.add_many([(base + m * 60, 1000 + m, 3) for m in range(60)])
            clock.now = base + 3600
            if hour % 24 == 23:
                sizes.append(size())
        assert store.minutes() <= 24 * 60 + 60
        oldest = store.requests(0, clock.now)[0][0]
        assert oldest >= clock.now - 86400 - 3600
    # after the first two days the file stops growing
    assert max(sizes[2:]) <= sizes[1] * 1.25, sizes
    raw = sqlite3.connect(path)
    try:  # deleted pages are given back, not just left on the free list
        assert raw.execute("PRAGMA freelist_count").fetchone()[0] <= 2
    finally:
        raw.close()


def test_bad_retention_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="retention"):
        HistoryStore(tmp_path / "h.db", retention=10)


# ---------------------------------------------------------------------- recorder


def serve(collector: MetricsCollector, n: int) -> None:
    for _ in range(n):
        collector.observe("GET", "/events/{event_id}", 200, 0.01)


def test_recorder_stores_each_minutes_delta(tmp_path: Path, collector: MetricsCollector) -> None:
    clock = Clock(T0)
    fleet = [3]
    with HistoryStore(tmp_path / "h.db", clock=clock) as store:
        rec = HistoryRecorder(store, collector, clock=clock, instances=lambda: fleet[0])
        serve(collector, 5)  # before recording started: not attributed to a minute
        assert rec.tick() is False
        serve(collector, 7)
        clock.now += 60
        assert rec.tick() is True
        serve(collector, 4)
        fleet[0] = 6
        clock.now += 60
        rec.tick()
        assert store.requests(T0, T0 + 180) == [(T0, 7.0), (T0 + 60, 4.0)]
        assert store.instances(T0, T0 + 180, step=60) == [(T0, 3.0), (T0 + 60, 6.0)]


def test_recorder_never_raises_and_keeps_the_unsaved_delta(
    tmp_path: Path, collector: MetricsCollector
) -> None:
    clock = Clock(T0)
    broken = HistoryStore(tmp_path / "h.db", clock=clock)
    rec = HistoryRecorder(broken, collector, clock=clock)
    rec.tick()
    broken.close()
    serve(collector, 9)
    clock.now += 60
    assert rec.tick() is False  # the write failed, nothing raised
    assert collector.internal_errors() == {"history.recorder": 1}
    with HistoryStore(tmp_path / "h.db", clock=clock) as store:
        rec.store = store
        serve(collector, 1)
        clock.now += 60
        assert rec.tick() is True
        assert store.requests(T0, T0 + 600) == [(T0, 10.0)]


def test_recorder_thread_records_every_request(tmp_path: Path, collector: MetricsCollector) -> None:
    with HistoryStore(tmp_path / "h.db") as store:
        rec = HistoryRecorder(store, collector, interval=0.05)
        rec.start()
        for batch in range(1, 6):
            serve(collector, 20)
            # The thread's own tick stores each batch (not only the one at stop).
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if sum(c for _, c in store.requests(0, time.time() + 60)) >= 20 * batch:
                    break
                time.sleep(0.01)
        rec.stop()
        assert sum(c for _, c in store.requests(0, time.time() + 60)) == 100
        assert collector.internal_errors() == {}


# ---------------------------------------------------------------- Prometheus API


@contextmanager
def fake_prometheus(handler_fn) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A real HTTP server on 127.0.0.1 that answers /api/v1/query_range with handler_fn."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(url.query))
            seen.append({"path": url.path, **params})
            status, body = handler_fn(params)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def matrix(params: dict[str, str]) -> tuple[int, object]:
    start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
    points, t = [], start
    while t <= end:
        points.append([t, str(t / step)])  # value = the point's step index
        t += step
    result = [
        {"metric": {"instance": "a"}, "values": points},
        {"metric": {"instance": "b"}, "values": [[p[0], "1"] for p in points] + [[end, "NaN"]]},
    ]
    return 200, {"status": "success", "data": {"resultType": "matrix", "result": result}}


def test_prometheus_query_range_is_read_summed_and_bucketed() -> None:
    with fake_prometheus(matrix) as (url, seen):
        source = PrometheusHistory(url + "/")
        hour = 1_700_002_800.0  # a multiple of 3600
        rows = source.requests(hour, hour + 3 * 3600, step=3600)
        assert rows == [
            (hour, hour / 3600 + 1 + 1),  # the point at hour+1h is the bucket starting at hour
            (hour + 3600, hour / 3600 + 2 + 1),
            (hour + 7200, hour / 3600 + 3 + 1),
        ]
        assert seen[0]["path"] == "/api/v1/query_range"
        assert seen[0]["query"] == "sum(increase(http_requests_total[3600s]))"
        assert float(seen[0]["step"]) == 3600
        assert source.instances(hour, hour + 3600) == []  # no instances_query configured


def test_prometheus_long_ranges_are_split_under_the_point_limit() -> None:
    with fake_prometheus(matrix) as (url, seen):
        source = PrometheusHistory(url)
        start = 1_700_000_040.0
        rows = source.requests(start, start + 25_000 * 60, step=60)
        assert len(rows) == 25_000
        assert len(seen) == 3
        for q in seen:
            assert (float(q["end"]) - float(q["start"])) / 60 + 1 <= PrometheusHistory.MAX_POINTS


def test_prometheus_errors_are_history_errors() -> None:
    def bad_query(params: dict[str, str]) -> tuple[int, object]:
        return 400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}

    with (
        fake_prometheus(bad_query) as (url, _),
        pytest.raises(HistoryError, match="bad_data: parse error at char 5"),
    ):
        PrometheusHistory(url).requests(T0, T0 + 600)
    with (
        fake_prometheus(lambda p: (200, b"<html>proxy</html>")) as (url, _),
        pytest.raises(HistoryError, match="not JSON"),
    ):
        PrometheusHistory(url).requests(T0, T0 + 600)
    with pytest.raises(HistoryError, match="cannot reach Prometheus"):
        PrometheusHistory(f"http://127.0.0.1:{free_port()}", timeout=2).requests(T0, T0 + 600)
    with pytest.raises(ConfigurationError, match="http"):
        PrometheusHistory("localhost:9090")


@pytest.mark.slow
def test_real_prometheus_backfilled_history(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    now = time.time()
    hour0 = (now // 3600) * 3600 - 6 * 3600  # six complete hours, ending an hour before now
    lines = ["# TYPE http_requests counter"]
    total = 0
    for m in range(5 * 60 + 1):
        lines.append(f'http_requests_total{{job="app"}} {total} {hour0 + m * 60:.0f}')
        total += 100 if (m // 60) % 2 == 0 else 40  # 6000 / 2400 requests per hour
    lines.append("# EOF")
    om = tmp_path / "history.om"
    om.write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
        check=True,
        capture_output=True,
    )
    config = "global:\n  scrape_interval: 1h\n"
    with prometheus_server(tmp_path, config, data=data) as prom:
        source = PrometheusHistory(prom.url)
        rows = source.requests(hour0, hour0 + 5 * 3600, step=3600)
    assert [t for t, _ in rows] == [hour0 + h * 3600 for h in range(5)]
    expected = [6000, 2400, 6000, 2400, 6000]
    for (_, got), want in zip(rows, expected, strict=True):
        assert got == pytest.approx(want, rel=0.03)
