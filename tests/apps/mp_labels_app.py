"""A Flask app with a per-request label, for worker aggregation under gunicorn's
sync workers: ``tenant`` from the ``X-Tenant`` header.

/work/<ms> sleeps ``ms`` ms (so that while one worker sleeps the other accepts)
and answers the worker's pid. The process-wide collector: EVENTMON_MULTIPROC_DIR
makes it a worker-aggregating one in every worker.
"""

from __future__ import annotations

import os
import time

from flask import Flask

from eventmon.flask import Eventmon

app = Flask(__name__)


@app.route("/work/<int:ms>")
def work(ms: int) -> str:
    if ms:
        time.sleep(ms / 1000)
    return str(os.getpid())


Eventmon(app, header_labels={"tenant": "X-Tenant"})
