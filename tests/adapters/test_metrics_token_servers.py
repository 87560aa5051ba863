"""A token-protected /metrics through real servers on 127.0.0.1.

Starlette under uvicorn, Flask under waitress, Django under wsgiref and under
uvicorn: the Authorization header must reach the middleware through each
server, and the 401 must go back out with its WWW-Authenticate header.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from adapters import apps
from adapters.wsgi_servers import served as wsgi_served
from eventmon import MetricsCollector
from servers import uvicorn_server

pytestmark = pytest.mark.slow

TOKEN = "metrics-Token_42"


def get(url: str, authorization: str | None = None) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url)
    if authorization is not None:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


@contextlib.contextmanager
def served(kind: str, collector: MetricsCollector) -> Iterator[str]:
    apps.ctx.collector = collector
    if kind == "starlette-uvicorn":
        with uvicorn_server(apps.starlette_app(collector=collector, metrics_token=TOKEN)) as url:
            yield url
        return
    if kind == "flask-waitress":
        with wsgi_served(
            "waitress", apps.flask_app(collector=collector, metrics_token=TOKEN)
        ) as url:
            yield url
        return
    import django
    from django.test.utils import override_settings

    django.setup()
    is_async = kind == "django-uvicorn"
    with override_settings(
        ROOT_URLCONF="adapters.djapp.urls_async" if is_async else "adapters.djapp.urls_sync",
        EVENTMON={"collector": collector, "metrics_token": TOKEN},
    ):
        if is_async:
            from django.core.handlers.asgi import ASGIHandler

            with uvicorn_server(ASGIHandler()) as url:
                yield url
        else:
            from django.core.handlers.wsgi import WSGIHandler

            with wsgi_served("wsgiref", WSGIHandler()) as url:
                yield url


@pytest.mark.parametrize(
    "kind", ["starlette-uvicorn", "flask-waitress", "django-wsgiref", "django-uvicorn"]
)
def test_metrics_token_through_a_real_server(kind: str) -> None:
    collector = MetricsCollector(slow_hooks=())
    with served(kind, collector) as base:
        assert get(base + "/events/1")[0] == 200
        status, headers, body = get(base + "/metrics")
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Bearer ")
        assert b"http_requests_total" not in body
        assert get(base + "/metrics", "Bearer not-the-token")[0] == 401
        status, headers, body = get(base + "/metrics", f"Bearer {TOKEN}")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b'http_requests_total{method="GET",endpoint="/events/' in body
    assert sum(s.count for s in collector.series()) == 1
    collector.shutdown()
