"""Real scaling: gunicorn and uvicorn --workers under CPU load, scaled by the manager.

Each test starts the server with 2 workers on 127.0.0.1, drives CPU-heavy load
from a bounded generator (threads; stops by itself, capped in time and
requests), lets the manager add workers, stops the load, and lets it remove
them down to 2. Before every scale-down, long requests are opened until one
is in flight on the worker the server will retire; it must complete. A light
trickle of requests runs throughout; no request may fail (client errors or
non-2xx). Each scale-out's time until the new worker served is recorded and
must be far under the 2-minute objective.

One exception, and it is uvicorn's, not eventmon's: a worker that uvicorn
retires closes, without a response, any connection it accepted but had not
yet read a request from (`Server.shutdown` closes every connection whose
`cycle` is None). A plain ASGI app without eventmon loses such connections
too (`benchmarks/scale_in_race.py`: 8 of 81,138 requests over 20 retirements
with uvicorn 0.55; gunicorn gthread 0 of 98,698). The clients here do what
browsers and HTTP libraries with retries do for a GET: when the connection
is closed before any byte of a response, they send the request once more on
a new connection. Those retries are counted; gunicorn must need none, and
uvicorn a few at most per retirement.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import pytest

from eventmon.scaling import AutoScalingManager, LocalWorkersSource, StepPolicy
from servers import PYTHON, free_port, running, wait_http

HERE = Path(__file__).resolve().parent
LOAD_SECONDS = 20.0  # hard cap on the heavy phase
MAX_REQUESTS = 4000  # hard cap on heavy requests
LONG = 3.0  # seconds a long request takes
# What a connection closed before any response byte raises (RemoteDisconnected
# is a ConnectionResetError): the one failure a client may retry a GET on.
UNREAD = (ConnectionResetError, BrokenPipeError)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.retried: list[str] = []  # closed unread, sent again on a new connection
        self.pids: set[str] = set()

    def record(self, status: int | None, pid: str | None, error: str | None = None) -> None:
        with self.lock:
            if error is None and status is not None and 200 <= status < 300:
                self.ok += 1
                if pid:
                    self.pids.add(pid)
            else:
                self.failures.append(error or f"status {status}")

    def retry(self, what: str) -> None:
        with self.lock:
            self.retried.append(what)


def send(
    port: int, path: str, stats: Stats, timeout: float
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse] | None:
    """GET `path` on a new connection; the connection and response, or None if it failed.

    A connection closed before any byte of the response is retried once (see the
    module docstring); any other error, or a second such close, is a failure.
    """
    for attempt in (1, 2):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            return conn, conn.getresponse()
        except UNREAD as e:
            conn.close()
            if attempt == 1:
                stats.retry(f"{path}: {e!r}")
                continue
            stats.record(None, None, f"{path}: {e!r} (after a retry)")
        except Exception as e:  # every other client-side error is a failure
            conn.close()
            stats.record(None, None, f"{path}: {e!r}")
        return None
    return None


def get(port: int, path: str, stats: Stats, timeout: float = 30.0) -> None:
    sent = send(port, path, stats, timeout)
    if sent is None:
        return
    conn, resp = sent
    try:
        resp.read()
        stats.record(resp.status, resp.getheader("X-Worker-Pid"))
    except Exception as e:  # the response had begun: no retry
        stats.record(None, None, f"{path} body: {e!r}")
    finally:
        conn.close()


class LoadGenerator:
    """`threads` clients looping on `path` until stopped, `seconds` pass or `max_requests`."""

    def __init__(
        self,
        port: int,
        path: str,
        *,
        threads: int,
        seconds: float,
        max_requests: int,
        pause: float = 0.0,
    ) -> None:
        self.port, self.path, self.pause = port, path, pause
        self.stats = Stats()
        self.deadline = time.monotonic() + seconds
        self.budget = max_requests
        self.sent = 0
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _take(self) -> bool:
        with self.stats.lock:
            if self.sent >= self.budget:
                return False
            self.sent += 1
            return True

    def _run(self) -> None:
        while not self.stop_event.is_set() and time.monotonic() < self.deadline and self._take():
            get(self.port, self.path, self.stats)
            if self.pause:
                self.stop_event.wait(self.pause)

    def __enter__(self) -> LoadGenerator:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(40)

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InFlight:
    """Long requests opened before a scale-down; each must finish with 200 and its body."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stats = Stats()
        self.threads: list[threading.Thread] = []
        self.on_victim = 0

    def open_one(self) -> str | None:
        """Start a long request; return the pid serving it (read from its first line)."""
        sent = send(self.port, f"/slow?s={LONG}", self.stats, LONG + 30)
        if sent is None:
            return None
        conn, resp = sent
        try:
            first = resp.readline().decode()
        except Exception as e:
            self.stats.record(None, None, f"/slow open: {e!r}")
            conn.close()
            return None

        def finish() -> None:
            try:
                rest = resp.read()
                if resp.status != 200 or rest != b"done\n":
                    self.stats.record(None, None, f"/slow: {resp.status} {rest!r}")
                else:
                    self.stats.record(resp.status, first.strip().removeprefix("pid="))
            except Exception as e:
                self.stats.record(None, None, f"/slow body: {e!r}")
            finally:
                conn.close()

        t = threading.Thread(target=finish, daemon=True)
        t.start()
        self.threads.append(t)
        return first.strip().removeprefix("pid=")

    def open_batch(self, k: int) -> set[str | None]:
        """Open `k` long requests at once; the pids serving them."""
        pids: list[str | None] = []
        threads = [
            threading.Thread(target=lambda: pids.append(self.open_one()), daemon=True)
            for _ in range(k)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return set(pids)

    def join(self) -> None:
        for t in self.threads:
            t.join(LONG + 40)


class DrainCheckingBackend:
    """The real backend, but each scale-down first puts a long request on the victim."""

    def __init__(self, backend, inflight: InFlight) -> None:
        self.backend = backend
        self.inflight = inflight
        self.name = backend.name
        self.scale_downs = 0
        self.victims_hit = 0

    def current(self) -> int:
        return self.backend.current()

    def scale_to(self, n: int) -> bool:
        workers = self.backend.workers()
        if n < len(workers):
            self.scale_downs += 1
            victim = workers[0] if self.backend.retires == "oldest" else workers[-1]
            # Open long requests in parallel batches until one is on the victim: an
            # idle server's kernel hands most connections to one process, and
            # concurrent connects spread them.
            for _ in range(12):
                if str(victim.pid) in self.inflight.open_batch(6):
                    self.victims_hit += 1
                    break
        return self.backend.scale_to(n)


def wait_until(cond, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def scale_under_load(server: str, artifacts_dir: Path) -> None:
    from eventmon.scaling.backends.gunicorn import GunicornBackend
    from eventmon.scaling.backends.uvicorn import UvicornBackend

    port = free_port()
    if server == "gunicorn":
        cmd = [
            PYTHON,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-k",
            "gthread",
            "--threads",
            "4",
            "--graceful-timeout",
            "30",
            "--timeout",
            "60",
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(HERE),
            "scaling_app:wsgi_app",
        ]
        backend_cls = GunicornBackend
    else:
        cmd = [
            PYTHON,
            "-m",
            "uvicorn",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--app-dir",
            str(HERE),
            "--log-level",
            "warning",
            "scaling_app:asgi_app",
        ]
        backend_cls = UvicornBackend
    started = time.monotonic()
    with running(cmd, port) as proc:
        wait_http(f"http://127.0.0.1:{port}/pid")
        real = backend_cls(proc.pid, ready_timeout=30)
        assert wait_until(lambda: real.current() == 2, 15)
        inflight = InFlight(port)
        backend = DrainCheckingBackend(real, inflight)
        policy = StepPolicy(
            scale_up_above=25,
            scale_down_below=8,
            min_instances=2,
            max_instances=4,
            scale_down_stabilization=2.0,
        )
        manager = AutoScalingManager(
            backend,
            LocalWorkersSource(proc.pid, exclude=real.draining),
            policy=policy,
            min_instances=2,
            max_instances=4,
            interval=0.5,
        )
        counts: list[int] = []
        with LoadGenerator(
            port, "/pid", threads=1, seconds=55, max_requests=3000, pause=0.05
        ) as trickle:
            manager.start()
            try:
                with LoadGenerator(
                    port, "/cpu?ms=30", threads=8, seconds=LOAD_SECONDS, max_requests=MAX_REQUESTS
                ) as heavy:
                    wait_until(
                        lambda: counts.append(real.current()) or counts[-1] >= 4, LOAD_SECONDS
                    )
                peak = max(counts)
                assert wait_until(
                    lambda: (
                        counts.append(real.current()) or (counts[-1] == 2 and not real.draining())
                    ),
                    25,
                ), f"did not come back to 2 workers: {[e.to_dict() for e in manager.history]}"
            finally:
                manager.stop()
            inflight.join()
        events = list(manager.history)
        retried = heavy.stats.retried + trickle.stats.retried + inflight.stats.retried
        outs = [e for e in events if e.direction == "out"]
        ins = [e for e in events if e.direction == "in"]
        report = {
            "server": server,
            "peak_workers": peak,
            "scale_out_seconds": [round(e.duration or 0, 3) for e in outs],
            "scale_downs": backend.scale_downs,
            "long_requests_on_retired_worker": backend.victims_hit,
            "heavy_requests_ok": heavy.stats.ok,
            "trickle_requests_ok": trickle.stats.ok,
            "long_requests_ok": inflight.stats.ok,
            "retried_closed_unread": retried,
            "test_seconds": round(time.monotonic() - started, 1),
            "events": [e.to_dict() for e in events],
        }
        (artifacts_dir / f"scaling-{server}.json").write_text(json.dumps(report, indent=2))
        print(json.dumps({k: v for k, v in report.items() if k != "events"}))

        # It scaled out under load, each time far under the 2-minute objective.
        assert peak >= 3, report
        assert outs, report
        for e in outs:
            assert e.served, e
            assert not e.slow, e
            assert e.duration is not None, e
            assert e.duration < 30, e
        # The new workers really served requests.
        assert len(heavy.stats.pids | trickle.stats.pids) >= peak
        # It came back down to 2, never below, one step at a time.
        assert ins, report
        assert ins[-1].to_instances == 2
        assert min(counts) >= 2
        assert all(e.to_instances >= 2 for e in events)
        # Zero failed requests, including the long ones in flight on retired workers.
        assert heavy.stats.failures == [], heavy.stats.failures[:5]
        assert trickle.stats.failures == [], trickle.stats.failures[:5]
        assert inflight.stats.failures == [], inflight.stats.failures[:5]
        # Connections closed unread: none on gunicorn; on uvicorn only its own
        # shutdown race (module docstring), a few per retirement at most.
        if server == "gunicorn":
            assert retried == [], retried[:5]
        else:
            assert len(retried) <= 3 * backend.scale_downs, report
        assert backend.scale_downs == len(ins) >= 1
        assert backend.victims_hit == backend.scale_downs, report
        assert inflight.stats.ok == len(inflight.threads)
        assert heavy.sent <= MAX_REQUESTS


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_gunicorn_scales_out_and_back_in_without_dropping_requests(artifacts_dir):
    scale_under_load("gunicorn", artifacts_dir)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_uvicorn_scales_out_and_back_in_without_dropping_requests(artifacts_dir):
    scale_under_load("uvicorn", artifacts_dir)
