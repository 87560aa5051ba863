"""Derive the load profile that ``eventmon demo`` replays from a real access log.

Reads an Apache combined-format log (default: ../shared/data/apache_access.log,
10,000 real requests of 2015-05-17..20) and writes
src/eventmon/demo_data/traffic_profile.json with:

- ``mix``: the share of requests per path class (asset, page, index, feed,
  search, other) and, per class, the share of 3xx/4xx/5xx answers;
- ``hourly``: the share of requests per hour of day (24 values, mean 1.0),
  the day's shape the demo compresses into ``day_seconds``;
- ``gaps``: quantiles (0, 2.5, ..., 100 %) of the gap between consecutive
  requests divided by the mean gap — the burstiness (a page view pulls its
  images and scripts within a second, then nothing for a while).

Run: python scripts/derive_demo_profile.py [LOG] [OUT]
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT.parent / "shared" / "data" / "apache_access.log"
OUT = ROOT / "src" / "eventmon" / "demo_data" / "traffic_profile.json"

LINE = re.compile(r'^\S+ \S+ \S+ \[([^\]]+)\] "(\S+) (\S+)[^"]*" (\d{3}) ')
ASSET = (".png", ".jpg", ".jpeg", ".gif", ".css", ".js", ".ico", ".svg", ".woff", ".ttf")


def classify(path: str) -> str:
    """The demo route class a logged path stands for."""
    bare = path.split("?", 1)[0].lower()
    if "?" in path:
        return "search"
    if bare.endswith(ASSET):
        return "asset"
    if bare.endswith((".xml", ".rss")) or "/feed" in bare:
        return "feed"
    if bare == "/" or bare.endswith("/"):
        return "index"
    if bare.endswith((".html", ".htm")) or bare.startswith(("/blog/", "/projects/", "/articles/")):
        return "page"
    return "other"


def derive(log: Path) -> dict[str, object]:
    times: list[float] = []
    classes: Counter[str] = Counter()
    statuses: dict[str, Counter[str]] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if not m:
            continue
        stamp, _method, path, status = m.groups()
        times.append(datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp())
        cls = classify(path)
        classes[cls] += 1
        statuses.setdefault(cls, Counter())[status[0] + "xx"] += 1
    n = len(times)
    times.sort()
    hours = Counter(datetime.fromtimestamp(t, timezone.utc).hour for t in times)
    mean_per_hour = n / 24
    hourly = [round(hours.get(h, 0) / mean_per_hour, 4) for h in range(24)]
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    mean_gap = sum(gaps) / len(gaps)
    qs = [i / 40 for i in range(41)]
    gap_q = [round(gaps[min(len(gaps) - 1, int(q * (len(gaps) - 1)))] / mean_gap, 4) for q in qs]
    return {
        "source": "apache_access.log (elastic/examples, Apache-2.0), 2015-05-17..20",
        "requests": n,
        "span_seconds": round(times[-1] - times[0]),
        "mix": {
            cls: {
                "share": round(count / n, 4),
                "status": {k: round(v / count, 4) for k, v in sorted(statuses[cls].items())},
            }
            for cls, count in classes.most_common()
        },
        "hourly": hourly,
        "gap_quantiles": gap_q,
    }


def main() -> None:
    log = Path(sys.argv[1]) if len(sys.argv) > 1 else LOG
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else OUT
    profile = derive(log)
    out.write_text(json.dumps(profile, indent=1) + "\n")
    print(f"wrote {out} from {profile['requests']} requests")


if __name__ == "__main__":
    main()
