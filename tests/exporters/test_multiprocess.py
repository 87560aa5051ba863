"""Worker aggregation, with workers simulated in one process (fast, exact)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

import eventmon.collector
from eventmon import ConfigurationError, MetricsCollector, default_collector
from eventmon.core.exemplars import current_trace
from eventmon.exporters.multiprocess import ENV_DIR, MultiprocessDamaged, disable, enable
from eventmon.exporters.prometheus import render, render_families
from servers import promtool_check


def _process_wide(monkeypatch: pytest.MonkeyPatch) -> MetricsCollector:
    """A fresh process-wide collector, made as a server's worker makes it."""
    monkeypatch.setattr(eventmon.collector, "_default", None)
    return default_collector()


class Workers:
    """Collectors standing for worker processes; `alive` says which pids live."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.alive: set[int] = set()
        self.collectors: dict[int, MetricsCollector] = {}

    def spawn(self, pid: int, **options: Any) -> MetricsCollector:
        c = MetricsCollector(slow_hooks=(), slow_threshold=0.2, **options)
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


def test_corrupt_file_is_moved_aside_and_counted(workers: Workers) -> None:
    a = workers.spawn(401)
    _feed(a, 0, 30)
    (workers.directory / "w-402-s.json").write_bytes(b'{"format": 1, "series": [[')
    workers.alive.add(402)
    assert _total(render(a)) == 30
    assert a.internal_errors()["multiprocess.corrupt"] == 1
    assert not (workers.directory / "w-402-s.json").exists()
    assert len(list(workers.directory.glob("w-402-s.json.corrupt-*"))) == 1
    assert _total(render(a)) == 30
    assert a.internal_errors()["multiprocess.corrupt"] == 1  # moved aside: counted once


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
    c = _process_wide(monkeypatch)
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


def test_a_collector_made_directly_is_not_aggregated_by_the_env_var(tmp_path: Path) -> None:
    # Only the process-wide collector reads the variable: constructing a collector
    # starts no writer thread and imports nothing from the exporters.
    code = (
        "import sys, threading\n"
        "from eventmon.collector import MetricsCollector\n"
        "c = MetricsCollector()\n"
        "print(c.multiprocess, 'eventmon.exporters.multiprocess' in sys.modules,"
        " [t.name for t in threading.enumerate() if t.name.startswith('eventmon')])\n"
    )
    env = {**os.environ, ENV_DIR: str(tmp_path / "d")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["None", "False", "[]"]
    assert not (tmp_path / "d").exists()


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


# ----------------------------------------------- configuration checked at start-up


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "-1", "0", "soon", "1e400", "1e12"])
def test_interval_from_the_environment_must_be_finite_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    # inf used to start a writer thread that died at once (Event.wait overflows).
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "d"))
    monkeypatch.setenv("EVENTMON_MULTIPROC_INTERVAL", raw)
    with pytest.raises(ConfigurationError, match="EVENTMON_MULTIPROC_INTERVAL") as info:
        _process_wide(monkeypatch)
    assert "\n" not in str(info.value)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize("interval", [float("inf"), float("nan"), -2.0, 1e12, "1", True])
def test_interval_argument_must_be_finite_seconds(tmp_path: Path, interval: object) -> None:
    c = MetricsCollector(slow_hooks=())
    with pytest.raises(ConfigurationError, match="interval"):
        enable(c, tmp_path, interval=interval, start=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="stale_after"):
        enable(c, tmp_path, interval=1.0, stale_after=float("inf"), start=False)
    assert c.multiprocess is None


def test_directory_naming_a_file_fails_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    monkeypatch.setenv(ENV_DIR, str(a_file))
    with pytest.raises(ConfigurationError, match="is a file") as info:
        _process_wide(monkeypatch)
    assert "\n" not in str(info.value)
    # Below a file, too (mkdir's parent is not a directory).
    monkeypatch.setenv(ENV_DIR, str(a_file / "sub"))
    with pytest.raises(ConfigurationError, match=ENV_DIR):
        _process_wide(monkeypatch)


def test_world_writable_directory_needs_the_sticky_bit(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    c = MetricsCollector(slow_hooks=())
    with pytest.raises(ConfigurationError, match="world-writable"):
        enable(c, d, start=False)
    assert c.multiprocess is None
    d.chmod(0o1777)  # like /tmp: others cannot rename or remove our files
    enable(c, d, start=False)
    disable(c)


def test_new_directory_is_private(tmp_path: Path) -> None:
    c = MetricsCollector(slow_hooks=())
    old = os.umask(0)
    try:
        enable(c, tmp_path / "fresh", start=False)
    finally:
        os.umask(old)
    try:
        c.observe("GET", "/x", 200, 0.01)
        c.multiprocess.write()
        assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o700
        for p in (tmp_path / "fresh").iterdir():
            assert p.stat().st_mode & 0o777 == 0o600, p
    finally:
        disable(c)


# ------------------------------------------------------------ damage heals


def _samples(body: bytes) -> dict[str, float]:
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith(("#", "process_")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _never_backwards(scrapes: list[dict[str, float]]) -> None:
    for before, after in itertools.pairwise(scrapes):
        for name, value in before.items():
            if name.startswith(("http_", "db_connection_errors_total")) and "quantile" not in name:
                assert after.get(name, 0) >= value, name


def test_deleted_directory_is_made_again_and_counters_never_go_back(
    workers: Workers,
) -> None:
    a, b, c = workers.spawn(601), workers.spawn(602), workers.spawn(603)
    _feed(a, 0, 100)
    _feed(b, 1, 200)
    _feed(c, 2, 300)
    b.multiprocess.write()
    c.multiprocess.write()
    workers.kill(603)  # archived at the next scrape: only the archive holds c's 300
    scrapes = [_samples(render(a))]
    assert _total(render(a)) == 600
    b.multiprocess._tick()  # b's periodic write also refreshes its copies
    shutil.rmtree(workers.directory)
    # a answers: the directory is made again and the archive rebuilt from a's copy;
    # but b, alive, has not written its file again yet: refused rather than low.
    with pytest.raises(MultiprocessDamaged, match=r"w-602-s\.json"):
        render(a)
    assert a.internal_errors()["multiprocess.damaged"] >= 1
    assert (workers.directory / "archive.json").exists()
    # b's next periodic write: its whole state again (not a diff from a baseline).
    _feed(b, 1, 10)
    b.multiprocess._tick()
    assert json.loads(b.multiprocess.path.read_text())["token"] == "w-602-s"
    scrapes.append(_samples(render(a)))
    assert _total(render(a)) == 610
    scrapes.append(_samples(render(b)))
    assert _total(render(b)) == 610
    # Deleted again, and this time b answers first: from its own copy of the archive.
    shutil.rmtree(workers.directory)
    with pytest.raises(MultiprocessDamaged, match=r"w-601-s\.json"):
        render(b)
    a.multiprocess._tick()
    scrapes.append(_samples(render(b)))
    assert _total(render(b)) == 610
    scrapes.append(_samples(render(a)))
    # And a worker that exits after the damage is archived as usual.
    d = workers.spawn(604)
    _feed(d, 0, 5)
    d.multiprocess.write()
    workers.kill(604)
    scrapes.append(_samples(render(a)))
    assert _total(render(a)) == 615
    _never_backwards(scrapes)
    archive = json.loads((workers.directory / "archive.json").read_text())
    assert set(archive["merged"]) == {"w-603-s", "w-604-s"}
    assert 'db_connection_errors_total{db="main"} 9' in render(a).decode()  # a 1, b 2+2, c 3, d 1


def test_dead_worker_file_lost_with_the_directory_is_archived_from_a_copy(
    workers: Workers,
) -> None:
    a, b = workers.spawn(611), workers.spawn(612)
    _feed(a, 0, 20)
    _feed(b, 1, 30)
    b.multiprocess.write()
    assert _total(render(a)) == 50  # a merged b's file: it keeps a copy
    workers.kill(612)  # dead, not yet archived...
    shutil.rmtree(workers.directory)  # ...and its file is gone
    assert _total(render(a)) == 50
    archive = json.loads((workers.directory / "archive.json").read_text())
    assert archive["merged"] == ["w-612-s"]
    assert _total(render(a)) == 50


@pytest.mark.parametrize(
    "content",
    [
        b'{"format": 1, "series": [["GET", "/x", "200", 5, 0.1, [',  # truncated
        b"[]",
        b'{"format": 1, "series": 5}',
        b'{"format": 1, "series": [["GET", "/x", "200", -5, 0.1, ZEROS]]}',
        b'{"format": 1, "series": [["GET", "/x", "200", NaN, 0.1, ZEROS]]}',
        b'{"format": 1, "series": [["GET", "/x", "200", 0, 0.5, ZEROS],'
        b' ["GET", "/y", "200", 0, NaN, ZEROS]]}',
        b'{"format": 1, "slow": [["GET", "/x", -1]]}',
        b'{"format": 1, "counters": [["c", [], -2.5]]}',
        b'{"format": 1, "hdr": {"/x": [3, -1]}}',
        b'{"format": 1, "errors": {"x": "many"}}',
        b"\xff\xfe garbage",
    ],
    ids=[
        "truncated",
        "list",
        "series-not-list",
        "negative-count",
        "nan-count",
        "nan-sum-second-row",
        "negative-slow",
        "negative-counter",
        "negative-hdr",
        "string-count",
        "binary",
    ],
)
def test_damaged_archive_is_moved_aside_and_rebuilt(workers: Workers, content: bytes) -> None:
    a, b = workers.spawn(621), workers.spawn(622)
    _feed(a, 0, 40)
    _feed(b, 1, 60)
    b.multiprocess.write()
    workers.kill(622)
    before = _samples(render(a))
    assert _total(render(a)) == 100
    zeros = json.dumps([0] * (len(a.bounds) + 1)).encode()
    (workers.directory / "archive.json").write_bytes(content.replace(b"ZEROS", zeros))
    after = _samples(render(a))  # used to fail here, and at every scrape after
    assert after == {k: v for k, v in after.items() if k in before}
    _never_backwards([before, after])
    assert _total(render(a)) == 100
    assert a.internal_errors()["multiprocess.corrupt"] == 1
    assert len(list(workers.directory.glob("archive.json.corrupt-*"))) == 1
    assert json.loads((workers.directory / "archive.json").read_text())["merged"] == ["w-622-s"]


@pytest.mark.parametrize(
    "content",
    [
        b'{"format": 1, "bounds": BOUNDS, "series": [[',
        b'{"format": 1, "bounds": BOUNDS, "series": {}}',
        b'{"format": 1, "bounds": "x"}',
        b'{"format": 1, "bounds": BOUNDS, "series": [["GET", "/x", "200", 0, -0.5, ZEROS]]}',
    ],
    ids=["truncated", "wrong-shape", "bad-bounds", "negative-sum"],
)
def test_damaged_worker_file_heals_when_its_writer_writes(workers: Workers, content: bytes) -> None:
    a, b = workers.spawn(631), workers.spawn(632)
    _feed(a, 0, 40)
    _feed(b, 1, 60)
    b.multiprocess.write()
    before = _samples(render(a))
    zeros = json.dumps([0] * (len(a.bounds) + 1)).encode()
    bounds = json.dumps(list(a.bounds)).encode()
    content = content.replace(b"BOUNDS", bounds).replace(b"ZEROS", zeros)
    (workers.directory / "w-632-s.json").write_bytes(content)
    # a sets it aside; b lives and has newer figures than a's copy: refused a moment
    with pytest.raises(MultiprocessDamaged):
        render(a)
    assert a.internal_errors()["multiprocess.corrupt"] == 1
    assert len(list(workers.directory.glob("w-632-s.json.corrupt-*"))) == 1
    _feed(b, 1, 5)
    b.multiprocess._tick()
    after = _samples(render(a))
    _never_backwards([before, after])
    assert _total(render(a)) == 105
    assert _total(render(b)) == 105


def test_worker_that_does_not_rewrite_is_shown_from_a_copy_after_a_while(
    workers: Workers,
) -> None:
    a, b = workers.spawn(651), workers.spawn(652)
    now = [1000.0]
    a.multiprocess.clock = lambda: now[0]
    _feed(a, 0, 40)
    _feed(b, 1, 60)
    b.multiprocess.write()
    before = _samples(render(a))
    (workers.directory / "w-652-s.json").unlink()  # b alive but stuck: never writes
    with pytest.raises(MultiprocessDamaged):
        render(a)
    now[0] += 2.9  # the grace: three intervals (1 s each here)
    with pytest.raises(MultiprocessDamaged):
        render(a)
    now[0] += 0.2
    assert _samples(render(a)) == before  # b as a last saw it


def test_symlinks_and_odd_files_are_never_followed(workers: Workers, tmp_path: Path) -> None:
    a = workers.spawn(641)
    _feed(a, 0, 10)
    a.multiprocess.write()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    # A link planted where a worker writes its temporary file, or as the archive,
    # the lock or a worker file: eventmon writes and reads none of them through it.
    (workers.directory / f".tmp-{a.multiprocess.token}").symlink_to(victim)
    (workers.directory / ".lock").unlink()
    (workers.directory / ".lock").symlink_to(victim)
    (workers.directory / "w-642-s.json").symlink_to(victim)
    os.mkfifo(workers.directory / "w-643-s.json")  # would block a plain open()
    workers.alive |= {642, 643}
    assert _total(render(a)) == 10
    assert victim.read_text() == "precious"
    assert a.internal_errors()["multiprocess.corrupt"] == 2
    assert not (workers.directory / ".lock").is_symlink()
    for p in workers.directory.iterdir():
        if not p.name.startswith(("w-642", "w-643")):
            assert p.stat(follow_symlinks=False).st_mode & 0o777 == 0o600, p


def test_worker_without_a_copy_waits_for_one_to_mend_a_damaged_archive(
    workers: Workers,
) -> None:
    a, b = workers.spawn(661), workers.spawn(662)
    _feed(a, 0, 40)
    _feed(b, 1, 60)
    b.multiprocess.write()
    workers.kill(662)
    assert _total(render(a)) == 100  # archived; a has a copy of the archive
    fresh = workers.spawn(663)  # e.g. a recycled worker's replacement
    now = [1000.0]
    fresh.multiprocess.clock = lambda: now[0]
    (workers.directory / "archive.json").write_bytes(b'{"format": 1, "series": [[')
    with pytest.raises(MultiprocessDamaged, match=r"archive\.json"):
        render(fresh)  # it has no copy: answering would drop b's 60
    assert (workers.directory / "archive.json").read_bytes().endswith(b"[[")  # left alone
    a.multiprocess._tick()  # a has a copy: moves it aside and writes it again
    assert _total(render(fresh)) == 100
    # Nobody with a copy: after the grace, the damaged archive is set aside.
    (workers.directory / "archive.json").write_bytes(b"[]")
    late = workers.spawn(664)
    late.multiprocess.clock = lambda: now[0]
    with pytest.raises(MultiprocessDamaged):
        render(late)
    now[0] += 3.5
    assert _total(render(late)) == 40  # a only: the archive's counts had no copy here
    assert list(workers.directory.glob("archive.json.corrupt-*"))


def test_periodic_write_archives_a_dead_worker_file_lost_with_the_directory(
    workers: Workers,
) -> None:
    a, b = workers.spawn(671), workers.spawn(672)
    _feed(a, 0, 20)
    _feed(b, 1, 30)
    b.multiprocess.write()
    a.multiprocess._tick()  # a's periodic write copies b's file (no scrape needed)
    workers.kill(672)
    shutil.rmtree(workers.directory)
    a.multiprocess._tick()  # no scrape: the writer thread mends it
    archive = json.loads((workers.directory / "archive.json").read_text())
    assert archive["merged"] == ["w-672-s"]
    assert _total(render(a)) == 50


def _feed_tenants(c: MetricsCollector, k: int) -> None:
    c.use_extra_labels(("tenant",))
    for i in range(40):
        tenant = ["acme", "globex", ""][(i + k) % 3]
        c.observe("GET", ("/events/{event_id}", tenant), [200, 503][i % 4 == 0], 0.1 + i / 100)


def test_merged_workers_keep_their_extra_labels(workers: Workers) -> None:
    reference = MetricsCollector(slow_hooks=(), slow_threshold=0.2)
    for k, pid in enumerate((101, 102)):
        _feed_tenants(workers.spawn(pid), k)
        _feed_tenants(reference, k)
    workers.collectors[102].multiprocess.write()
    state = json.loads((workers.directory / "w-102-s.json").read_bytes())
    assert state["format"] == 2
    assert state["extra_labels"] == ["tenant"]
    merged = render(workers.collectors[101])
    assert _sample_lines(merged) == _sample_lines(render_families(reference))
    assert 'tenant="acme"' in merged.decode()
    assert 'http_slow_requests_total{method="GET",endpoint="/events/{event_id}",tenant=' in (
        merged.decode()
    )
    # A dead worker's figures go to the archive and keep their labels there.
    workers.kill(102)
    again = render(workers.collectors[101])
    assert _sample_lines(again) == _sample_lines(render_families(reference))


def test_a_format_1_file_is_still_read_beside_format_2(workers: Workers) -> None:
    # A file as eventmon wrote it before extra labels (no "extra_labels", six columns).
    ones = [0] * 11
    old = {
        "format": 1,
        "token": "w-300-s",
        "pid": 300,
        "bounds": list(MetricsCollector().bounds),
        "series": [["GET", "/events/{event_id}", "200", 2, 0.2, [0, 0, 0, 0, 0, 2, *ones[6:]]]],
        "slow": [["GET", "/events/{event_id}", 1]],
    }
    c = workers.spawn(301)
    _feed_tenants(c, 0)
    c.multiprocess.write()  # makes the directory
    workers.alive.add(300)
    (workers.directory / "w-300-s.json").write_text(json.dumps(old))
    text = render(c).decode()
    assert (
        'http_requests_total{method="GET",endpoint="/events/{event_id}",status_code="200"} 2'
        in text
    )
    assert 'status_code="200",tenant="acme"}' in text
    assert c.internal_errors() == {}


def _feed_sizes(c: MetricsCollector, k: int) -> None:
    for i in range(60):
        ep = ["/events/{event_id}", "/orders"][(i + k) % 2]
        c.observe("POST", ep, 201, 0.01)
        c.sizes.observe("POST", ep, [201, 413][i % 5 == 0], 37 * i + k, 5_000 * (i % 7) + 3)


def test_body_sizes_are_merged_and_kept_when_a_worker_exits(workers: Workers) -> None:
    reference = MetricsCollector(slow_hooks=(), slow_threshold=0.2)
    for k, pid in enumerate((101, 102, 103)):
        _feed_sizes(workers.spawn(pid), k)
        _feed_sizes(reference, k)
    for pid in (102, 103):
        workers.collectors[pid].multiprocess.write()
    alone = render_families(reference)
    assert b"http_request_size_bytes_bucket{" in alone
    assert b"http_response_size_bytes_sum{" in alone
    merged = render(workers.collectors[101])
    assert _sample_lines(merged) == _sample_lines(alone)
    promtool_check(merged.decode())
    # An exited worker's sizes go to the archive; the page does not go back.
    workers.kill(103)
    assert _sample_lines(render(workers.collectors[101])) == _sample_lines(alone)
    archive = json.loads((workers.directory / "archive.json").read_text())
    assert {row[0] for row in archive["sizes"]} == {0, 1}
    assert workers.collectors[101].internal_errors() == {}


def test_sizes_with_extra_labels_are_merged(workers: Workers) -> None:
    reference = MetricsCollector(slow_hooks=(), slow_threshold=0.2)
    for k, pid in enumerate((101, 102)):
        for c in (workers.spawn(pid), reference):
            c.use_extra_labels(("tenant",))
            for i in range(20):
                ep = ("/orders", ["acme", "globex"][(i + k) % 2])
                c.observe("GET", ep, 200, 0.01)
                c.sizes.observe("GET", ep, 200, 0, 100 * i)
    workers.collectors[102].multiprocess.write()
    merged = render(workers.collectors[101])
    assert _sample_lines(merged) == _sample_lines(render_families(reference))
    assert b'http_response_size_bytes_count{method="GET",endpoint="/orders",' in merged
    assert b'tenant="globex"} 20' in merged


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("field", "row"),
    [
        ("sizes", [2, ["GET", "/", "200"], [0] * 7, 0]),  # no such kind
        ("sizes", [0, ["GET", "/"], [0] * 7, 0]),  # too few label values
        ("sizes", [0, ["GET", "/", "200"], [0] * 6, 0]),  # wrong number of buckets
        ("sizes", [1, ["GET", "/", "200"], [0, -1, 0, 0, 0, 0, 0], 0]),  # negative count
        ("sizes", [1, ["GET", "/", "200"], [0] * 7, float("nan")]),  # not a sum
        ("exemplars", ["GET", "/", "200", [], 99, TRACE, 0.1, 1e9]),  # no such bucket
        ("exemplars", ["GET", "/", 200, [], 0, TRACE, 0.1, 1e9]),  # status not a string
        ("exemplars", ["GET", "/", "200", [], 0, "x" * 129, 0.1, 1e9]),  # trace id too long
        ("exemplars", ["GET", "/", "200", [], 0, TRACE, float("inf"), 1e9]),  # not a duration
        ("exemplars", ["GET", "/", "200", 0, TRACE, 0.1, 1e9]),  # a column missing
    ],
)
def test_a_damaged_sizes_or_exemplar_row_sets_the_file_aside(
    workers: Workers, field: str, row: list[object]
) -> None:
    c = workers.spawn(301)
    c.multiprocess.write()
    workers.alive.add(300)
    bad = {
        "format": 1,
        "token": "w-300-s",
        "pid": 300,
        "bounds": list(c.bounds),
        field: [row],
    }
    (workers.directory / "w-300-s.json").write_text(json.dumps(bad))
    render(c)
    assert c.internal_errors().get("multiprocess.corrupt") == 1
    assert not (workers.directory / "w-300-s.json").exists()


def _exemplar_lines(body: bytes) -> dict[tuple[str, str, str], tuple[str, float]]:
    """(endpoint, status, le) -> (trace id, value), read with the OpenMetrics parser."""
    out = {}
    for family in openmetrics_families(body.decode()):
        for s in family.samples:
            if s.exemplar is not None:
                key = (s.labels["endpoint"], s.labels["status_code"], s.labels["le"])
                out[key] = (s.exemplar.labels["trace_id"], s.exemplar.value)
    return out


def test_exemplars_are_merged_newest_first_and_kept_when_a_worker_exits(
    workers: Workers,
) -> None:
    older, newer = "0af7651916cd43dd8448eb211c80319c", TRACE
    a, b = workers.spawn(101), workers.spawn(102)
    for c in (a, b):
        c.enable_exemplars()
    current_trace.set(older)
    try:
        a.observe("GET", "/a", 200, 0.012)  # bucket 0.015: later overwritten by b's
        a.observe("GET", "/a", 200, 0.3)  # bucket 0.5: only a's
        time.sleep(0.01)
        current_trace.set(newer)
        b.observe("GET", "/a", 200, 0.013)
        b.observe("GET", "/b", 503, 2.0)
    finally:
        current_trace.set(None)
    b.multiprocess.write()
    want = {
        ("/a", "200", "0.015"): (newer, 0.013),
        ("/a", "200", "0.5"): (older, 0.3),
        ("/b", "503", "2.5"): (newer, 2.0),
    }
    page = render(a, openmetrics=True)
    assert _exemplar_lines(page) == want
    # The text format has none, and the merged counts are unchanged by them.
    assert b"trace_id" not in render(a)
    assert _total(render(a)) == 4
    # b exits: its exemplars stay (archived) until a newer one takes the bucket.
    workers.kill(102)
    assert _exemplar_lines(render(a, openmetrics=True)) == want
    archive = json.loads((workers.directory / "archive.json").read_text())
    assert {row[5] for row in archive["exemplars"]} == {newer}
    assert a.internal_errors() == {}


def test_counter_help_texts_reach_the_merged_page(workers: Workers) -> None:
    a, b = workers.spawn(101), workers.spawn(102)
    b.define_counter("tickets_sold", 'Tickets sold, by "kind".', ["kind"])
    b.increment_counter("tickets_sold", {"kind": "vip"}, 3)
    a.increment_counter("tickets_sold", {"kind": "vip"}, 2)  # a never defined its help
    b.multiprocess.write()
    page = render(a).decode()
    assert '# HELP tickets_sold_total Tickets sold, by "kind".\n' in page
    assert 'tickets_sold_total{kind="vip"} 5' in page
    workers.kill(102)  # the archive keeps the text
    assert '# HELP tickets_sold_total Tickets sold, by "kind".\n' in render(a).decode()
    promtool_check(render(a))


def test_exemplars_of_overflowed_series_are_not_archived(workers: Workers) -> None:
    a, b = workers.spawn(101), workers.spawn(102, max_label_sets=2, exemplars=True)
    # b's third series overflows: its exemplar would never be shown
    current_trace.set(TRACE)
    try:
        for ep in ("/a", "/b", "/c"):
            b.observe("GET", ep, 200, 0.01)
    finally:
        current_trace.set(None)
    b.multiprocess.write()
    workers.kill(102)
    render(a)
    archive = json.loads((workers.directory / "archive.json").read_text())
    assert sorted(row[1] for row in archive["exemplars"]) == ["/a", "/b"]
