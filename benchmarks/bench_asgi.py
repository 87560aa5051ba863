"""Per-request overhead of ASGI instrumentation, in process (no sockets).

Every variant wraps the same small Starlette app with one route template and
is called directly with a prepared scope; a round runs each variant in a
shuffled order. Run: ``python benchmarks/bench_asgi.py`` (or ``nox -s bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _harness import interleave, machine, report


def make_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def event(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/events/{event_id}", event)])


class PassThrough:
    """A do-nothing pure ASGI middleware: the floor for any middleware."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class HandTimer:
    """A hand-written timer plus dict counter: the floor the issue names."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: dict[tuple[str, int], int] = {}
        self.total = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        start = time.perf_counter()
        status = 0

        async def wrapped(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, wrapped)
        self.total += time.perf_counter() - start
        key = (scope["path"], status)
        self.counts[key] = self.counts.get(key, 0) + 1


def variants(include_peers: bool) -> dict[str, Any]:
    from eventmon import MetricsCollector
    from eventmon.asgi import EventmonMiddleware

    apps: dict[str, Any] = {}
    apps["bare starlette"] = make_app()
    a = make_app()
    a.add_middleware(PassThrough)
    apps["pass-through middleware"] = a
    a = make_app()
    a.add_middleware(HandTimer)
    apps["hand-written timer + dict"] = a
    a = make_app()
    a.add_middleware(EventmonMiddleware, collector=MetricsCollector(slow_hooks=()))
    apps["eventmon"] = a
    if include_peers:
        from prometheus_client import CollectorRegistry

        try:
            from starlette_exporter import PrometheusMiddleware

            a = make_app()
            a.add_middleware(PrometheusMiddleware, group_paths=True)
            apps["starlette-exporter"] = a
        except ImportError:
            pass
        try:
            from prometheus_fastapi_instrumentator import Instrumentator

            a = make_app()
            Instrumentator(registry=CollectorRegistry()).instrument(a)
            apps["prometheus-fastapi-instrumentator"] = a
        except ImportError:
            pass
        try:
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider

            a = make_app()
            a.add_middleware(
                OpenTelemetryMiddleware,
                meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
                tracer_provider=TracerProvider(),
            )
            apps["opentelemetry-asgi (metrics+traces)"] = a
        except ImportError:
            pass
    return apps


def runner(app: Any, loop: asyncio.AbstractEventLoop) -> Any:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/events/42",
        "raw_path": b"/events/42",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    body = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> Any:
        return body

    async def send(message: Any) -> None:
        return None

    async def many(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await app(dict(scope), receive, send)
        return time.perf_counter() - t0

    def run(n: int) -> float:
        return loop.run_until_complete(many(n))

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=2000)
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args(argv)
    loop = asyncio.new_event_loop()
    runs = {name: runner(app, loop) for name, app in variants(not args.no_peers).items()}
    results = interleave(
        runs, baseline="bare starlette", rounds=args.rounds, per_round=args.per_round
    )
    print(report("ASGI (Starlette), in process", results, "eventmon"))
    print(f"\n{machine()}; {args.rounds} rounds x {args.per_round} requests, medians")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
