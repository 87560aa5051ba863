"""Helpers for tests that start real servers and real tools on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))
T = TypeVar("T")


def require_binary(name: str) -> str:
    """Path of an external program; skip the test locally, fail it in CI, if missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (apt-get install it; .ci/run does)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def promtool_check(body: bytes | str, *, allowed: str | None = None) -> None:
    """``promtool check metrics`` accepts ``body`` and prints nothing.

    ``allowed``: lint lines containing it are tolerated (a test that shows one on purpose).
    """
    promtool = require_binary("promtool")
    data = body.encode() if isinstance(body, str) else body
    result = subprocess.run(
        [promtool, "check", "metrics"], input=data, capture_output=True, timeout=60, check=False
    )
    output = (result.stdout + result.stderr).decode()
    problems = [line for line in output.splitlines() if not allowed or allowed not in line]
    assert problems == [], output
    assert result.returncode == 0 or (allowed and output), output


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{out}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except Exception as e:
            last = e
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last!r}")


@contextlib.contextmanager
def running(
    cmd: Sequence[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server process, wait until it listens on `port`, stop it afterwards."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "tests"), full_env.get("PYTHONPATH", "")]
    )
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        list(cmd),
        env=full_env,
        cwd=str(cwd) if cwd else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, timeout, proc)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    """SIGTERM the process group, then SIGKILL; return what it printed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if proc.stdout:
        proc.stdout.close()
    return out


PYTHON = sys.executable


def wait_child(pid: int, timeout: float = 10.0) -> int:
    """Exit code of a forked child; kill it and fail if it has not exited in time."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"forked child {pid} did not exit within {timeout}s (deadlock?)")
        time.sleep(0.01)


@contextlib.contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on 127.0.0.1; yields its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Prometheus:
    """A real Prometheus server on 127.0.0.1, started by :func:`prometheus_server`."""

    port: int
    output: str = ""  # what the server printed; set once it has stopped

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        """``data`` of ``/api/v1/<path>``, or None while the storage is not ready (503)."""
        url = f"{self.url}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            if e.code == 503:  # Prometheus listens before its storage is ready
                return None
            raise
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        return [] if data is None else data["result"]  # type: ignore[no-any-return]

    def wait_for(
        self, fetch: Callable[[], T], ok: Callable[[T], object] = bool, timeout: float = 40.0
    ) -> T:
        """``fetch()`` every half second until ``ok`` of it; the last result either way."""
        deadline = time.monotonic() + timeout
        while True:
            result = fetch()
            if ok(result) or time.monotonic() >= deadline:
                return result
            time.sleep(0.5)

    def poll(
        self, promql: str, want: Callable[[list[dict[str, Any]]], object], timeout: float = 40.0
    ) -> list[dict[str, Any]]:
        """The query's result once it is non-empty and ``want`` of it holds."""
        result = self.wait_for(lambda: self.query(promql), lambda r: r and want(r), timeout)
        if not (result and want(result)):
            raise AssertionError(f"{promql} never satisfied the check; last result {result}")
        return result

    def poll_rules(self, timeout: float = 40.0) -> list[dict[str, Any]]:
        """The loaded rules once each has been evaluated at least once."""

        def rules() -> list[dict[str, Any]]:
            data = self.api("rules") or {"groups": []}
            return [rule for g in data["groups"] for rule in g["rules"]]

        def evaluated(rs: list[dict[str, Any]]) -> bool:
            return bool(rs) and all(r["health"] != "unknown" for r in rs)

        found = self.wait_for(rules, evaluated, timeout)
        if not evaluated(found):
            raise AssertionError(f"rules never all evaluated: {found}")
        return found

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]  # type: ignore[no-any-return]


@contextlib.contextmanager
def prometheus_server(
    tmp_path: Path, config: str, *, flags: Sequence[str] = (), data: Path | None = None
) -> Iterator[Prometheus]:
    """Run ``prometheus`` with this YAML config (written to ``tmp_path/prometheus.yml``, so
    rule files may be named relative to it) until the block ends; ``output`` is then set.

    The block starts once the server is ready. Storage is ``data`` or ``tmp_path/data``;
    ``flags`` are extra command-line flags. What the server printed is printed too when the
    block fails, so pytest shows it.
    """
    binary = require_binary("prometheus")
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(config)
    prom = Prometheus(free_port())
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={data or tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom.port}",
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    failed = True
    try:
        wait_for_port(prom.port, 30, proc)
        wait_http(f"{prom.url}/-/ready", timeout=30)
        yield prom
        failed = False
    finally:
        prom.output = stop(proc)
        if failed:
            print(f"prometheus printed:\n{prom.output}")
