"""End to end: a uvicorn-served app on 127.0.0.1 under wrk, bare vs instrumented.

Both servers run at once (one worker each); wrk runs against them in alternation,
several rounds, and we report the median requests per second of each and the
ratio. Needs Debian's ``wrk``. Run: ``python benchmarks/bench_wrk.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(target: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{target} did not start")


def wrk(port: int, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/events/42"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(out)
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk); skipping the end-to-end benchmark")
        return 0
    targets = {"bare": "bare", "pass-through": "passthrough", "eventmon": "instrumented"}
    ports = {k: free_port() for k in targets}
    procs = [start(f"apps_e2e:{targets[k]}", p) for k, p in ports.items()]
    try:
        for port in ports.values():
            wrk(port, 2, args.connections)  # warm up
        rps: dict[str, list[float]] = {k: [] for k in ports}
        for i in range(args.rounds):
            order = list(ports) if i % 2 == 0 else list(reversed(ports))
            for name in order:
                rps[name].append(wrk(ports[name], args.seconds, args.connections))
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(10)
    print("### End to end: uvicorn on 127.0.0.1 under wrk\n")
    print("| variant | median requests/s | median of paired ratios to bare |\n|---|---:|---:|")
    for name, values in rps.items():
        ratio = statistics.median(v / b for v, b in zip(values, rps["bare"], strict=True))
        print(f"| {name} | {statistics.median(values):,.0f} | {ratio * 100:.1f} % |")
    print(
        f"\n{args.rounds} rounds, {args.seconds} s each, order alternating; wrk -t1"
        f" -c{args.connections}, one uvicorn worker per variant. Target: eventmon >= 95 %."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
