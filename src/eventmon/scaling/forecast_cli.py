"""``eventmon forecast``: forecast the next hours from a ``timestamp,value`` CSV.

    eventmon forecast --history traffic.csv [--json] [--horizon 24] [--capacity N]
                      [--plot out.png]

The CSV holds request counts per sample (any fixed resolution up to an hour);
they are summed per hour, incomplete first and last hours dropped. An optional
``instances`` column lets the capacity per instance be learned; otherwise
``--capacity`` (requests per hour one instance serves) is used, and without it
the capacity is assumed to be the busiest hour of the history divided by
``--max-instances`` (said on stderr).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib
import itertools
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventmon._exceptions import ConfigurationError, EventmonError
from eventmon._validate import arg_integer, arg_number
from eventmon.scaling.forecaster import (
    HOUR,
    MAX_HEADROOM,
    MAX_HORIZON_HOURS,
    TrafficPrediction,
    predict_traffic_pattern,
)

__all__ = ["HourlyHistory", "read_history", "register", "run"]


class HourlyHistory:
    """Hourly sums read from a CSV: ``counts`` and ``instances`` as ``(hour, value)``."""

    def __init__(
        self, counts: list[tuple[float, float]], instances: list[tuple[float, float]]
    ) -> None:
        self.counts = counts
        self.instances = instances


# Timestamps from 1970 to 9000: later ones cannot be shown as dates, the
# forecast's hours included (datetime stops at 9999).
_LAST_TIME = dt.datetime(9000, 1, 1, tzinfo=dt.timezone.utc).timestamp()


def _parse_time(text: str) -> float:
    text = text.strip()
    try:
        ts = float(text)
    except ValueError:
        d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.timezone.utc)
        ts = d.timestamp()
    if not 0 <= ts < _LAST_TIME:  # also NaN
        raise ValueError(f"timestamp {text!r} is not a time between 1970 and 9000")
    return ts


def _count(text: str | None, what: str) -> float:
    if text is None or not text.strip():
        raise ValueError(f"the {what} is missing")
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be a finite number >= 0, got {text!r}")
    return value


def read_history(path: str | Path) -> HourlyHistory:
    """Read a ``timestamp,value[,instances]`` CSV and sum it per complete hour."""
    try:
        return _read_history(path)
    except UnicodeDecodeError as e:
        raise EventmonError(
            f"{path}: not a UTF-8 text CSV (byte 0x{e.object[e.start]:02x} at offset"
            f" {e.start}); expected 'timestamp,value' lines"
        ) from None
    except csv.Error as e:  # e.g. a NUL byte: a binary file
        raise EventmonError(f"{path}: not a 'timestamp,value' CSV: {e}") from None


def _read_history(path: str | Path) -> HourlyHistory:
    samples: list[tuple[float, float, float | None]] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "timestamp" not in fields or "value" not in fields:
            raise EventmonError(f"{path}: expected a CSV with a 'timestamp,value' header")
        for line, row in enumerate(reader, start=2):
            try:
                inst = row.get("instances")
                samples.append(
                    (
                        _parse_time(row["timestamp"] or ""),
                        _count(row["value"], "value"),
                        _count(inst, "instances") if inst not in (None, "") else None,
                    )
                )
            except (TypeError, ValueError) as e:
                raise EventmonError(f"{path}:{line}: {_shorten(e)}") from None
    if not samples:
        return HourlyHistory([], [])
    samples.sort(key=lambda s: s[0])
    diffs = [b[0] - a[0] for a, b in itertools.pairwise(samples) if b[0] > a[0]]
    step = statistics.median(diffs) if diffs else HOUR
    if step > HOUR:
        raise EventmonError(f"{path}: samples are {step:.0f} s apart; need an hour or finer")
    sums: dict[float, float] = {}
    fleet: dict[float, list[float]] = {}
    for ts, value, inst in samples:
        hour = math.floor(ts / HOUR) * HOUR
        sums[hour] = sums.get(hour, 0.0) + value
        if inst is not None:
            fleet.setdefault(hour, []).append(inst)
    hours = sorted(sums)
    first_ts, last_ts = samples[0][0], samples[-1][0]
    # A sample at t covers [t, t + step): drop the hours the file only partly covers.
    if first_ts - hours[0] >= step:
        hours = hours[1:]
    if hours and last_ts + step < hours[-1] + HOUR:
        hours = hours[:-1]
    return HourlyHistory(
        [(h, sums[h]) for h in hours],
        [(h, statistics.fmean(fleet[h])) for h in hours if h in fleet],
    )


def _shorten(e: Exception) -> str:
    # float("5\x00") says: could not convert string to float: '5\x00'
    text = str(e)
    return text if len(text) <= 200 else text[:200] + "..."


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "forecast",
        help="forecast hourly traffic and instances from a timestamp,value CSV",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    p.add_argument("--history", required=True, metavar="FILE.csv", help="timestamp,value CSV")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument(
        "--horizon",
        type=arg_integer(minimum=1, maximum=MAX_HORIZON_HOURS),
        default=24,
        metavar="H",
        help=f"hours ahead (24, at most {MAX_HORIZON_HOURS})",
    )
    p.add_argument(
        "--capacity",
        type=arg_number(above=0),
        metavar="N",
        help="requests per hour one instance serves",
    )
    p.add_argument(
        "--headroom",
        type=arg_number(minimum=0, maximum=MAX_HEADROOM),
        default=0.2,
        help="spare capacity share (0.2)",
    )
    p.add_argument("--min-instances", type=arg_integer(minimum=1), default=1)
    p.add_argument("--max-instances", type=arg_integer(minimum=1), default=20)
    p.add_argument("--plot", metavar="OUT.png", help="draw history and forecast (matplotlib)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_instances < args.min_instances:
        raise ConfigurationError(
            f"--max-instances ({args.max_instances}) must be at least --min-instances"
            f" ({args.min_instances})"
        )
    history = read_history(args.history)
    capacity: float | None = args.capacity
    note = ""
    if capacity is None and not history.instances and history.counts:
        peak = max(c for _, c in history.counts)
        capacity = max(peak, 1.0) / args.max_instances
        note = (
            f"capacity assumed {capacity:,.0f} requests/hour per instance "
            f"(busiest hour / {args.max_instances} instances); pass --capacity to set it"
        )
    now = history.counts[-1][0] + HOUR if history.counts else 0.0
    prediction = predict_traffic_pattern(
        history.counts,
        now=now,
        horizon=args.horizon,
        capacity_per_instance=capacity,
        instances=history.instances,
        headroom=args.headroom,
        min_instances=args.min_instances,
        max_instances=args.max_instances,
    )
    if prediction.reactive_only:
        print(f"eventmon: {prediction.reason}", file=sys.stderr)
        if args.json:
            print("[]")
        return 1
    if note and not prediction.capacity_learned:
        print(f"eventmon: {note}", file=sys.stderr)
    if args.plot:
        _plot(args.plot, history.counts, prediction)
    if args.json:
        json.dump([h.to_dict() for h in prediction.hourly], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    how = "learned" if prediction.capacity_learned else "per instance"
    print(
        f"# {prediction.history_hours} hours of history; capacity "
        f"{prediction.capacity_per_instance:,.0f} requests/hour ({how}), "
        f"headroom {args.headroom:.0%}"
    )
    print(f"# {'hour (UTC)':<25} {'predicted':>12} {'instances':>9}")
    for h in prediction.hourly:
        stamp = dt.datetime.fromtimestamp(h.timestamp, dt.timezone.utc).isoformat()
        print(f"{stamp:<27} {h.predicted:>12,.0f} {h.recommended_instances!s:>9}")
    return 0


def _plot(out: str, counts: Sequence[tuple[float, float]], prediction: TrafficPrediction) -> None:
    try:
        matplotlib: Any = importlib.import_module("matplotlib")  # the optional extra "plot"
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError as e:
        raise EventmonError("--plot needs matplotlib: pip install 'eventmon[plot]'") from e

    def when(ts: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts, dt.timezone.utc)

    recent = counts[-24 * 14 :]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot([when(t) for t, _ in recent], [c for _, c in recent], label="history", color="0.4")
    ax.plot(
        [when(h.timestamp) for h in prediction.hourly],
        [h.predicted for h in prediction.hourly],
        label="forecast",
        color="tab:blue",
    )
    ax.set_ylabel("requests per hour")
    ax.legend(loc="upper left")
    if prediction.capacity_per_instance is not None:
        ax2 = ax.twinx()
        ax2.step(
            [when(h.timestamp) for h in prediction.hourly],
            [h.recommended_instances for h in prediction.hourly],
            where="post",
            color="tab:orange",
            label="recommended instances",
        )
        ax2.set_ylabel("instances")
        ax2.set_ylim(bottom=0)
        ax2.legend(loc="upper right")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
