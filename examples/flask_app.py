"""A small Flask app instrumented with eventmon in one line.

Run it:  flask --app examples/flask_app.py run      (or: gunicorn examples.flask_app:app)
Then:    curl localhost:5000/events/42 ; curl localhost:5000/metrics
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, abort

import eventmon
from eventmon.flask import Eventmon

app = Flask(__name__)
app.config["EVENTMON_EXCLUDE_PATHS"] = ["/health"]

EVENTS = {42: "PyCon", 7: "Concert"}


@app.get("/events/<int:event_id>")
def event(event_id: int) -> dict[str, object]:
    if event_id not in EVENTS:
        abort(404)
    return {"id": event_id, "name": EVENTS[event_id]}


@app.get("/events/<int:event_id>/tickets.csv")
def tickets(event_id: int) -> Response:
    def rows() -> Iterator[str]:
        yield "seat,holder\n"
        for seat in range(1, 4):
            time.sleep(0.01)  # a slow export: timed until its last row
            yield f"{seat},guest {seat}\n"

    return Response(rows(), mimetype="text/csv")


@app.get("/health")
def health() -> str:
    return "ok"


admin = Blueprint("admin", __name__, url_prefix="/admin")


@admin.get("/stats")
def stats() -> dict[str, object]:
    return eventmon.get_realtime_metrics().to_dict()


app.register_blueprint(admin)

Eventmon(app)  # the one line: metrics for every route, served at /metrics

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
