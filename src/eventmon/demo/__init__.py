"""``eventmon demo``: a sample event-ticketing app, instrumented, under replayed load.

Starts the app on 127.0.0.1 (Starlette under uvicorn by default; ``--framework
flask`` or ``django`` under a threaded WSGI server), the built-in dashboard at
``/eventmon/`` and Prometheus metrics at ``/metrics``, and a bounded load
generator that replays the request mix and burstiness of a real access log
(see ``scripts/derive_demo_profile.py``), scaled up. Every ``--cycle`` seconds an
event's ticket sale opens: traffic jumps, checkout turns slow and starts failing,
alerts fire and the (simulated) fleet scales out; then it calms down again.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import socket
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon._validate import MAX_SECONDS, arg_integer, arg_number

__all__ = ["register", "run"]

_SECONDS_OR_0 = arg_number(minimum=0, maximum=MAX_SECONDS, unit="seconds")

logger = logging.getLogger("eventmon.demo")


def register(subparsers: Any) -> None:
    """Add ``eventmon demo`` to the CLI."""
    p = subparsers.add_parser(
        "demo",
        help="run an instrumented sample app under simulated event traffic",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument(
        "--port",
        type=arg_integer(minimum=0, maximum=65535),
        default=8000,
        help="port on 127.0.0.1 (0: any free port)",
    )
    p.add_argument(
        "--framework",
        choices=("starlette", "flask", "django"),
        default="starlette",
        help="which sample app to run (default: starlette)",
    )
    p.add_argument(
        "--duration",
        type=_SECONDS_OR_0,
        default=0,
        help="stop after this many seconds (0: at Ctrl-C)",
    )
    p.add_argument("--no-load", action="store_true", help="do not generate traffic")
    p.add_argument(
        "--rate", type=arg_number(above=0), default=25.0, help="mean requests/s when quiet"
    )
    p.add_argument(
        "--spike", type=arg_number(minimum=1), default=4.0, help="traffic multiplier at doors-open"
    )
    p.add_argument(
        "--cycle",
        type=arg_number(above=0, maximum=MAX_SECONDS, unit="seconds"),
        default=90.0,
        help="seconds from one ticket-sale opening to the next",
    )
    p.add_argument(
        "--opening-at",
        type=_SECONDS_OR_0,
        default=20.0,
        help="seconds into each cycle the sale opens",
    )
    p.add_argument(
        "--opening-for", type=_SECONDS_OR_0, default=30.0, help="seconds the sale stays open"
    )
    p.add_argument("--token", default=None, help="protect the dashboard with this token")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C or ``--duration``; returns the exit code."""
    from eventmon.demo._frameworks import requirements
    from eventmon.demo._server import DemoServer

    if not 0 <= args.port <= 65535:
        raise ConfigurationError(f"--port must be 0..65535, got {args.port}")
    if args.opening_at + args.opening_for > args.cycle:
        raise ConfigurationError("--opening-at + --opening-for must fit inside --cycle")
    for module in requirements(args.framework):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(
                f"the {args.framework} demo needs {module} ({exc});"
                f" pip install 'eventmon[{args.framework}]'"
            ) from None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror}); pick another --port"
        ) from None
    demo = DemoServer(sock, args)
    return demo.serve()
