"""Walk-forward evaluation of eventmon's forecaster on real traces (hourly sums).

    python benchmarks/forecast_eval.py [--data DIR] [--headroom 0.2]

By default it reads the slices of the NAB traces vendored in tests/data (see the
README there); ``--data`` points it at a folder holding the full NAB CSVs.

For every hour after a one-week warm-up the forecaster, having seen only the
hours up to then, predicts the next hour and the hour 24 h ahead. Scores are
WAPE (sum |error| / sum actual) against three naive forecasts: the last hour
seen, the same hour yesterday, the same hour last week. Then the instances it
would recommend (forecast x (1 + headroom) / capacity, rounded up) are compared
with the instances each hour actually needed (actual / capacity, rounded up).
Capacity assumption: one instance serves the series' 95th-percentile hour / 10,
so a busy hour needs about ten instances.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from eventmon.scaling.forecast_cli import read_history
from eventmon.scaling.predictive import Forecaster, recommend_instances

SERIES = ("nyc_taxi", "elb_request_count_8c0756", "Twitter_volume_GOOG")
HORIZONS = (1, 24)
WARMUP = 168
H = 3600.0


def wape(pairs: list[tuple[float, float]]) -> float:
    return sum(abs(p - a) for p, a in pairs) / sum(a for _, a in pairs)


def provisioning(
    pairs: list[tuple[float, float]], capacity: float, headroom: float
) -> tuple[float, float]:
    """(share of hours under-provisioned, spare share of provisioned capacity)."""
    under, provided, used = 0, 0.0, 0.0
    for predicted, actual in pairs:
        rec = recommend_instances(predicted, capacity, headroom=headroom)
        need = max(1, math.ceil(actual / capacity - 1e-9))
        under += rec < need
        provided += rec * capacity
        used += actual
    return under / len(pairs), (provided - used) / provided


def evaluate(path: Path, headroom: float) -> dict[str, object]:
    counts = read_history(path).counts
    value = dict(counts)
    f = Forecaster()
    model: dict[int, list[tuple[float, float]]] = {h: [] for h in HORIZONS}
    naive: dict[int, dict[str, list[tuple[float, float]]]] = {
        h: {"last hour": [], "yesterday": [], "last week": []} for h in HORIZONS
    }
    for i, (t, c) in enumerate(counts):
        f.update(t, c)
        if i + 1 < WARMUP:
            continue
        for h in HORIZONS:
            target = t + h * H
            if target not in value:
                continue
            actual = value[target]
            p = f.forecast(target)
            if p is None:
                continue
            lags = {"last hour": t, "yesterday": target - 24 * H, "last week": target - 168 * H}
            if not all(lag in value and lag <= t for lag in lags.values()):
                continue  # score every method on the same hours
            model[h].append((p, actual))
            for name, lag in lags.items():
                naive[h][name].append((value[lag], actual))
    ordered = sorted(c for _, c in counts)
    capacity = ordered[int(0.95 * (len(ordered) - 1))] / 10
    out: dict[str, object] = {"hours": len(counts), "capacity": capacity}
    for h in HORIZONS:
        scores = {name: wape(pairs) for name, pairs in naive[h].items()}
        best = min(scores, key=lambda k: scores[k])
        out[h] = {
            "n": len(model[h]),
            "model": wape(model[h]),
            "naive": scores,
            "best": best,
            "prov_model": provisioning(model[h], capacity, headroom),
            "prov_best": provisioning(naive[h][best], capacity, headroom),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    default = Path(__file__).resolve().parent.parent / "tests" / "data"
    parser.add_argument(
        "--data", type=Path, default=default, help="folder of the NAB CSVs (default: tests/data)"
    )
    parser.add_argument("--headroom", type=float, default=0.2)
    args = parser.parse_args()
    started = time.perf_counter()
    results = {name: evaluate(args.data / f"{name}.csv", args.headroom) for name in SERIES}
    print(
        "| series | ahead | hours scored | eventmon WAPE | last hour | same hour yesterday "
        "| same hour last week | beats best naive |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for h in HORIZONS:
            s = r[h]  # type: ignore[index]
            n = s["naive"]
            best = n[s["best"]]
            print(
                f"| {name} | {h} h | {s['n']} | **{s['model']:.3f}** | {n['last hour']:.3f} "
                f"| {n['yesterday']:.3f} | {n['last week']:.3f} "
                f"| {'yes' if s['model'] < best else 'NO'} ({s['model'] / best - 1:+.0%}) |"
            )
    print()
    print(
        f"Recommended instances, headroom {args.headroom:.0%}; capacity per instance = "
        "95th-percentile hour / 10:"
    )
    print()
    print(
        "| series | ahead | capacity (req/h/instance) | eventmon: hours under-provisioned "
        "| eventmon: spare capacity | best naive: under-provisioned | best naive: spare |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for h in HORIZONS:
            s = r[h]  # type: ignore[index]
            (mu, ms), (bu, bs) = s["prov_model"], s["prov_best"]
            print(
                f"| {name} | {h} h | {r['capacity']:,.0f} | {mu:.1%} | {ms:.1%} "
                f"| {bu:.1%} ({s['best']}) | {bs:.1%} |"
            )
    print()
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
