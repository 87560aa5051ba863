"""Start `eventmon demo` in a subprocess for the end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from servers import PYTHON, ROOT, free_port, wait_http

TOKEN = "demo-token"


def demo_cmd(port: int, *extra: str) -> list[str]:
    # A short cycle so the ticket sale opens 2 s in and alerts fire within seconds.
    return [
        PYTHON, "-m", "eventmon", "demo", "--port", str(port), "--token", TOKEN,
        "--rate", "30", "--opening-at", "2", "--opening-for", "25", "--cycle", "40", *extra,
    ]  # fmt: skip


@contextmanager
def demo(*extra: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    started = time.monotonic()
    proc = subprocess.Popen(
        demo_cmd(port, *extra),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/eventmon/app.js", timeout=15)
        proc.startup_seconds = time.monotonic() - started  # type: ignore[attr-defined]
        yield proc, base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()


def get_json(url: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout}s (last: {last!r})")
