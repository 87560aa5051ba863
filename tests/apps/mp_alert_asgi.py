"""The Starlette twin of ``mp_alert_app``: the engine runs in each worker's lifespan.

Under ``uvicorn --workers`` with EVENTMON_MULTIPROC_DIR set: /fail counts one
``checkout_failures`` and answers 500 with the worker's pid; /engine answers this
worker's engine state. Notices go to the webhook at ``ALERT_URL``.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from eventmon import default_collector
from eventmon.alerting import AlertEngine, AlertRule
from eventmon.alerting.notifiers import WebhookNotifier
from eventmon.asgi import EventmonMiddleware

collector = default_collector()
engine = AlertEngine(
    collector,
    [AlertRule("checkout_failing", f"checkout_failures > {os.environ['ALERT_THRESHOLD']}")],
    notifiers=[WebhookNotifier(os.environ["ALERT_URL"])],
    interval=float(os.environ.get("ALERT_INTERVAL", "0.2")),
    declare=["checkout_failures"],
)


async def fail(request: Any) -> PlainTextResponse:
    collector.increment_counter("checkout_failures")
    return PlainTextResponse(str(os.getpid()), status_code=500)


async def state(request: Any) -> JSONResponse:
    return JSONResponse(
        {
            "pid": os.getpid(),
            "leading": engine.leading,
            "evaluations": engine.evaluations,
            "firing": engine.firing(),
            "value": engine.alerts()[0].value,
        }
    )


app = Starlette(
    routes=[Route("/fail", fail), Route("/engine", state)],
    lifespan=engine.lifespan,
)
app.add_middleware(EventmonMiddleware)
