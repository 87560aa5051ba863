"""Cost of one alert evaluation (default rules) and of handing a notification off.

python benchmarks/bench_alerting.py
"""

from __future__ import annotations

import random
import statistics
import time

from eventmon import MetricsCollector
from eventmon.alerting import AlertEngine, AlertRule, default_rules
from eventmon.alerting.notifiers import AlertNotice, DashboardFeed


def main() -> None:
    col = MetricsCollector(slow_hooks=())
    rng = random.Random(1)
    endpoints = [f"/e{i}/{{id}}" for i in range(50)]
    for _ in range(200_000):
        col.observe("GET", rng.choice(endpoints), 200 if rng.random() > 0.01 else 500,
                    rng.expovariate(1 / 0.05))  # fmt: skip
    rules = default_rules(scaling=True) + [
        AlertRule(f"slow_{i}", f'p95_response_time{{endpoint="{e}"}} > 300ms')
        for i, e in enumerate(endpoints[:10])
    ]
    engine = AlertEngine(col, rules, notifiers=[DashboardFeed()])
    times = []
    for _ in range(50):
        for _ in range(2000):  # new traffic between evaluations, as in real life
            col.observe("GET", rng.choice(endpoints), 200, rng.expovariate(1 / 0.05))
        t = time.perf_counter()
        engine.evaluate()
        times.append(time.perf_counter() - t)
    print(f"evaluate(): {len(rules)} rules, 50 endpoints, 2000 new requests/evaluation:"
          f" median {statistics.median(times) * 1000:.2f} ms,"
          f" max {max(times) * 1000:.2f} ms")  # fmt: skip
    n = AlertNotice("x", "firing", "critical")
    t = time.perf_counter()
    for _ in range(1000):
        engine.dispatcher.dispatch(n)
    print(f"dispatch(): {(time.perf_counter() - t) / 1000 * 1e6:.1f} us per notification")
    engine.stop()
    col.shutdown()


if __name__ == "__main__":
    main()
