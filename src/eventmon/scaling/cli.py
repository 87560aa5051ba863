"""``eventmon autoscale``: run the autoscaler beside a gunicorn, uvicorn or Kubernetes app.

Examples::

    eventmon autoscale --backend gunicorn --pidfile /run/gunicorn.pid
    eventmon autoscale --backend uvicorn --pid 4242 --policy proportional --target 60
    eventmon autoscale --backend kubernetes --deployment web --namespace shop \\
        --prometheus http://prometheus:9090 \\
        --query '100 * avg(rate(container_cpu_usage_seconds_total{pod=~"web-.*"}[1m]))'

``--once`` evaluates a single time and prints the decision as JSON;
``--dry-run`` decides without changing anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon._validate import MAX_SECONDS, arg_integer, arg_number
from eventmon.scaling.autoscaler import AutoScalingManager
from eventmon.scaling.backends.gunicorn import GunicornBackend
from eventmon.scaling.backends.kubernetes import KubernetesBackend
from eventmon.scaling.backends.uvicorn import UvicornBackend
from eventmon.scaling.policies import ProportionalPolicy, ScalingPolicy, StepPolicy
from eventmon.scaling.sources import LocalWorkersSource, PrometheusSource

__all__ = ["register"]

_PERCENT = arg_number(minimum=0)
_SECONDS = arg_number(above=0, maximum=MAX_SECONDS, unit="seconds")
_SECONDS_OR_0 = arg_number(minimum=0, maximum=MAX_SECONDS, unit="seconds")


def register(subparsers: Any) -> None:
    """Add the ``autoscale`` subcommand."""
    p = subparsers.add_parser(
        "autoscale",
        help="scale gunicorn/uvicorn workers or a Kubernetes Deployment from CPU load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", choices=("gunicorn", "uvicorn", "kubernetes"), required=True)
    where = p.add_argument_group("what to scale")
    where.add_argument(
        "--pid", type=arg_integer(minimum=1), help="gunicorn master / uvicorn supervisor pid"
    )
    where.add_argument("--pidfile", help="file holding that pid (gunicorn --pid)")
    where.add_argument("--deployment", help="Kubernetes Deployment name")
    where.add_argument("--namespace", default="default", help="Kubernetes namespace")
    src = p.add_argument_group("where load is read (default: the local workers' CPU)")
    src.add_argument("--prometheus", metavar="URL", help="Prometheus base URL")
    src.add_argument("--query", help="PromQL giving CPU percent (with --prometheus)")
    pol = p.add_argument_group("policy")
    pol.add_argument("--policy", choices=("step", "proportional"), default="step")
    pol.add_argument("--min", type=arg_integer(minimum=1), default=2, dest="min_instances")
    pol.add_argument("--max", type=arg_integer(minimum=1), default=20, dest="max_instances")
    pol.add_argument("--up", type=_PERCENT, default=70.0, help="step: scale up above this CPU %%")
    pol.add_argument("--down", type=_PERCENT, default=30.0, help="step: scale down below this %%")
    pol.add_argument(
        "--target", type=arg_number(above=0), default=70.0, help="proportional: target CPU %%"
    )
    pol.add_argument("--tolerance", type=arg_number(minimum=0), default=0.1)
    pol.add_argument(
        "--scale-down-stabilization", type=_SECONDS_OR_0, default=300.0, metavar="SECONDS"
    )
    pol.add_argument("--interval", type=_SECONDS, default=15.0, metavar="SECONDS")
    p.add_argument("--once", action="store_true", help="evaluate once, print JSON, exit")
    p.add_argument("--dry-run", action="store_true", help="decide but do not scale")
    p.set_defaults(func=_run)


class _DryRun:
    """A backend that reads the real count and records what it would have done."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = f"{backend.name} (dry run)"
        self.would: int | None = None

    def current(self) -> int:
        return int(self.backend.current())

    def scale_to(self, n: int) -> bool:
        self.would = n
        return True


def _build(args: argparse.Namespace) -> tuple[Any, Any]:
    backend: Any
    if args.backend in ("gunicorn", "uvicorn"):
        if (args.pid is None) == (args.pidfile is None):
            raise ConfigurationError(f"--backend {args.backend} needs --pid or --pidfile")
        if args.backend == "gunicorn":
            backend = GunicornBackend(args.pid, pidfile=args.pidfile)
        else:
            backend = UvicornBackend(args.pid, pidfile=args.pidfile)
    else:
        if not args.deployment:
            raise ConfigurationError("--backend kubernetes needs --deployment")
        if not args.prometheus:
            raise ConfigurationError(
                "--backend kubernetes reads load from Prometheus: give --prometheus and --query"
            )
        backend = KubernetesBackend(args.deployment, namespace=args.namespace)
    source: Any
    if args.prometheus:
        if not args.query:
            raise ConfigurationError("--prometheus needs --query (PromQL giving CPU percent)")
        source = PrometheusSource(args.prometheus, args.query)
    else:
        source = LocalWorkersSource(lambda: backend.master_pid, exclude=backend.draining)
    return backend, source


def _run(args: argparse.Namespace) -> int:
    backend, source = _build(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    common: dict[str, Any] = {
        "min_instances": args.min_instances,
        "max_instances": args.max_instances,
        "scale_down_stabilization": args.scale_down_stabilization,
    }
    policy: ScalingPolicy
    if args.policy == "step":
        policy = StepPolicy(scale_up_above=args.up, scale_down_below=args.down, **common)
    else:
        policy = ProportionalPolicy(target=args.target, tolerance=args.tolerance, **common)
    target = _DryRun(backend) if args.dry_run else backend
    manager = AutoScalingManager(
        target,
        source,
        policy=policy,
        min_instances=args.min_instances,
        max_instances=args.max_instances,
        interval=args.interval,
    )
    if args.once:
        if isinstance(source, LocalWorkersSource):
            # CPU is a rate: take a first reading, then measure over one second.
            with contextlib.suppress(Exception):  # the first read only primes
                source.read()
            time.sleep(1.0)
        current = target.current()
        event = manager.evaluate()
        rec = manager.last_recommendation
        out = {
            "current": current,
            "desired": event.to_instances if event else current,
            "reason": event.reason if event else (rec.reason if rec else ""),
            "applied": bool(event) and not args.dry_run,
            "event": event.to_dict() if event else None,
        }
        print(json.dumps(out))
        return 0
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    manager.start()
    print(f"eventmon autoscale: {backend.name}, every {args.interval:g}s", file=sys.stderr)
    done.wait()
    manager.stop()
    return 0
