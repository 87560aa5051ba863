"""eventmon.flask beyond the shared suite: the extension pattern and app.config."""

from __future__ import annotations

import gc
import io
from typing import Any

import pytest
from flask import Blueprint, Flask

from eventmon import ConfigurationError, MetricsCollector
from eventmon.core.registry import UNMATCHED
from eventmon.flask import Eventmon

NOT_A_COLLECTOR = r"^collector must be an eventmon\.MetricsCollector"


def create_app(**config: Any) -> Flask:
    app = Flask("factory")
    app.config.update(config)
    bp = Blueprint("admin", __name__, url_prefix="/admin")

    @app.get("/events/<int:event_id>")
    def event(event_id: int) -> str:
        return "event"

    @bp.get("/users/<name>")
    def user(name: str) -> str:
        return "user"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    app.register_blueprint(bp)
    return app


def counts(c: MetricsCollector) -> dict[tuple[str, str, str], int]:
    return {(s.method, s.endpoint, s.status_code): s.count for s in c.series()}


def get(app: Flask, path: str) -> tuple[int, bytes]:
    r = app.test_client().get(path)
    try:
        return r.status_code, r.get_data()
    finally:
        r.close()  # as a WSGI server does; the request is recorded then


def test_init_app_factory_pattern() -> None:
    eventmon = Eventmon()
    c1, c2 = MetricsCollector(slow_hooks=()), MetricsCollector(slow_hooks=())
    a1 = create_app(EVENTMON_COLLECTOR=c1)
    a2 = create_app(EVENTMON_COLLECTOR=c2)
    eventmon.init_app(a1)
    eventmon.init_app(a2)
    assert get(a1, "/events/1")[0] == 200
    assert get(a1, "/admin/users/ann")[0] == 200
    assert get(a2, "/nope")[0] == 404
    assert counts(c1) == {
        ("GET", "/events/<int:event_id>", "200"): 1,
        ("GET", "/admin/users/<name>", "200"): 1,
    }
    assert counts(c2) == {("GET", UNMATCHED, "404"): 1}
    assert Eventmon.collector_of(a1) is c1


def test_options_from_app_config_and_arguments_win(collector: MetricsCollector) -> None:
    app = create_app(
        EVENTMON_METRICS_PATH="/internal/metrics",
        EVENTMON_EXCLUDE_PATHS=["/admin/*"],
        EVENTMON_UNIT="s",
    )
    Eventmon(app, collector=collector, unit="ms")
    assert get(app, "/admin/users/bob")[0] == 200
    assert get(app, "/events/3")[0] == 200
    assert get(app, "/metrics")[0] == 404
    status, body = get(app, "/internal/metrics")
    assert status == 200
    assert b"http_request_duration_ms_bucket" in body  # the argument beat EVENTMON_UNIT
    assert counts(collector) == {
        ("GET", "/events/<int:event_id>", "200"): 1,
        ("GET", UNMATCHED, "404"): 1,
    }


def test_unhandled_exception_answered_500_is_recorded_once(collector: MetricsCollector) -> None:
    app = create_app()  # not TESTING: Flask answers 500 itself
    Eventmon(app, collector=collector)
    assert get(app, "/boom")[0] == 500
    assert counts(collector) == {("GET", "/boom", "500"): 1}


def test_registering_twice_is_a_mistake(collector: MetricsCollector) -> None:
    app = create_app()
    Eventmon(app, collector=collector)
    with pytest.raises(ConfigurationError, match="already registered"):
        Eventmon(app, collector=collector)


def test_bad_config_fails_at_init() -> None:
    with pytest.raises(ConfigurationError, match="EVENTMON_COLLECTOR"):
        Eventmon(create_app(EVENTMON_COLLECTOR="nope"))
    with pytest.raises(ConfigurationError, match=NOT_A_COLLECTOR):
        Eventmon(create_app(), collector="oops")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=NOT_A_COLLECTOR):
        Eventmon(collector="oops")  # type: ignore[arg-type]  # app factory: init_app comes later
    with pytest.raises(ConfigurationError, match="metrics_path"):
        Eventmon(create_app(EVENTMON_METRICS_PATH="metrics"))


def test_app_with_its_own_request_context_still_gets_templates(
    collector: MetricsCollector,
) -> None:
    class MyFlask(Flask):
        def request_context(self, environ: Any) -> Any:
            return super().request_context(environ)

    app = MyFlask("custom")

    @app.get("/things/<int:thing_id>")
    def thing(thing_id: int) -> str:
        return "thing"

    Eventmon(app, collector=collector)
    assert get(app, "/things/9")[0] == 200
    assert get(app, "/other")[0] == 404
    assert counts(collector) == {
        ("GET", "/things/<int:thing_id>", "200"): 1,
        ("GET", UNMATCHED, "404"): 1,
    }


def test_no_reference_cycles_per_request(collector: MetricsCollector) -> None:
    """Instrumenting must not leave extra garbage for the cycle collector per request."""

    def garbage_per_request(app: Flask) -> float:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/events/1",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
        }

        def once() -> None:
            env = dict(environ, **{"wsgi.input": io.BytesIO()})
            body = app(env, lambda *a: None)
            b"".join(body)
            body.close()  # type: ignore[attr-defined]

        for _ in range(10):
            once()
        gc.collect()
        gc.disable()
        try:
            for _ in range(200):
                once()
            return gc.collect() / 200
        finally:
            gc.enable()

    bare = create_app()
    instrumented = create_app()
    Eventmon(instrumented, collector=collector)
    assert garbage_per_request(instrumented) == garbage_per_request(bare)


def test_dashboard_passed_through_and_from_app_config(collector: MetricsCollector) -> None:
    import json

    from eventmon.dashboard import Dashboard

    app = create_app()
    Eventmon(app, collector=collector, dashboard=True)
    assert get(app, "/events/1")[0] == 200
    status, body = get(app, "/eventmon/api/snapshot")
    assert status == 200
    assert json.loads(body)["totalRequests"] == 1
    assert get(app, "/eventmon/")[0] == 200  # the page itself
    # Dashboard requests are not app traffic.
    assert counts(collector) == {("GET", "/events/<int:event_id>", "200"): 1}

    other = MetricsCollector(slow_hooks=())
    dash = Dashboard(other, token="s3cret", prefix="/ops/")
    configured = create_app(EVENTMON_DASHBOARD=dash)
    Eventmon(configured, collector=other)
    assert get(configured, "/ops/api/snapshot")[0] == 401  # the Dashboard's own token
    r = configured.test_client().get("/ops/api/snapshot?token=s3cret")
    assert (r.status_code, json.loads(r.get_data())["totalRequests"]) == (200, 0)
    r.close()

    off = create_app()
    Eventmon(off, collector=MetricsCollector(slow_hooks=()))
    assert get(off, "/eventmon/api/snapshot")[0] == 404  # off unless asked for


def test_bad_dashboard_fails_at_init() -> None:
    with pytest.raises(ConfigurationError, match="dashboard must be True"):
        Eventmon(create_app(), collector=MetricsCollector(slow_hooks=()), dashboard="yes")
    with pytest.raises(ConfigurationError, match="dashboard must be True"):
        Eventmon(create_app(EVENTMON_DASHBOARD="yes"), collector=MetricsCollector(slow_hooks=()))
