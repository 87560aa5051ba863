"""``eventmon top URL``: a terminal live view of a running app's realtime snapshot.

Reads the dashboard's JSON API (``/eventmon/api/snapshot`` and
``/eventmon/api/endpoints``) of an app started with the dashboard enabled, and
redraws a plain-text summary every ``--interval`` seconds (no curses).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

from eventmon._exceptions import ConfigurationError, EventmonError
from eventmon._validate import MAX_SECONDS, arg_integer, arg_number

__all__ = ["api_base", "fetch", "register", "render", "run"]


def register(subparsers: Any) -> None:
    """Add ``eventmon top`` to the CLI."""
    p = subparsers.add_parser(
        "top",
        help="live terminal view of a running app (reads its dashboard API)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument(
        "url",
        help="the app (http://127.0.0.1:8000) or its dashboard (http://127.0.0.1:8000/eventmon/)",
    )
    p.add_argument("--token", default=None, help="dashboard token (also read from the URL)")
    p.add_argument(
        "--interval",
        type=arg_number(above=0, maximum=MAX_SECONDS, unit="seconds"),
        default=2.0,
        help="seconds between refreshes",
    )
    p.add_argument("--once", action="store_true", help="print one view and exit")
    p.add_argument(
        "--endpoints",
        type=arg_integer(minimum=1, maximum=500),
        default=10,
        help="endpoints to list (busiest first)",
    )
    p.add_argument(
        "--sort",
        default="count",
        choices=("count", "p95_ms", "error_rate", "mean_ms", "errors"),
        help="order of the endpoint list",
    )
    p.set_defaults(func=run)


def api_base(url: str) -> tuple[str, str | None]:
    """The dashboard's base URL (ending in ``/``) and a token found in ``url``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"URL must look like http://host:port[/eventmon/], got {url!r}")
    token = urllib.parse.parse_qs(parts.query).get("token", [None])[0]
    path = parts.path or "/"
    if "/api/" in path:
        path = path[: path.index("/api/") + 1]
    elif path in ("", "/"):
        path = "/eventmon/"
    elif not path.endswith("/"):
        path += "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", "")), token


def fetch(base: str, resource: str, token: str | None, timeout: float = 5.0) -> Any:
    """GET one API resource as JSON; a clear error for 401 and connection failures."""
    req = urllib.request.Request(base + resource)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise EventmonError(f"{base}: the dashboard needs a token (--token)") from None
        if exc.code == 404:
            raise EventmonError(
                f"{base}{resource}: not found; is the dashboard enabled (dashboard=True)?"
            ) from None
        raise EventmonError(f"{base}{resource}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EventmonError(f"cannot reach {base}: {reason}") from None


def _n(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def render(snapshot: dict[str, Any], endpoints: dict[str, Any], alerts: dict[str, Any]) -> str:
    """The text view of one snapshot, endpoint page and alert list."""
    s = snapshot
    lines = [
        f"eventmon top · {time.strftime('%H:%M:%S', time.localtime(s.get('timestamp', 0)))}"
        f" · uptime {int(s.get('uptimeSeconds', 0))}s · {s.get('totalRequests', 0):,} requests",
        "",
        f"  requests/s {_n(s.get('requestsPerSecond')):>10}"
        f"    active   {s.get('activeConnections', 0):>6}"
        f"    error rate {100 * s.get('errorRate', 0):6.2f} %",
        f"  avg ms     {_n(s.get('averageResponseTime')):>10}"
        f"    p50 ms {_n(s.get('p50ResponseTime')):>8}"
        f"    p95 ms {_n(s.get('p95ResponseTime')):>9}"
        f"    p99 ms {_n(s.get('p99ResponseTime')):>9}",
        f"  CPU %      {_n(s.get('cpuUsage')):>10}    memory % {_n(s.get('memoryUsage')):>6}",
        "",
    ]
    firing = []
    if alerts.get("available") and isinstance(alerts.get("data"), list):
        firing = [
            a
            for a in alerts["data"]
            if isinstance(a, dict) and str(a.get("state", "")).lower() in ("firing", "pending")
        ]
    for a in firing[:5]:
        lines.append(f"  ALERT {str(a.get('state')).upper():8} {a.get('name', '?')}")
    if firing:
        lines.append("")
    lines.append(
        f"  {'endpoint':<44} {'count':>9} {'5xx %':>7} {'mean ms':>9} {'p95 ms':>9} {'p99 ms':>9}"
    )
    for r in endpoints.get("endpoints", []):
        name = r["endpoint"] if len(r["endpoint"]) <= 44 else r["endpoint"][:43] + "…"
        lines.append(
            f"  {name:<44} {r['count']:>9,} {100 * r['error_rate']:>7.2f}"
            f" {_n(r.get('mean_ms')):>9} {_n(r.get('p95_ms')):>9} {_n(r.get('p99_ms')):>9}"
        )
    lines.append(f"  ({endpoints.get('total', 0)} endpoints)")
    return "\n".join(lines)


def view(base: str, token: str | None, count: int, sort: str) -> str:
    snapshot = fetch(base, "api/snapshot", token)
    endpoints = fetch(base, f"api/endpoints?per_page={count}&sort={sort}&order=desc", token)
    alerts = fetch(base, "api/alerts", token)
    return render(snapshot, endpoints, alerts)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the view once (``--once``) or until Ctrl-C."""
    out = out or sys.stdout
    if not 0 < args.interval <= MAX_SECONDS:  # also NaN
        raise ConfigurationError(f"--interval must be > 0 seconds, got {args.interval!r}")
    if not 1 <= args.endpoints <= 500:
        raise ConfigurationError("--endpoints must be between 1 and 500")
    base, token = api_base(args.url)
    token = args.token or token
    if args.once:
        out.write(view(base, token, args.endpoints, args.sort) + "\n")
        return 0
    clear = "\x1b[H\x1b[2J" if out.isatty() else ""
    while True:
        text = view(base, token, args.endpoints, args.sort)
        out.write(clear + text + "\n\n")
        out.flush()
        time.sleep(args.interval)
