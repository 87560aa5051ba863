"""A Flask app that starts an alert engine in every worker, as an app factory would.

Under gunicorn's sync workers with EVENTMON_MULTIPROC_DIR set: /fail counts one
``checkout_failures`` and answers 500 with the worker's pid; /engine answers this
worker's engine state as JSON. The rule fires once the instance has counted more
than ``ALERT_THRESHOLD`` failures; the notice goes to the webhook at ``ALERT_URL``.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify

from eventmon import default_collector
from eventmon.alerting import AlertEngine, AlertRule
from eventmon.alerting.notifiers import WebhookNotifier
from eventmon.flask import Eventmon

app = Flask(__name__)
collector = default_collector()
engine = AlertEngine(
    collector,
    [AlertRule("checkout_failing", f"checkout_failures > {os.environ['ALERT_THRESHOLD']}")],
    notifiers=[WebhookNotifier(os.environ["ALERT_URL"])],
    interval=float(os.environ.get("ALERT_INTERVAL", "0.2")),
    declare=["checkout_failures"],
)


@app.route("/fail")
def fail() -> tuple[str, int]:
    collector.increment_counter("checkout_failures")
    return str(os.getpid()), 500


@app.route("/engine")
def state() -> object:
    return jsonify(
        pid=os.getpid(),
        leading=engine.leading,
        evaluations=engine.evaluations,
        firing=engine.firing(),
        value=engine.alerts()[0].value,
    )


Eventmon(app)
engine.start()
