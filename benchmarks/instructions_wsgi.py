"""Instructions per Flask request, by variant, counted by valgrind (not timed).

On a shared machine wall-clock overheads of a few microseconds move by a
microsecond from one run to the next; instruction counts do not. Each variant of
``bench_wsgi.py`` runs alone under ``valgrind --tool=cachegrind`` twice (512 and
1,536 requests after the same warm-up); the difference divided by 1,024 is the
instructions one request costs, journal fold included (exactly one fold falls in
the difference). Repeated for a few hash seeds: dict layouts and the interpreter's
type-attribute cache move a variant's count by one to three thousand from one
seed (or import order) to the next, so differences below that are not findings.
Needs valgrind (Debian package ``valgrind``); about a minute per variant and seed.

Run: ``python benchmarks/instructions_wsgi.py`` (``--diagnose`` for the split rows).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_wsgi import factories

BENCH = Path(__file__).with_name("bench_wsgi.py")
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def instructions(variant: str, requests: int, seed: int) -> int:
    """Instructions of one process running ``variant`` for ``requests`` after the warm-up."""
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    cmd = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        str(BENCH),
        "--only",
        variant,
        "--requests",
        str(requests),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    match = _REFS.search(done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def per_request(variant: str, seed: int) -> float:
    return (instructions(variant, 1536, seed) - instructions(variant, 512, seed)) / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=3, help="hash seeds 0..N-1")
    ap.add_argument("--diagnose", action="store_true", help="add bench_wsgi's split rows")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    names = list(factories(not args.no_peers, args.diagnose))
    seeds = range(args.seeds)
    counts = {name: [per_request(name, s) for s in seeds] for name in names}
    base = counts["bare flask"]
    ref = statistics.mean(c - b for c, b in zip(counts["eventmon"], base, strict=True))
    print("### WSGI (Flask), instructions per request (valgrind)\n")
    print("| variant | instructions/request | overhead | overhead vs eventmon |")
    print("|---|---:|---:|---:|")
    for name in sorted(names, key=lambda n: statistics.mean(counts[n])):
        over = statistics.mean(c - b for c, b in zip(counts[name], base, strict=True))
        ratio = f"{over / ref:.2f}x" if name != "bare flask" else "—"
        print(f"| {name} | {statistics.mean(counts[name]):,.0f} | {over:,.0f} | {ratio} |")
    print(f"\nmeans over hash seeds 0..{args.seeds - 1}; Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
