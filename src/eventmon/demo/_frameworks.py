"""The sample app on Starlette, Flask and Django, each instrumented the way users do it.

* Starlette: :class:`eventmon.asgi.EventmonMiddleware` with ``dashboard=``.
* Flask: :class:`eventmon.flask.Eventmon`; the dashboard is mounted in front
  of the instrumented app, so it is not recorded either.
* Django: ``"eventmon.django.EventmonMiddleware"`` in ``MIDDLEWARE``, with
  ``settings.EVENTMON = {"collector": ..., "dashboard": ...}``; settings are
  configured in this process, with no database.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Callable, Iterable
from typing import Any

from eventmon._exceptions import ConfigurationError
from eventmon.collector import MetricsCollector
from eventmon.dashboard import Dashboard, DashboardWSGI
from eventmon.demo._app import ROUTES, Reply, Ticketing, template
from eventmon.types import StartResponse, WSGIApp, WSGIEnviron

__all__ = ["FRAMEWORKS", "build_app", "requirements"]

#: Framework name -> the modules the demo needs to run it (import names).
FRAMEWORKS = {
    "starlette": ("starlette", "uvicorn"),
    "flask": ("flask",),
    "django": ("django",),
}


def requirements(framework: str) -> tuple[str, ...]:
    """The modules ``framework``'s demo needs."""
    return FRAMEWORKS[framework]


def build_app(
    framework: str, ticketing: Ticketing, collector: MetricsCollector, dashboard: Dashboard
) -> Any:
    """The instrumented app: ASGI for ``starlette``, WSGI for ``flask`` and ``django``."""
    builders: dict[str, Callable[[Ticketing, MetricsCollector, Dashboard], Any]] = {
        "starlette": _starlette,
        "flask": _flask,
        "django": _django,
    }
    return builders[framework](ticketing, collector, dashboard)


# ------------------------------------------------------------------ Starlette


def _starlette(ticketing: Ticketing, collector: MetricsCollector, dashboard: Dashboard) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from eventmon.asgi import EventmonMiddleware

    def endpoint(name: str) -> Callable[[Request], Any]:
        async def view(request: Request) -> Response:
            if request.method == "POST":
                await request.body()
            reply = ticketing.handle(
                name, request.path_params, request.query_params, request.headers.get
            )
            if reply.pause:
                await asyncio.sleep(reply.pause)
            return Response(
                reply.body, reply.status, dict(reply.headers), media_type=reply.content_type
            )

        return view

    routes = [
        Route(template(r.path, "starlette"), endpoint(r.name), methods=list(r.methods))
        for r in ROUTES
    ]
    return EventmonMiddleware(Starlette(routes=routes), collector=collector, dashboard=dashboard)


# ---------------------------------------------------------------------- Flask


def _flask(ticketing: Ticketing, collector: MetricsCollector, dashboard: Dashboard) -> WSGIApp:
    from flask import Flask, Response, request

    from eventmon.flask import Eventmon

    # static_folder=None: the app's own /static/<path> route serves the assets.
    app = Flask("eventmon_demo", static_folder=None)

    def endpoint(name: str) -> Callable[..., Response]:
        def view(**params: str) -> Response:
            if request.method == "POST":
                request.get_data()
            reply = ticketing.handle(name, params, request.args.to_dict(), request.headers.get)
            response: Response = _respond(reply, Response)
            return response

        return view

    for r in ROUTES:
        app.add_url_rule(
            template(r.path, "flask"),
            endpoint=r.name,
            view_func=endpoint(r.name),
            methods=r.methods,
        )
    Eventmon(app, collector=collector)
    return _with_dashboard(app, dashboard)


def _with_dashboard(app: WSGIApp, dashboard: Dashboard) -> WSGIApp:
    """``app`` with the dashboard answering under its prefix, in front of it."""
    mounted = DashboardWSGI(dashboard)

    def dispatch(environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        if mounted.matches(environ.get("PATH_INFO", "")):
            return mounted(environ, start_response)
        return app(environ, start_response)

    return dispatch


# --------------------------------------------------------------------- Django


def _django(ticketing: Ticketing, collector: MetricsCollector, dashboard: Dashboard) -> WSGIApp:
    from django.conf import settings

    if settings.configured:
        raise ConfigurationError(
            "the Django demo configures Django itself; run it in a fresh process"
        )
    from django.http import HttpResponse
    from django.urls import path

    def endpoint(name: str, methods: tuple[str, ...]) -> Callable[..., HttpResponse]:
        def view(request: Any, **params: str) -> HttpResponse:
            if request.method not in methods:
                return HttpResponse(status=405, headers={"Allow": ", ".join(methods)})
            if request.method == "POST":
                request.body  # noqa: B018 - read the body, as a real view would
            reply = ticketing.handle(name, params, request.GET.dict(), request.headers.get)
            return _respond(reply, HttpResponse)

        return view

    urls = types.ModuleType("eventmon_demo_urls")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path(template(r.path, "django")[1:], endpoint(r.name, r.methods)) for r in ROUTES
    ]
    settings.configure(
        DEBUG=False,
        SECRET_KEY="eventmon-demo-not-secret",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=urls,
        MIDDLEWARE=["eventmon.django.EventmonMiddleware"],
        EVENTMON={"collector": collector, "dashboard": dashboard},
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
    )
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()  # type: ignore[no-any-return]


def _respond(reply: Reply, response_class: Any) -> Any:
    """``reply`` as a framework response, after its service time."""
    if reply.pause:
        time.sleep(reply.pause)  # a worker thread, like a real sync view waiting on I/O
    response = response_class(reply.body, status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers:
        response.headers[name] = value
    return response
