"""Worker aggregation: per-request overhead, and the cost of a merged scrape.

1. Per-request overhead of the ASGI middleware with aggregation on (a writer
   thread dumping the state every ``--interval`` seconds) against single-process
   mode, in process, interleaved rounds (target: within 1.5x).
2. A scrape served by one of 4 workers with 1,000 series each: write own state,
   archive nothing, merge 4 files + the archive, render (target: under 50 ms);
   then again after 200 dead workers' files were archived.

Run: ``python benchmarks/bench_multiprocess.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _harness import interleave, machine, report
from bench_asgi import make_app, runner


def overhead(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, float]]:
    from eventmon import MetricsCollector
    from eventmon.asgi import EventmonMiddleware
    from eventmon.exporters.multiprocess import enable

    apps: dict[str, Any] = {"bare starlette": make_app()}
    a = make_app()
    a.add_middleware(EventmonMiddleware, collector=MetricsCollector(slow_hooks=()))
    apps["eventmon"] = a
    for interval in (1.0, 0.1):
        c = MetricsCollector(slow_hooks=())
        enable(c, tmp / f"mp-{interval}", interval=interval)
        a = make_app()
        a.add_middleware(EventmonMiddleware, collector=c)
        apps[f"eventmon + aggregation ({interval:g} s writes)"] = a
    loop = asyncio.new_event_loop()
    runs = {name: runner(app, loop) for name, app in apps.items()}
    return interleave(runs, baseline="bare starlette", rounds=args.rounds, per_round=args.per_round)


def _is_alive(alive: set[int]) -> Any:
    return lambda pid, _start: pid in alive


def scrape_cost(tmp: Path) -> dict[str, float]:
    from eventmon import MetricsCollector
    from eventmon.exporters.multiprocess import enable
    from eventmon.exporters.prometheus import render

    directory = tmp / "scrape"
    alive: set[int] = set()
    workers = []
    endpoints = [f"/api/v1/resource{i}/{{id}}" for i in range(250)]
    for k in range(4):
        c = MetricsCollector(slow_hooks=())
        enable(c, directory, identity=(100 + k, "b"), is_alive=_is_alive(alive), start=False)
        alive.add(100 + k)
        for i, ep in enumerate(endpoints):
            for status in (200, 201, 404, 500):
                for r in range(3):
                    c.observe("GET", ep, status, ((i * 7 + r + k) % 300 + 1) / 1000)
        c.multiprocess.write()
        workers.append(c)

    def median_ms(n: int = 30) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            body = render(workers[0])
            times.append(time.perf_counter() - t0)
        assert body.count(b"\nhttp_requests_total{") >= 1000
        return statistics.median(times) * 1000

    before = median_ms()
    for j in range(200):
        c = MetricsCollector(slow_hooks=())
        enable(c, directory, identity=(1000 + j, "b"), is_alive=_is_alive(alive), start=False)
        for ep in endpoints[j % 50 :: 50]:
            c.observe("POST", ep, 200, 0.003)
        c.multiprocess.write()
        c.multiprocess.close(final_write=False)
    render(workers[0])  # archives the 200 files once
    after = median_ms()
    return {"1000 series x 4 workers (ms)": before, "after 200 dead workers (ms)": after}


def run(args: argparse.Namespace, tmp: Path) -> None:
    results = overhead(args, tmp)
    print(report("ASGI (Starlette) with worker aggregation, in process", results, "eventmon"))
    base = results["eventmon"]["overhead_us"]
    for name, r in results.items():
        if "aggregation" in name:
            print(f"\n{name}: {r['overhead_us'] / base:.2f}x single-process overhead")
    print()
    for name, ms in scrape_cost(tmp).items():
        print(f"scrape, {name}: {ms:.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=2000)
    args = ap.parse_args(argv)
    from eventmon.exporters import multiprocess

    with tempfile.TemporaryDirectory() as d:
        try:
            run(args, Path(d))
        finally:
            multiprocess._at_exit()  # stop the writers before the directory goes
    print(f"\n{machine()}; {args.rounds} rounds x {args.per_round} requests, medians")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
