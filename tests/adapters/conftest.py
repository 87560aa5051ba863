"""One harness per framework, so the shared suite runs the same cases against all.

Each harness builds the app of :mod:`adapters.apps` with a given collector and
options, and sends requests with the framework's own test client: httpx's
ASGITransport (Starlette, FastAPI), werkzeug's client (Flask, plain WSGI),
``django.test.Client`` / ``AsyncClient`` (Django, sync and async views).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from adapters import apps
from adapters.wsgi_servers import wsgi_server  # noqa: F401  # a fixture: real servers
from eventmon import MetricsCollector

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adapters.djapp.settings")

EXCLUDE = ["/health", "/static/*"]


@dataclass
class Result:
    status: int  # 0 when the exception reached the client
    body: bytes
    raised: BaseException | None = None


class Harness:
    name = ""
    templates: dict[str, str]

    def build(self, collector: MetricsCollector, **options: Any) -> None:
        raise NotImplementedError

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Result:
        try:
            return self._request(path, method, headers or {})
        except apps.Boom as e:
            return Result(0, b"", e)

    def _request(self, path: str, method: str, headers: dict[str, str]) -> Result:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ASGIHarness(Harness):
    def __init__(self, name: str, factory: Any, templates: dict[str, str]) -> None:
        self.name = name
        self.factory = factory
        self.templates = templates
        self.loop = asyncio.new_event_loop()

    def build(self, collector: MetricsCollector, **options: Any) -> None:
        import httpx

        self.app = self.factory(collector=collector, **options)
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def _request(self, path: str, method: str, headers: dict[str, str]) -> Result:
        r = self.loop.run_until_complete(self.client.request(method, path, headers=headers))
        return Result(r.status_code, r.content)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


class WerkzeugHarness(Harness):
    def __init__(self, name: str, factory: Any, templates: dict[str, str]) -> None:
        self.name = name
        self.factory = factory
        self.templates = templates

    def build(self, collector: MetricsCollector, **options: Any) -> None:
        from werkzeug.test import Client

        self.app = self.factory(collector=collector, **options)
        self.client = Client(self.app)

    def _request(self, path: str, method: str, headers: dict[str, str]) -> Result:
        r = self.client.open(path, method=method, headers=headers)
        try:
            return Result(r.status_code, r.get_data())
        finally:
            r.close()


class DjangoHarness(Harness):
    def __init__(self, name: str, is_async: bool) -> None:
        self.name = name
        self.is_async = is_async
        self.templates = {
            "event": "/events/<int:event_id>",
            "item": "/api/v1/items/<int:item_id>",
            "status": "/status/<int:code>",
            "boom": "/boom",
            "stream": "/stream",
            "stream-boom": "/stream-boom",
            "slow": "/slow",
            "inflight": "/inflight",
        }

    def build(self, collector: MetricsCollector, **options: Any) -> None:
        import django
        from django.test import AsyncClient, Client
        from django.test.utils import override_settings

        django.setup()
        urls = "adapters.djapp.urls_async" if self.is_async else "adapters.djapp.urls_sync"
        self.override = override_settings(
            ROOT_URLCONF=urls, EVENTMON={"collector": collector, **options}
        )
        self.override.enable()
        self.loop = asyncio.new_event_loop()
        self.client = AsyncClient() if self.is_async else Client()

    def _request(self, path: str, method: str, headers: dict[str, str]) -> Result:
        if self.is_async:
            return self.loop.run_until_complete(self._arequest(path, method, headers))
        r = self.client.generic(method, path, headers=headers)
        body = b"".join(r.streaming_content) if r.streaming else r.content
        return Result(r.status_code, body)

    async def _arequest(self, path: str, method: str, headers: dict[str, str]) -> Result:
        r = await self.client.generic(method, path, headers=headers)
        body = b"".join([c async for c in r.streaming_content]) if r.streaming else r.content
        return Result(r.status_code, body)

    def close(self) -> None:
        self.override.disable()
        self.loop.close()


_STARLETTE = {
    "event": "/events/{event_id:int}",
    "item": "/api/v1/items/{item_id:int}",
    "status": "/status/{code:int}",
}
_FASTAPI = {
    "event": "/events/{event_id}",
    "item": "/api/v1/items/{item_id}",
    "status": "/status/{code}",
}
_WERKZEUG = {
    "event": "/events/<int:event_id>",
    "item": "/api/v1/items/<int:item_id>",
    "status": "/status/<int:code>",
}
_PLAIN = {k: "/" + k for k in ("boom", "stream", "stream-boom", "slow", "inflight")}


def _harness(name: str) -> Harness:
    if name == "starlette":
        return ASGIHarness(name, apps.starlette_app, {**_PLAIN, **_STARLETTE})
    if name == "fastapi":
        return ASGIHarness(name, apps.fastapi_app, {**_PLAIN, **_FASTAPI})
    if name == "flask":
        return WerkzeugHarness(name, apps.flask_app, {**_PLAIN, **_WERKZEUG})
    if name == "wsgi":
        return WerkzeugHarness(name, apps.wsgi_app, {**_PLAIN, **_WERKZEUG})
    return DjangoHarness(name, is_async=name == "django-async")


ADAPTERS = ["starlette", "fastapi", "flask", "wsgi", "django-sync", "django-async"]


@pytest.fixture(params=ADAPTERS)
def adapter_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(adapter_name: str, clock: Any) -> Iterator[Any]:
    """``make(collector=None, **options) -> Harness``; the app's fake clock is ``clock``."""
    made: list[Harness] = []
    collectors: list[MetricsCollector] = []

    def _make(collector: MetricsCollector | None = None, **options: Any) -> Harness:
        if collector is None:
            collector = MetricsCollector(slow_hooks=(), clock=clock)
            collectors.append(collector)
        apps.ctx.clock = clock
        apps.ctx.collector = collector
        apps.ctx.threads = set()
        options.setdefault("exclude_paths", EXCLUDE)
        h = _harness(adapter_name)
        h.build(collector, **options)
        made.append(h)
        return h

    yield _make
    # Last made, first closed: Django's override_settings must be undone in reverse order.
    for h in reversed(made):
        h.close()
    for c in collectors:
        c.shutdown()
