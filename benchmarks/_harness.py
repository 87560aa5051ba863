"""Shared benchmark harness: interleaved rounds, medians, ratios.

These machines are noisy, so every variant runs once per round in a shuffled
order, many rounds, and we report the median time per request of each variant
and its overhead over the bare app measured in the same rounds.
"""

from __future__ import annotations

import gc
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

Runner = Callable[[int], float]  # run n requests, return seconds taken


def interleave(
    variants: dict[str, Runner],
    *,
    baseline: str,
    rounds: int = 30,
    per_round: int = 2000,
    warmup: int = 500,
    seed: int = 1,
) -> dict[str, dict[str, float]]:
    """Run each variant `rounds` times in shuffled order; per-request medians in µs."""
    rng = random.Random(seed)
    for run in variants.values():
        run(warmup)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    gc_was = gc.isenabled()
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            gc.collect()
            gc.disable()
            try:
                elapsed = variants[name](per_round)
            finally:
                if gc_was:
                    gc.enable()
            samples[name].append(elapsed / per_round * 1e6)
    base = statistics.median(samples[baseline])
    out: dict[str, dict[str, float]] = {}
    for name, xs in samples.items():
        med = statistics.median(xs)
        # Overhead per round against the same round's baseline, then the median:
        # steadier than subtracting two medians.
        over = statistics.median(x - b for x, b in zip(xs, samples[baseline], strict=True))
        out[name] = {
            "median_us": med,
            "overhead_us": over if name != baseline else 0.0,
            "p25_us": statistics.quantiles(xs, n=4)[0],
            "p75_us": statistics.quantiles(xs, n=4)[2],
        }
    out["_baseline"] = {"median_us": base}
    return out


def report(title: str, results: dict[str, dict[str, float]], reference: str) -> str:
    """A Markdown table of medians, overheads and ratios to `reference`'s overhead."""
    ref = results[reference]["overhead_us"]
    lines = [
        f"### {title}",
        "",
        "| variant | median µs/request | overhead µs | overhead vs eventmon |",
        "|---|---:|---:|---:|",
    ]
    rows = [(k, v) for k, v in results.items() if not k.startswith("_")]
    rows.sort(key=lambda kv: kv[1]["median_us"])
    for name, r in rows:
        has_ratio = ref > 0 and r["overhead_us"] > 0
        ratio_s = f"{r['overhead_us'] / ref:.1f}x" if has_ratio else "—"
        lines.append(f"| {name} | {r['median_us']:.2f} | {r['overhead_us']:.2f} | {ratio_s} |")
    return "\n".join(lines)


def machine() -> str:
    return (
        f"Python {platform.python_version()} on {platform.machine()},"
        f" {platform.processor() or 'cpu'}; {time.strftime('%Y-%m-%d')}"
    )


def dump(path: str | None, data: Any) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
    else:
        json.dump(data, sys.stdout, indent=2)
