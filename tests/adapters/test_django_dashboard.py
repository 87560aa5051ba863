"""The dashboard served by eventmon.django.EventmonMiddleware, sync and async."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.test import AsyncClient, Client
from django.test.utils import override_settings

from eventmon import ConfigurationError, MetricsCollector
from eventmon.dashboard import Dashboard

django.setup()

from eventmon.django import EventmonMiddleware  # noqa: E402

TOKEN = "dj-s3cret"

# A Dashboard named by dotted path in one test (set there).
CUSTOM: Dashboard | None = None


class Requester:
    """The same requests through Django's sync or async test client."""

    def __init__(self, is_async: bool) -> None:
        self.is_async = is_async

    def get(self, path: str, method: str = "GET", **headers: str) -> Any:
        if self.is_async:
            return asyncio.run(AsyncClient().generic(method, path, headers=headers))
        return Client().generic(method, path, headers=headers)

    def stream(self, path: str, events: int, **headers: str) -> tuple[Any, list[bytes]]:
        """The response and its first ``events`` server-sent events after ``retry``."""
        if self.is_async:
            return asyncio.run(self._astream(path, events, headers))
        r = Client().get(path, headers=headers)
        chunks = []
        if r.streaming:
            it = iter(r.streaming_content)
            chunks = [next(it) for _ in range(events + 1)]
            r.close()
        return r, chunks

    async def _astream(
        self, path: str, events: int, headers: dict[str, str]
    ) -> tuple[Any, list[bytes]]:
        r = await AsyncClient().get(path, headers=headers)
        chunks: list[bytes] = []
        if r.streaming:
            it = r.streaming_content.__aiter__()
            for _ in range(events + 1):
                chunks.append(await it.__anext__())
            await it.aclose()
        return r, chunks


@pytest.fixture(params=["sync", "async"])
def client(request: pytest.FixtureRequest) -> Iterator[Requester]:
    is_async = request.param == "async"
    urls = "adapters.djapp.urls_async" if is_async else "adapters.djapp.urls_sync"
    with override_settings(ROOT_URLCONF=urls):
        yield Requester(is_async)


def counts(c: MetricsCollector) -> dict[tuple[str, str, str], int]:
    return {(s.method, s.endpoint, s.status_code): s.count for s in c.series()}


def test_dashboard_true_with_token(client: Requester, collector: MetricsCollector) -> None:
    settings = {"collector": collector, "dashboard": True, "dashboard_token": TOKEN}
    with override_settings(EVENTMON=settings):
        for i in range(3):
            assert client.get(f"/events/{i}").status_code == 200

        # The token check: none, wrong, right (query or bearer header).
        page = client.get("/eventmon/")
        assert page.status_code == 401
        assert b"needs a token" in page.content
        snap_path = "/eventmon/api/snapshot"
        assert client.get(snap_path).status_code == 401
        assert client.get(f"{snap_path}?token=wrong").status_code == 401
        assert client.get(snap_path, Authorization="Bearer wrong").status_code == 401
        r = client.get(f"{snap_path}?token={TOKEN}")
        assert r.status_code == 200
        assert r["Content-Type"] == "application/json"
        snap = json.loads(r.content)
        assert snap["totalRequests"] == 3
        r = client.get(snap_path, Authorization=f"Bearer {TOKEN}")
        assert r.status_code == 200

        page = client.get(f"/eventmon/?token={TOKEN}")
        assert page.status_code == 200
        assert page["Content-Type"].startswith("text/html")
        assert b"/eventmon/" in page.content
        # Script and stylesheet carry no data: served without the token.
        js = client.get("/eventmon/app.js")
        assert js.status_code == 200
        assert js["Content-Type"].startswith("text/javascript")

        rows = json.loads(client.get(f"/eventmon/api/endpoints?token={TOKEN}").content)
        assert [e["endpoint"] for e in rows["endpoints"]] == ["/events/<int:event_id>"]
        assert rows["endpoints"][0]["count"] == 3

        # HEAD: the length of the body, no body.
        head = client.get(f"{snap_path}?token={TOKEN}", method="HEAD")
        assert head.status_code == 200
        assert head.content == b""
        assert int(head["Content-Length"]) > 10
        assert client.get(f"{snap_path}?token={TOKEN}", method="POST").status_code == 405

        # Without the trailing slash: redirected to the prefix, query kept.
        redirect = client.get(f"/eventmon?token={TOKEN}")
        assert redirect.status_code == 308
        assert redirect["Location"] == f"/eventmon/?token={TOKEN}"
        assert (
            client.get("/eventmon/api/nothing", Authorization=f"Bearer {TOKEN}").status_code == 404
        )

        # The stream: refused without the token, events with it.
        refused, chunks = client.stream("/eventmon/api/stream", events=0)
        assert refused.status_code == 401
        assert chunks == []
        r, chunks = client.stream(f"/eventmon/api/stream?token={TOKEN}", events=1)
        assert r.status_code == 200
        assert r["Content-Type"].startswith("text/event-stream")
        assert chunks[0] == b"retry: 2000\n\n"
        event = chunks[1].decode()
        assert event.startswith("event: update\ndata: ")
        doc = json.loads(event.split("data: ", 1)[1])
        assert doc["snapshot"]["totalRequests"] == 3
        assert doc["endpoints"][0]["endpoint"] == "/events/<int:event_id>"

    # None of the dashboard's requests were recorded as requests of the app.
    assert counts(collector) == {("GET", "/events/<int:event_id>", "200"): 3}


def test_dashboard_object_by_dotted_path(client: Requester, collector: MetricsCollector) -> None:
    global CUSTOM
    alerts = [{"name": "high_error_rate", "state": "firing", "severity": "critical"}]
    CUSTOM = Dashboard(
        collector, prefix="/ops/", alerts_provider=lambda: alerts, stream_interval=0.05
    )
    try:
        settings = {"collector": collector, "dashboard": f"{__name__}.CUSTOM"}
        with override_settings(EVENTMON=settings):
            assert client.get("/events/7").status_code == 200
            r = client.get("/ops/api/alerts")
            assert r.status_code == 200  # no token on this one
            assert json.loads(r.content) == {"available": True, "data": alerts}
            # Not the default prefix: /eventmon/ is an ordinary (unmatched) request now.
            assert client.get("/eventmon/").status_code == 404
            r, chunks = client.stream("/ops/api/stream", events=3)
            assert r.status_code == 200
            docs = [json.loads(c.decode().split("data: ", 1)[1]) for c in chunks[1:]]
            assert [d["alerts"]["data"][0]["name"] for d in docs] == ["high_error_rate"] * 3
            assert all(d["snapshot"]["totalRequests"] == 2 for d in docs)
            assert docs[2]["snapshot"]["timestamp"] > docs[0]["snapshot"]["timestamp"]
    finally:
        CUSTOM = None
    c = counts(collector)
    assert c[("GET", "/events/<int:event_id>", "200")] == 1
    assert sum(c.values()) == 2


def test_dashboard_off_by_default(client: Requester, collector: MetricsCollector) -> None:
    with override_settings(EVENTMON={"collector": collector}):
        assert client.get("/eventmon/").status_code == 404
    # Off, the path is an ordinary (unmatched) request of the app.
    assert sum(counts(collector).values()) == 1


def test_dashboard_given_as_object_with_a_token(collector: MetricsCollector) -> None:
    dash = Dashboard(collector, token=TOKEN)
    with override_settings(
        ROOT_URLCONF="adapters.djapp.urls_sync",
        EVENTMON={"collector": collector, "dashboard": dash},
    ):
        assert Client().get("/eventmon/api/history").status_code == 401
        r = Client().get("/eventmon/api/history", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
        assert "history" in json.loads(r.content)


@pytest.mark.parametrize(
    ("eventmon", "message"),
    [
        ({"dashboard": 3}, "must be True, False, an eventmon.dashboard.Dashboard"),
        ({"dashboard_token": "x"}, "dashboard is off: add 'dashboard': True"),
        ({"dashboard": Dashboard(token="a"), "dashboard_token": "b"}, "give your Dashboard"),
        ({"dashboard": "no.such.module.DASH"}, "settings.EVENTMON\\['dashboard'\\]"),
        ({"dashboard": True, "dashboard_token": ""}, "token must be a non-empty string"),
        ({"dashbaord": True}, "unknown keys \\['dashbaord'\\]"),
    ],
)
def test_dashboard_settings_mistakes(eventmon: Any, message: str) -> None:
    with override_settings(EVENTMON=eventmon), pytest.raises(ConfigurationError, match=message):
        EventmonMiddleware(lambda request: None)
