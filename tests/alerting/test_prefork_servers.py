"""One alert notice per instance under real pre-fork servers with three workers.

gunicorn's sync workers (the engine on a thread) and ``uvicorn --workers`` (the
engine in the ASGI lifespan), each worker starting its own engine.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from servers import PYTHON, free_port, running

pytestmark = pytest.mark.slow


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _poll(what: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``what()`` once it returns something truthy (else fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _evaluators(port: int) -> dict[str, float]:
    """``eventmon_alert_evaluator`` per worker, from a merged scrape."""
    status, body = _get(port, "/metrics")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("eventmon_alert_evaluator{"):
            name, value = line.rsplit(" ", 1)
            out[name.split('"')[1]] = float(value)
    return out


def _engine(port: int) -> dict[str, Any]:
    status, body = _get(port, "/engine")
    assert status == 200
    doc: dict[str, Any] = json.loads(body)
    return doc


def _command(server: str, port: int) -> list[str]:
    if server == "gunicorn-sync":
        # The engine starts at import, in each worker (a thread: engine.start()).
        return [
            PYTHON, "-m", "gunicorn", "-w", "3", "-b", f"127.0.0.1:{port}",
            "--graceful-timeout", "5", "apps.mp_alert_app:app",
        ]  # fmt: skip
    # The engine runs in each worker's ASGI lifespan (an asyncio task).
    return [
        PYTHON, "-m", "uvicorn", "apps.mp_alert_asgi:app", "--workers", "3",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip


@pytest.mark.parametrize("server", ["gunicorn-sync", "uvicorn-workers"])
def test_three_workers_send_one_notice_from_the_instance_s_count(
    tmp_path: Path, http_receiver, server: str
) -> None:
    port = free_port()
    env = {
        "EVENTMON_MULTIPROC_DIR": str(tmp_path / "mp"),
        "EVENTMON_MULTIPROC_INTERVAL": "0.2",
        "ALERT_URL": http_receiver.url + "/hook",
        "ALERT_THRESHOLD": "25",
    }
    cmd = _command(server, port)
    with running(cmd, port, env=env):
        # Every worker's engine is up, and exactly one leads.
        evaluators = _poll(lambda: (e := _evaluators(port)) and len(e) == 3 and e)
        assert sorted(evaluators.values()) == [0.0, 0.0, 1.0]
        (leader,) = [pid for pid, v in evaluators.items() if v == 1.0]

        # 30 failures spread over the workers (about 10 each): the rule is over the
        # instance's sum, which no one worker's count reaches.
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: _get(port, "/fail"), range(30)))
        assert {status for status, _ in answers} == {500}
        assert len({body for _, body in answers}) >= 2

        (notice,) = http_receiver.wait_for("/hook", 1, timeout=30)
        assert notice.body["name"] == "checkout_failing"
        assert notice.body["status"] == "firing"
        assert notice.body["value"] > 25

        # The leader evaluates ten more times (the others not at all): still one notice.
        first = _poll(lambda: (d := _engine(port))["leading"] and d)
        assert str(first["pid"]) == leader
        _poll(
            lambda: (
                (d := _engine(port))["leading"] and d["evaluations"] >= first["evaluations"] + 10
            )
        )
        followers = _poll(lambda: None if (d := _engine(port))["leading"] else d)
        assert followers["evaluations"] == 0
        assert followers["firing"] == ["checkout_failing"]  # the leader's, published
        assert len(http_receiver.on("/hook")) == 1
        # The leader's value is the instance's count, all 30.
        _poll(lambda: (d := _engine(port))["leading"] and d["value"] == 30)

        # The leader killed outright: another worker takes over (the server starts
        # a replacement for the dead one).
        os.kill(int(leader), signal.SIGKILL)
        evaluators = _poll(
            lambda: (e := _evaluators(port)) and leader not in e and sum(e.values()) == 1 and e
        )
        (new_leader,) = [pid for pid, v in evaluators.items() if v == 1.0]
        assert new_leader != leader
        # It carries the alert on from the published states: evaluating, it does not
        # send the firing notice a second time.
        _poll(lambda: (d := _engine(port))["leading"] and d["evaluations"] >= 10)
        statuses = [n.body["status"] for n in http_receiver.on("/hook")]
        assert statuses.count("firing") == 1, statuses
