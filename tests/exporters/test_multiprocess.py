"""Worker aggregation, with workers simulated in one process (fast, exact)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from eventmon import ConfigurationError, MetricsCollector
from eventmon.exporters.multiprocess import ENV_DIR, disable, enable
from eventmon.exporters.prometheus import render, render_families


class Workers:
    """Collectors standing for worker processes; `alive` says which pids live."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.alive: set[int] = set()
        self.collectors: dict[int, MetricsCollector] = {}

    def spawn(self, pid: int) -> MetricsCollector:
        c = MetricsCollector(slow_hooks=(), slow_threshold=0.2)
        enable(
            c,
            self.directory,
            identity=(pid, "s"),
            is_alive=lambda p, _s: p in self.alive,
            start=False,
        )
        self.alive.add(pid)
        self.collectors[pid] = c
        return c

    def kill(self, pid: int) -> None:
        """SIGKILL: what it had written stays, nothing more."""
        self.alive.discard(pid)
        c = self.collectors.pop(pid)
        c.multiprocess.close(final_write=False)

    def close(self) -> None:
        for c in self.collectors.values():
            disable(c)


@pytest.fixture
def workers(tmp_path: Path):
    w = Workers(tmp_path / "mp")
    yield w
    w.close()


def _feed(c: MetricsCollector, k: int, n: int) -> None:
    for i in range(n):
        ep = ["/events/{event_id}", "/orders", '/we"ird\\path'][(i + k) % 3]
        status = [200, 201, 404, 503][(i * 7 + k) % 4]
        c.observe(["GET", "POST"][i % 2], ep, status, ((i * 37 + k * 11) % 400 + 1) / 1000)
    c.increment_counter("db_connection_errors", {"db": "main"}, k + 1)


def _sample_lines(body: bytes) -> list[str]:
    """Lines but process metrics, sorted; values to 12 digits (sums add in another order)."""
    out = []
    for line in body.decode().splitlines():
        if line.startswith(("process_", "# HELP process", "# TYPE process")):
            continue
        if line.startswith("#"):
            out.append(line)
        else:
            name, value = line.rsplit(" ", 1)
            out.append(f"{name} {float(value):.12g}")
    return sorted(out)


def _total(body: bytes) -> int:
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in body.decode().splitlines()
        if line.startswith("http_requests_total{")
    )


def test_merged_scrape_equals_one_collector_that_saw_everything(workers: Workers) -> None:
    reference = MetricsCollector(slow_hooks=(), slow_threshold=0.2)
    for k, pid in enumerate((101, 102, 103)):
        c = workers.spawn(pid)
        _feed(c, k, 300 + 50 * k)
        _feed(reference, k, 300 + 50 * k)
    # Every other worker has written its periodic file; a scrape on 101 merges them.
    for pid in (102, 103):
        workers.collectors[pid].multiprocess.write()
    for openmetrics in (False, True):
        for unit in ("s", "ms"):
            merged = render(workers.collectors[101], openmetrics=openmetrics, unit=unit)
            alone = render_families(reference, openmetrics=openmetrics, unit=unit)
            assert _sample_lines(merged) == _sample_lines(alone)
    body = render(workers.collectors[101]).decode()
    assert _total(body.encode()) == 300 + 350 + 400
    # Per-worker CPU and memory with a worker label; exited workers' CPU kept.
    for pid in (101, 102, 103):
        assert f'process_cpu_seconds_total{{worker="{pid}"}}' in body
        assert f'process_resident_memory_bytes{{worker="{pid}"}}' in body
    assert 'process_cpu_seconds_total{worker="exited"}' in body


def test_dead_worker_is_archived_once_and_counters_never_go_back(workers: Workers) -> None:
    a, b, c = workers.spawn(201), workers.spawn(202), workers.spawn(203)
    _feed(a, 0, 100)
    _feed(b, 1, 200)
    _feed(c, 2, 300)
    b.multiprocess.write()
    c.multiprocess.write()
    assert _total(render(a)) == 600
    saved = (workers.directory / "w-203-s.json").read_bytes()
    _feed(c, 2, 50)  # never written: a SIGKILL loses these
    workers.kill(203)
    assert _total(render(a)) == 600
    files = sorted(p.name for p in workers.directory.iterdir() if not p.name.startswith("."))
    assert files == ["archive.json", "w-201-s.json", "w-202-s.json"]
    # A crash between writing the archive and removing the file: the file comes back.
    (workers.directory / "w-203-s.json").write_bytes(saved)
    assert _total(render(a)) == 600  # recognised by its token: not merged twice
    assert not (workers.directory / "w-203-s.json").exists()
    # The scraping worker itself can die; another one serves the same totals.
    _feed(a, 0, 10)
    a.multiprocess.write()
    workers.kill(201)
    assert _total(render(b)) == 610
    archive = json.loads((workers.directory / "archive.json").read_text())
    assert set(archive["merged"]) == {"w-201-s", "w-203-s"}
    # a: 1 + 1, b: 2, c: 3 written (its second 3 was never written)
    assert 'db_connection_errors_total{db="main"} 7' in render(b).decode()


def test_scrape_cost_does_not_grow_with_dead_workers(workers: Workers) -> None:
    """1,000 series over 4 live workers; then 200 workers come and go (simulated)."""
    endpoints = [f"/api/v1/resource{i}/{{id}}" for i in range(250)]
    live = [workers.spawn(300 + i) for i in range(4)]
    for k, c in enumerate(live):
        for i, ep in enumerate(endpoints):
            for status in (200, 201, 404, 500):
                c.observe("GET", ep, status, ((i + k) % 90 + 1) / 1000)
        c.multiprocess.write()
    scraper = live[0]

    def scrape() -> None:
        assert _total(render(scraper)) == 4 * 1000 + dead_requests

    dead_requests = 0
    scrape()
    for j in range(200):
        c = workers.spawn(1000 + j)
        for i, ep in enumerate(endpoints[j % 50 :: 50]):
            c.observe("POST", ep, 200, (i + 1) / 1000)
            dead_requests += 1
        c.multiprocess.write()
        workers.kill(1000 + j)
    scrape()  # archives the 200 dead workers' files
    scrape()
    # What a scrape reads no longer depends on how many workers ever existed: the
    # live workers' files and one archive whose series are the distinct dead series.
    # (Scrape time itself is measured by benchmarks/bench_multiprocess.py, not here.)
    names = sorted(p.name for p in workers.directory.iterdir() if not p.name.startswith("."))
    assert len([n for n in names if n.startswith("w-")]) == 4
    assert names[0] == "archive.json"
    archive = json.loads((workers.directory / "archive.json").read_text())
    assert len(archive["merged"]) == 200
    archived_series = json.dumps(archive).count('"POST"')
    assert 0 < archived_series <= len(endpoints)


def test_corrupt_file_is_skipped_and_counted(workers: Workers) -> None:
    a = workers.spawn(401)
    _feed(a, 0, 30)
    (workers.directory / "w-402-s.json").write_bytes(b'{"format": 1, "series": [[')
    workers.alive.add(402)
    assert _total(render(a)) == 30
    assert a.internal_errors().get("multiprocess.read", 0) >= 1
    workers.alive.discard(402)  # dead and corrupt: moved aside, not merged
    assert _total(render(a)) == 30
    assert (workers.directory / "w-402-s.corrupt").exists()


def test_worker_archived_while_alive_is_not_counted_twice(workers: Workers) -> None:
    a = workers.spawn(501)
    b = workers.spawn(502)
    a.multiprocess.config = type(a.multiprocess.config)(workers.directory, 1.0, 30.0)
    _feed(b, 0, 40)
    b.multiprocess.write()
    old = time.time() - 120
    os.utime(workers.directory / "w-502-s.json", (old, old))
    assert _total(render(a)) == 40  # stale: archived although its pid lives
    assert not (workers.directory / "w-502-s.json").exists()
    _feed(b, 0, 5)
    b.multiprocess.write()  # notices, and writes only what came after the archive
    assert (workers.directory / "w-502-s-g1.json").exists()
    assert _total(render(a)) == 45


def test_env_var_turns_it_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "d"))
    monkeypatch.setenv("EVENTMON_MULTIPROC_INTERVAL", "0.05")
    c = MetricsCollector(slow_hooks=())
    try:
        assert c.multiprocess is not None
        c.observe("GET", "/x", 200, 0.01)
        path = c.multiprocess.path
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the periodic writer, not a scrape
            if path.exists() and json.loads(path.read_text())["series"]:
                break
            time.sleep(0.02)
        assert json.loads(path.read_text())["series"][0][3] == 1
    finally:
        disable(c)
        shutil.rmtree(tmp_path / "d")


def test_configuration_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)
    c = MetricsCollector(slow_hooks=())
    with pytest.raises(ConfigurationError, match=ENV_DIR):
        enable(c)
    with pytest.raises(ConfigurationError, match="interval"):
        enable(c, tmp_path, interval=0)
    monkeypatch.setenv("EVENTMON_MULTIPROC_INTERVAL", "soon")
    with pytest.raises(ConfigurationError, match="EVENTMON_MULTIPROC_INTERVAL"):
        enable(c, tmp_path)
    with pytest.raises(ConfigurationError, match="stale_after"):
        enable(c, tmp_path, interval=1, stale_after=1)
    assert c.multiprocess is None
