from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from eventmon.cli import main
from servers import PYTHON, ROOT, free_port, running, wait_http

HERE = Path(__file__).resolve().parent


def gunicorn(port: int, pidfile: Path) -> list[str]:
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "-w",
        "2",
        "-k",
        "gthread",
        "--threads",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "--pid",
        str(pidfile),
        "--chdir",
        str(HERE),
        "scaling_app:wsgi_app",
    ]


def autoscale(*args: str) -> dict:
    out = subprocess.run(
        [PYTHON, "-m", "eventmon", "autoscale", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    return json.loads(out.stdout)


@pytest.mark.slow
def test_autoscale_once_against_a_real_gunicorn(tmp_path):
    port = free_port()
    pidfile = tmp_path / "gunicorn.pid"
    with running(gunicorn(port, pidfile), port):
        wait_http(f"http://127.0.0.1:{port}/pid")
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # Idle workers: the step policy holds at the minimum of 2.
        held = autoscale("--backend", "gunicorn", "--pidfile", str(pidfile), "--once")
        assert held["current"] == 2
        assert held["desired"] == 2
        assert held["event"] is None
        # A floor above the current count: a dry run decides 3 but changes nothing.
        dry = autoscale(
            "--backend",
            "gunicorn",
            "--pidfile",
            str(pidfile),
            "--once",
            "--dry-run",
            "--min",
            "3",
            "--max",
            "5",
        )
        assert (dry["current"], dry["desired"], dry["applied"]) == (2, 3, False)
        applied = autoscale(
            "--backend",
            "gunicorn",
            "--pidfile",
            str(pidfile),
            "--once",
            "--min",
            "3",
        )
        assert (applied["current"], applied["desired"], applied["applied"]) == (2, 3, True)
        assert applied["event"]["served"] is True
        assert applied["event"]["duration"] < 30
        again = autoscale(
            "--backend", "gunicorn", "--pidfile", str(pidfile), "--once", "--min", "3"
        )
        assert again["current"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "gunicorn"], "--pid or --pidfile"),
        (["--backend", "kubernetes"], "--deployment"),
        (["--backend", "kubernetes", "--deployment", "web"], "--prometheus"),
        (["--backend", "uvicorn", "--pid", "1", "--prometheus", "http://p:9090"], "--query"),
    ],
)
def test_autoscale_usage_mistakes(capsys, args, message):
    assert main(["autoscale", *args, "--once"]) == 2
    assert message in capsys.readouterr().err
