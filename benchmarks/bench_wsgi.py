"""Per-request overhead of Flask instrumentation, in process (no sockets).

Every variant is the same small Flask app with one route template, called as a
WSGI app with a prepared environ; the body is iterated and closed as a server
would. A round runs each variant in a shuffled order.
Run: ``python benchmarks/bench_wsgi.py`` (or ``nox -s bench``).

``--diagnose`` adds rows that split eventmon's cost: its middleware over a collector
whose ``begin()``/``end()`` do nothing but read the clock (the wrapper alone), over a
collector that never folds its journal (the fold's share), and the smallest possible
wrapper on a real collector (no exclusions, no 499/500 bookkeeping, no file
wrappers: the floor any adapter on this collector can reach).
"""

from __future__ import annotations

import argparse
import gc
import io
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _harness import interleave, machine, report


def make_app() -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.get("/events/<int:event_id>")
    def event(event_id: int) -> str:
        return "ok"

    return app


class PassThrough:
    """A do-nothing WSGI middleware: the floor for any middleware."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


class HandTimer:
    """A hand-written timer until close() plus a dict counter: the floor for this job."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: dict[tuple[str, str], int] = {}
        self.total = 0.0

    def __call__(self, environ: Any, start_response: Any) -> Any:
        start = time.perf_counter()
        status = ""

        def wrapped(s: str, headers: Any, exc_info: Any = None) -> Any:
            nonlocal status
            status = s
            return start_response(s, headers, exc_info)

        body = self.app(environ, wrapped)

        def close() -> None:
            inner = getattr(body, "close", None)
            if inner is not None:
                inner()
            self.total += time.perf_counter() - start
            key = (environ["PATH_INFO"], status)
            self.counts[key] = self.counts.get(key, 0) + 1

        return _Closing(body, close)


class _Closing:
    __slots__ = ("body", "close")

    def __init__(self, body: Any, close: Any) -> None:
        self.body = body
        self.close = close

    def __iter__(self) -> Any:
        return iter(self.body)


class CollectorFloor:
    """The least an adapter on eventmon's collector can do: begin(), end(), one object.

    Not correct (no exclusions, errors, 499s or file wrappers): a diagnostic floor.
    """

    def __init__(self, app: Any, collector: Any) -> None:
        self.app = app
        self.collector = collector

    def __call__(self, environ: Any, start_response: Any) -> Any:
        collector = self.collector
        r = _new(_FloorResponse)
        r.token = collector.begin()
        r.collector = collector
        r.environ = environ
        r.sr = start_response
        r.start = collector.clock()
        r.body = self.app(environ, r.start_response)
        return r


_new = object.__new__
_CODES: dict[str, int] = {}


class _FloorResponse:
    __slots__ = ("body", "code", "collector", "environ", "sr", "start", "token")

    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        self.code = _CODES.get(status) or int(status[:3])
        return self.sr(status, headers, exc_info)

    def __iter__(self) -> Any:
        return iter(self.body)

    def close(self) -> None:
        self.body.close()
        self.collector.end(
            self.token, "GET", self.environ["eventmon.endpoint"], self.code, self.start
        )


def diagnostic_collectors() -> dict[str, Any]:
    from eventmon import MetricsCollector

    class Stubbed(MetricsCollector):
        def begin(self) -> Any:
            return None

        def end(self, token: Any, method: str, endpoint: str, status: int, start: float) -> None:
            self.clock()

    class NoFold(MetricsCollector):
        def _fold(self, batch: Any) -> None:
            pass

    return {"stubbed": Stubbed, "nofold": NoFold}


def factories(include_peers: bool, diagnose: bool = False) -> dict[str, Callable[[], Any]]:
    """Name -> a function building that variant's app (built only when asked for)."""
    from eventmon import MetricsCollector
    from eventmon.flask import Eventmon

    def wrapped(middleware: Callable[[Any], Any]) -> Callable[[], Any]:
        def build() -> Any:
            a = make_app()
            a.wsgi_app = middleware(a.wsgi_app)
            return a

        return build

    def instrumented(collector_class: Any = MetricsCollector, **options: Any) -> Callable[[], Any]:
        def build() -> Any:
            a = make_app()
            Eventmon(a, collector=collector_class(slow_hooks=()), **options)
            return a

        return build

    def floor() -> Any:
        a = instrumented()()  # the extension's route noting stays
        a.wsgi_app = CollectorFloor(a.wsgi_app.app, MetricsCollector(slow_hooks=()))
        return a

    out: dict[str, Callable[[], Any]] = {
        "bare flask": make_app,
        "pass-through middleware": wrapped(PassThrough),
        "hand-written timer + dict": wrapped(HandTimer),
        "eventmon": instrumented(),
    }
    if diagnose:
        kinds = diagnostic_collectors()
        out["diag: eventmon, collector stubbed"] = instrumented(kinds["stubbed"])
        out["diag: eventmon, journal never folded"] = instrumented(kinds["nofold"])
        out["diag: floor wrapper on the collector"] = floor
        # Opt-in options that cost per request (docs/metrics.md quotes these).
        out["opt: eventmon, size_metrics=True"] = instrumented(size_metrics=True)
        out["opt: eventmon, exclude_patterns and methods"] = instrumented(
            exclude_patterns=[r"^/internal/"], exclude_methods=["OPTIONS"]
        )
        out["opt: eventmon, header_labels (one header)"] = instrumented(
            header_labels={"tenant": "X-Tenant-ID"}
        )
        out["opt: eventmon, label_callbacks (one callback)"] = instrumented(
            label_callbacks={"tenant": _tenant_of}
        )
    if include_peers:
        try:
            import prometheus_flask_exporter  # noqa: F401
        except ImportError:
            pass
        else:
            out["prometheus-flask-exporter"] = _prometheus_flask_exporter
        try:
            import opentelemetry.instrumentation.flask  # noqa: F401
        except ImportError:
            pass
        else:
            out["opentelemetry-flask (metrics+traces)"] = _opentelemetry_flask
    return out


def _tenant_of(environ: dict[str, Any]) -> str:
    return str(environ.get("HTTP_X_TENANT_ID", ""))


def _prometheus_flask_exporter() -> Any:
    from prometheus_client import CollectorRegistry
    from prometheus_flask_exporter import PrometheusMetrics

    a = make_app()
    PrometheusMetrics(a, registry=CollectorRegistry(), group_by="url_rule")
    return a


def _opentelemetry_flask() -> Any:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    a = make_app()
    FlaskInstrumentor().instrument_app(
        a,
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
    )
    return a


def variants(include_peers: bool, diagnose: bool = False) -> dict[str, Any]:
    return {name: build() for name, build in factories(include_peers, diagnose).items()}


def wsgi_environ(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def wsgi_runner(app: Any, path: str = "/events/42") -> Any:
    """``run(n)``: call ``app`` n times like a WSGI server; seconds taken."""
    environ = wsgi_environ(path)

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            env = dict(environ)
            env["wsgi.input"] = io.BytesIO()
            body = app(env, start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return time.perf_counter() - t0

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=2000)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--diagnose", action="store_true", help="add rows that split the cost")
    ap.add_argument("--only", metavar="VARIANT", help="run this variant alone, print nothing")
    ap.add_argument("--requests", type=int, default=1024, help="with --only: how many")
    args = ap.parse_args(argv)
    if args.only is not None:
        # For instruction counting (instructions_wsgi.py): one app, a warm-up that
        # ends on a journal fold, then the requests, the cycle collector off.
        run = wsgi_runner(factories(True, True)[args.only]())
        gc.disable()
        run(1024)
        run(args.requests)
        return 0
    apps = variants(not args.no_peers, args.diagnose)
    runs = {name: wsgi_runner(app) for name, app in apps.items()}
    results = interleave(runs, baseline="bare flask", rounds=args.rounds, per_round=args.per_round)
    print(report("WSGI (Flask), in process", results, "eventmon"))
    print(f"\n{machine()}; {args.rounds} rounds x {args.per_round} requests, medians")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
