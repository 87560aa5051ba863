"""Instructions per ``observe()`` call and per folded observation, counted by valgrind.

The companion of ``instructions_wsgi.py`` for the core alone: a process makes
``n`` ``observe()`` calls into a journal large enough to hold them all, then (with
``--fold``) folds them with ``flush()``. Two runs of 2,000 and 6,000 calls under
``valgrind --tool=cachegrind``; the difference divided by 4,000 is the cost of
one call (and, from the difference between the two modes, of folding one
observation), start-up and warm-up cancelled out. Robust to a busy machine,
unlike ``bench_core.py``'s timings. Needs valgrind.

Run: ``python benchmarks/instructions_core.py``; set ``EVENTMON_PURE_PYTHON=1``
for the Python code.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
_CHILD = """
import sys
from eventmon import MetricsCollector
n, fold = int(sys.argv[1]), sys.argv[2] == "1"
endpoints = [f"/events/{i}" for i in range(20)]
durations = [0.0005 * (1 + i % 997) for i in range(1000)]
c = MetricsCollector(slow_hooks=(), journal_limit=1_000_000)
observe = c.observe
for i in range(500):  # warm-up: every series exists before counting starts
    observe("GET", endpoints[i % 20], 200, durations[i % 1000])
c.flush()
for i in range(n):
    observe("GET", endpoints[i % 20], 200, durations[i % 1000])
if fold:
    c.flush()
"""


def instructions(n: int, fold: bool, seed: int) -> int:
    """Instructions of one process making ``n`` calls (and folding them if ``fold``)."""
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    cmd = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-c",
        _CHILD,
        str(n),
        "1" if fold else "0",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    match = _REFS.search(done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def per_call(fold: bool, seed: int) -> float:
    return (instructions(6000, fold, seed) - instructions(2000, fold, seed)) / 4000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=2, help="hash seeds 0..N-1")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    seeds = range(args.seeds)
    calls = statistics.mean(per_call(False, s) for s in seeds)
    both = statistics.mean(per_call(True, s) for s in seeds)
    from eventmon.core._native import describe

    print(f"### observe() and fold, instructions per observation ({describe()})\n")
    print("| what | instructions |")
    print("|---|---:|")
    print(f"| observe() call | {calls:,.0f} |")
    print(f"| fold, per observation | {both - calls:,.0f} |")
    print(f"| both | {both:,.0f} |")
    print(f"\nmeans over hash seeds 0..{args.seeds - 1}; Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
