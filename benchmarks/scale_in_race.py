"""How many requests a server loses when it retires a worker, without eventmon.

Starts a plain app (no eventmon) under `uvicorn --workers 2` or gunicorn
(gthread, 2 workers) on 127.0.0.1, keeps `--clients` threads sending GETs on
new connections, and `--cycles` times adds a worker (SIGTTIN) and removes one
(SIGTTOU), as eventmon's backends do. Prints the requests that succeeded and
those that failed, by error. It separates what the server does from what
eventmon does: uvicorn's shutdown closes connections it accepted but had not
read yet, so a few requests fail at each retirement with or without eventmon.

Run: ``python benchmarks/scale_in_race.py --server uvicorn --cycles 20``.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

APP = """
import os

PID = str(os.getpid()).encode()


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-pid", PID)]})
    await send({"type": "http.response.body", "body": b"ok"})


def wsgi(environ, start_response):
    start_response("200 OK", [("X-Pid", PID.decode())])
    return [b"ok"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(server: str, port: int, app_dir: str) -> list[str]:
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--workers",
            "2",
            "--port",
            str(port),
            "--app-dir",
            app_dir,
            "--log-level",
            "warning",
            "race_app:asgi",
        ]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "2",
        "-k",
        "gthread",
        "--threads",
        "4",
        "-b",
        f"127.0.0.1:{port}",
        "--chdir",
        app_dir,
        "--log-level",
        "warning",
        "race_app:wsgi",
    ]


def wait_ready(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["uvicorn", "gunicorn"], default="uvicorn")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--pause", type=float, default=1.5, help="seconds after each signal")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as app_dir:
        Path(app_dir, "race_app.py").write_text(APP)
        port = free_port()
        proc = subprocess.Popen(command(args.server, port, app_dir))
        try:
            wait_ready(port, time.monotonic() + 30)
            time.sleep(1.0)
            stop = threading.Event()
            lock = threading.Lock()
            ok = 0
            errors: collections.Counter[str] = collections.Counter()

            def client() -> None:
                nonlocal ok
                while not stop.is_set():
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    try:
                        conn.request("GET", "/", headers={"Connection": "close"})
                        conn.getresponse().read()
                        with lock:
                            ok += 1
                    except Exception as e:
                        with lock:
                            errors[type(e).__name__] += 1
                    finally:
                        conn.close()

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for t in threads:
                t.start()
            for _ in range(args.cycles):
                os.kill(proc.pid, signal.SIGTTIN)
                time.sleep(args.pause)
                os.kill(proc.pid, signal.SIGTTOU)
                time.sleep(args.pause)
            stop.set()
            for t in threads:
                t.join()
        finally:
            proc.terminate()
            proc.wait(30)
    failed = sum(errors.values())
    print(
        f"{args.server}: {args.cycles} retirements, {ok} requests ok, {failed} failed "
        f"({failed / max(args.cycles, 1):.2f} per retirement) {dict(errors)}"
    )


if __name__ == "__main__":
    main()
