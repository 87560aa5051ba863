"""eventmon.django beyond the shared suite: settings, the metrics view, ASGI mode."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import django
import pytest
from asgiref.sync import iscoroutinefunction  # what Django itself asks
from django.test import Client
from django.test.utils import override_settings

from eventmon import ConfigurationError, MetricsCollector
from eventmon.core.registry import UNMATCHED

django.setup()

from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402

from eventmon.django import EventmonMiddleware  # noqa: E402


def counts(c: MetricsCollector) -> dict[tuple[str, str, str], int]:
    return {(s.method, s.endpoint, s.status_code): s.count for s in c.series()}


def test_metrics_view_in_urls(collector: MetricsCollector) -> None:
    with override_settings(
        ROOT_URLCONF="adapters.djapp.urls_metrics_view",
        EVENTMON={"collector": collector, "metrics_path": None},
    ):
        client = Client()
        assert client.get("/events/1").status_code == 200
        r = client.get("/internal/metrics")
        assert r.status_code == 200
        assert r["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b'endpoint="/events/<int:event_id>"' in r.content
        # The scrape is a request of the app like any other when served by a view.
        assert counts(collector)[("GET", "/internal/metrics", "200")] == 1
        assert client.get("/metrics").status_code == 404


def test_collector_by_dotted_path() -> None:
    from adapters.djapp import shared_collector

    with override_settings(EVENTMON={"collector": "adapters.djapp.shared_collector.COLLECTOR"}):
        assert Client().get("/events/4").status_code == 200
    assert counts(shared_collector.COLLECTOR)[("GET", "/events/<int:event_id>", "200")] >= 1


@pytest.mark.parametrize(
    ("eventmon", "message"),
    [
        ({"metrics": "/m"}, "unknown keys \\['metrics'\\]"),
        ("yes", "settings.EVENTMON must be a dict"),
        ({"collector": 3}, "must be an eventmon.MetricsCollector"),
        ({"collector": "oops"}, "settings.EVENTMON\\['collector'\\]"),
        ({"collector": "adapters.djapp.settings"}, "must be an eventmon.MetricsCollector"),
        ({"collector": "no.such.module.C"}, "settings.EVENTMON\\['collector'\\]"),
        ({"exclude_paths": "/health"}, "in settings.EVENTMON"),
        ({"unit": "min"}, "unit must be 's' or 'ms'"),
    ],
)
def test_settings_mistakes_fail_when_the_middleware_loads(eventmon: Any, message: str) -> None:
    with override_settings(EVENTMON=eventmon), pytest.raises(ConfigurationError, match=message):
        EventmonMiddleware(lambda request: None)


def test_no_database_access(collector: MetricsCollector) -> None:
    opened: list[Any] = []

    def note(**kwargs: Any) -> None:
        opened.append(kwargs)

    connection_created.connect(note)
    try:
        with override_settings(EVENTMON={"collector": collector}):
            WSGIHandler()
            ASGIHandler()
            assert Client().get("/events/1").status_code == 200
    finally:
        connection_created.disconnect(note)
    assert opened == []


def test_async_capable_without_a_thread_hop(
    collector: MetricsCollector, caplog: pytest.LogCaptureFixture
) -> None:
    async def get_response(request: Any) -> Any:
        return None

    def sync_get_response(request: Any) -> Any:
        return None

    assert iscoroutinefunction(EventmonMiddleware(get_response))
    assert not iscoroutinefunction(EventmonMiddleware(sync_get_response))
    caplog.set_level(logging.DEBUG, logger="django.request")
    with override_settings(EVENTMON={"collector": collector}, DEBUG=True):
        ASGIHandler()
    adapted = [r.getMessage() for r in caplog.records if "adapted" in r.getMessage()]
    assert adapted == []  # Django wraps a sync-only middleware in sync_to_async and says so


def test_streaming_closed_early_is_499(collector: MetricsCollector) -> None:
    with override_settings(EVENTMON={"collector": collector}):
        from adapters import apps

        apps.ctx.clock = _NoClock()
        handler = WSGIHandler()
        env = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/stream",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
        }
        body = handler(env, lambda *a: None)
        it = iter(body)
        assert next(it) == b"a"
        assert collector.in_progress() == 1
        body.close()
    assert counts(collector) == {("GET", "/stream", "499"): 1}
    assert collector.in_progress() == 0


def test_exception_escaping_django_is_500_once(collector: MetricsCollector) -> None:
    from adapters.apps import Boom

    with override_settings(EVENTMON={"collector": collector}, DEBUG_PROPAGATE_EXCEPTIONS=True):
        with pytest.raises(Boom):
            Client().get("/boom")
        assert asyncio.run(_aget("/boom")) == "raised"
    assert counts(collector) == {("GET", "/boom", "500"): 2}


async def _aget(path: str) -> str:
    from django.test import AsyncClient

    from adapters.apps import Boom

    with override_settings(ROOT_URLCONF="adapters.djapp.urls_async"):
        try:
            await AsyncClient().get(path)
        except Boom:
            return "raised"
    return "answered"


def test_regex_routes_keep_their_pattern(collector: MetricsCollector) -> None:
    with override_settings(
        ROOT_URLCONF="adapters.djapp.urls_metrics_view", EVENTMON={"collector": collector}
    ):
        assert Client().get("/legacy/2024/").status_code == 200
        assert Client().get("/nope").status_code == 404
    assert counts(collector) == {
        ("GET", "^legacy/(?P<year>[0-9]{4})/$", "200"): 1,
        ("GET", UNMATCHED, "404"): 1,
    }


class _NoClock:
    def advance(self, seconds: float) -> None:
        pass


def test_file_response_sent_by_the_server_is_timed_until_close(clock: Any) -> None:
    from werkzeug.wsgi import FileWrapper

    c = MetricsCollector(slow_hooks=(), clock=clock)
    with override_settings(
        ROOT_URLCONF="adapters.djapp.urls_metrics_view", EVENTMON={"collector": c}
    ):
        env = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/download",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.file_wrapper": FileWrapper,
        }
        body = WSGIHandler()(env, lambda *a: None)
        assert type(body) is FileWrapper  # Django hands the file to the server's sendfile
        assert b"".join(body) == b"0123456789" * 100
        clock.advance(0.4)
        assert c.in_progress() == 1
        body.close()
    assert [(s.endpoint, s.status_code, s.count, s.sum) for s in c.series()] == [
        ("/download", "200", 1, pytest.approx(0.4))
    ]
    assert c.in_progress() == 0


def test_exemplars_follow_the_collector(collector: MetricsCollector) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    from eventmon.exporters.prometheus import render

    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    collector.enable_exemplars()
    with override_settings(EVENTMON={"collector": collector}):
        client = Client()
        header = f"00-{trace}-00f067aa0ba902b7-01"
        assert client.get("/events/1", headers={"traceparent": header}).status_code == 200
        assert client.get("/events/2").status_code == 200  # untraced: leaves none
    found = [
        (s.labels["endpoint"], s.exemplar.labels["trace_id"])
        for family in text_string_to_metric_families(render(collector, openmetrics=True).decode())
        for s in family.samples
        if s.exemplar is not None
    ]
    assert found == [("/events/<int:event_id>", trace)]
