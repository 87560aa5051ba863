"""A Flask app for worker-aggregation tests under gunicorn's sync workers.

/work/<ms> sleeps ``ms`` ms and answers the worker's pid. No collector argument:
the process-wide one, which EVENTMON_MULTIPROC_DIR turns into a worker-aggregating
one in every worker (or, with ``--preload``, in the master before it forks).
With MP_TENANT_LABEL=1, requests carry a ``tenant`` label from the ``X-Tenant`` header;
with MP_SIZE_METRICS=1, body sizes are measured (``size_metrics``); with
MP_EXEMPLARS=1, trace ids from ``traceparent`` become exemplars.
"""

from __future__ import annotations

import os
import time

from flask import Flask

from eventmon import default_collector
from eventmon.flask import Eventmon

app = Flask(__name__)


@app.route("/work/<int:ms>")
def work(ms: int) -> str:
    if ms:
        time.sleep(ms / 1000)
    return str(os.getpid())


if os.environ.get("MP_EXEMPLARS"):
    default_collector().enable_exemplars()
Eventmon(
    app,
    header_labels={"tenant": "X-Tenant"} if os.environ.get("MP_TENANT_LABEL") else None,
    size_metrics=bool(os.environ.get("MP_SIZE_METRICS")),
)
