"""A Flask app under gunicorn with worker aggregation, next to prometheus_client.

/work/<n> observes one user histogram value and counts one prometheus_client
counter; /metrics is eventmon's page with the app's registry beside it
(serve_alongside), /prom is prometheus_client's page with eventmon registered
(EventmonCollector). Each worker has its own prometheus_client figures; eventmon's
are merged over the workers.
"""

from __future__ import annotations

import os
import time

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, ProcessCollector, make_wsgi_app
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from eventmon import default_collector
from eventmon.exporters.promclient import EventmonCollector, serve_alongside
from eventmon.flask import Eventmon

collector = default_collector()
collector.define_histogram("job_size_bytes", "Job sizes.", ["kind"], buckets=[10, 100, 1000])
registry = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=registry)
jobs = Counter("app_jobs_total", "Jobs in this worker.", registry=registry)

app = Flask(__name__)


@app.route("/work/<int:n>")
def work(n: int) -> str:
    collector.observe_histogram("job_size_bytes", n, {"kind": "a"})
    jobs.inc()
    time.sleep(0.02)  # long enough that concurrent requests spread over the workers
    return str(os.getpid())


Eventmon(app)
serve_alongside(registry)
prom_registry = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=prom_registry)
prom_registry.register(EventmonCollector())
app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, {"/prom": make_wsgi_app(prom_registry)}
)
