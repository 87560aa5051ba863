"""The Flask app the real-server tests run under gunicorn."""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Flask, Response

from eventmon.flask import Eventmon

app = Flask(__name__)


@app.get("/events/<int:event_id>")
def event(event_id: int) -> str:
    return f"event {event_id}"


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("boom")


@app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[bytes]:
        for i in range(4):
            time.sleep(0.05)
            yield b"chunk %d\n" % i

    return Response(chunks(), mimetype="text/plain")


Eventmon(app)
