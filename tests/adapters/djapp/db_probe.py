"""Drives Django with the eventmon app against real SQLite; prints what eventmon saw as JSON.

``python -m adapters.djapp.db_probe`` from tests/, with the environment of
:mod:`adapters.djapp.db_settings`.
"""

from __future__ import annotations

import json
import logging
import os
import threading

os.environ["DJANGO_SETTINGS_MODULE"] = "adapters.djapp.db_settings"

import django

django.setup()

from django.db import connections  # noqa: E402
from django.test import Client  # noqa: E402

from eventmon import default_collector  # noqa: E402
from eventmon.alerting import AlertEngine, default_rules  # noqa: E402


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def counters() -> dict[str, float]:
    out = {}
    for name, per in default_collector().counters().items():
        for values, v in per.items():
            out[name + "".join(f"/{x}" for x in values)] = v
    return out


def main() -> None:
    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # the 500s are expected
    collector = default_collector()
    clock = Clock()
    rules = [r for r in default_rules() if r.name == "database_connection_failure"]
    engine = AlertEngine(collector, rules, clock=clock, wall_clock=clock)
    result: dict[str, object] = {"at_start": counters()}
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE TABLE item (id integer primary key, name text)")

    def other_thread() -> None:  # its own connection object, instrumented as well
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        connections.close_all()

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    client = Client(raise_request_exception=False)  # the 500 a user would get
    notices = [n.status for n in engine.evaluate()]
    result["items"] = client.get("/items").status_code
    result["bad_sql"] = client.get("/bad-sql").status_code
    result["after_queries"] = counters()
    clock.now += 15
    notices += [n.status for n in engine.evaluate()]
    result["unreachable"] = client.get("/unreachable").status_code
    result["after_unreachable"] = counters()
    for _ in range(6):
        clock.now += 15
        notices += [f"{clock.now - 1000:g}:{n.status}" for n in engine.evaluate()]
    result["notices"] = notices
    result["metrics"] = [
        line for line in client.get("/metrics").content.decode().splitlines() if "db_" in line
    ]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
