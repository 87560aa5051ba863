"""Costs of the core: observe(), memory per histogram and per thread, rendering a scrape.

Run: ``python benchmarks/bench_core.py`` (or ``nox -s bench``). Each figure is the
median of several repetitions.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import threading
import time
import tracemalloc

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _harness import machine

from eventmon import LatencyHistogram, MetricsCollector
from eventmon.exporters.prometheus import render


def observe_cost(n: int = 200_000, reps: int = 7) -> tuple[float, float]:
    """(ns per observe() call alone, ns per observation folded at read time)."""
    endpoints = [f"/events/{i}" for i in range(20)]
    durations = [random.Random(1).expovariate(1 / 0.03) for _ in range(1000)]
    calls, folds = [], []
    for _ in range(reps):
        # A journal larger than n: the calls alone, then the fold a reader pays.
        c = MetricsCollector(slow_hooks=(), journal_limit=n + 1)
        observe = c.observe
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        for i in range(n):
            observe("GET", endpoints[i % 20], 200, durations[i % 1000])
        t1 = time.perf_counter()
        c.flush()
        t2 = time.perf_counter()
        gc.enable()
        calls.append((t1 - t0) / n * 1e9)
        folds.append((t2 - t1) / n * 1e9)
    return statistics.median(calls), statistics.median(folds)


def observe_amortized(n: int = 200_000, reps: int = 7) -> float:
    """ns per observe() with the default journal: calls plus the folds they trigger."""
    endpoints = [f"/events/{i}" for i in range(20)]
    out = []
    for _ in range(reps):
        c = MetricsCollector(slow_hooks=())
        observe = c.observe
        t0 = time.perf_counter()
        for i in range(n):
            observe("GET", endpoints[i % 20], 200, 0.0123)
        c.flush()
        out.append((time.perf_counter() - t0) / n * 1e9)
    return statistics.median(out)


def histogram_bytes() -> int:
    return LatencyHistogram().nbytes()


def memory_40_threads_100_endpoints() -> float:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    c = MetricsCollector(slow_hooks=())
    barrier = threading.Barrier(40)

    def work(i: int) -> None:
        barrier.wait()
        rnd = random.Random(i)
        for n in range(5_000):
            c.observe("GET", f"/endpoint/{n % 100}", 200, rnd.expovariate(1 / 0.05))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.flush()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / 1e6


def render_1000(reps: int = 15) -> tuple[float, float, int]:
    """(ms when every endpoint changed since the last scrape, ms when none did, bytes)."""
    c = MetricsCollector(slow_hooks=(), max_label_sets=2000)
    rnd = random.Random(3)
    for i in range(1000):
        for _ in range(20):
            c.observe("GET", f"/route/{i}", 200, rnd.expovariate(1 / 0.05))
    changed, unchanged = [], []
    size = 0
    for _ in range(reps):
        for i in range(1000):
            c.observe("GET", f"/route/{i}", 200, rnd.expovariate(1 / 0.05))
        c.flush()
        t0 = time.perf_counter()
        size = len(render(c))
        t1 = time.perf_counter()
        render(c)
        t2 = time.perf_counter()
        changed.append((t1 - t0) * 1000)
        unchanged.append((t2 - t1) * 1000)
    return statistics.median(changed), statistics.median(unchanged), size


def main() -> int:
    calls, fold = observe_cost()
    amortized = observe_amortized()
    ms, ms_quiet, size = render_1000()
    print("### Core costs\n")
    print("| figure | value | target |")
    print("|---|---:|---:|")
    print(f"| observe() call on the request path | {calls:.0f} ns | |")
    print(f"| fold per observation (paid by the reader) | {fold:.0f} ns | |")
    print(f"| observe() amortized, default journal (call + fold) | {amortized:.0f} ns | ≤ 400 ns |")
    print(f"| memory per endpoint histogram | {histogram_bytes() / 1024:.1f} KB | ≤ 32 KB |")
    print(
        f"| peak memory, 40 threads x 100 endpoints | {memory_40_threads_100_endpoints():.1f} MB"
        " | < 16 MB |"
    )
    print(
        f"| render 1,000 label sets, every endpoint changed ({size / 1e6:.2f} MB) | {ms:.1f} ms"
        " | < 20 ms |"
    )
    print(f"| render 1,000 label sets, none changed | {ms_quiet:.1f} ms | < 20 ms |")
    print(f"\n{machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
