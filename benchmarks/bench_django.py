"""Per-request overhead of Django instrumentation, in process (no sockets).

Every variant is Django's own WSGI handler for the same one-route project, with
a different ``MIDDLEWARE`` list, called with a prepared environ; the response is
iterated and closed as a server would. A round runs each variant in a shuffled
order. Run: ``python benchmarks/bench_django.py`` (or ``nox -s bench``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _harness import interleave, machine, report
from bench_wsgi import wsgi_runner


def event(request: Any, event_id: int) -> Any:
    from django.http import HttpResponse

    return HttpResponse("ok")


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("events/<int:event_id>", event)]


urlpatterns: list[Any] = []


class PassThrough:
    """A do-nothing Django middleware: the floor for any middleware."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)


def configure() -> None:
    import django
    from django.conf import settings

    from eventmon import MetricsCollector

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        DATABASES={},
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        USE_TZ=True,
        LOGGING_CONFIG=None,
        EVENTMON={"collector": MetricsCollector(slow_hooks=())},
    )
    django.setup()
    urlpatterns[:] = _urlpatterns()


def handler(middleware: list[str]) -> Any:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    with override_settings(MIDDLEWARE=middleware):
        return WSGIHandler()  # the middleware chain is built here, once


def variants(include_peers: bool) -> dict[str, Any]:
    apps: dict[str, Any] = {}
    apps["bare django"] = handler([])
    apps["pass-through middleware"] = handler([f"{__name__}.PassThrough"])
    apps["eventmon"] = handler(["eventmon.django.EventmonMiddleware"])
    if include_peers:
        try:
            import django_prometheus  # noqa: F401

            apps["django-prometheus"] = handler(
                [
                    "django_prometheus.middleware.PrometheusBeforeMiddleware",
                    "django_prometheus.middleware.PrometheusAfterMiddleware",
                ]
            )
        except ImportError:
            pass
        try:
            from django.conf import settings
            from opentelemetry.instrumentation.django import DjangoInstrumentor
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider

            DjangoInstrumentor().instrument(
                tracer_provider=TracerProvider(),
                meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
            )
            apps["opentelemetry-django (metrics+traces)"] = handler(list(settings.MIDDLEWARE))
        except ImportError:
            pass
    return apps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=2000)
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args(argv)
    configure()
    runs = {name: wsgi_runner(app) for name, app in variants(not args.no_peers).items()}
    results = interleave(runs, baseline="bare django", rounds=args.rounds, per_round=args.per_round)
    print(report("Django (WSGI handler), in process", results, "eventmon"))
    print(f"\n{machine()}; {args.rounds} rounds x {args.per_round} requests, medians")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
