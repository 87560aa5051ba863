"""Settings with the eventmon app and real SQLite databases, for tests/adapters/test_django_db.py.

Run in a subprocess (the in-process Django of the other tests has no database):
``EVENTMON_TEST_DB`` names the SQLite file, ``EVENTMON_TEST_SETTINGS`` is
``settings.EVENTMON`` as JSON, ``EVENTMON_TEST_MIDDLEWARE=0`` leaves the middleware out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from adapters.djapp.settings import *  # noqa: F403

_db = Path(os.environ.get("EVENTMON_TEST_DB", "/nonexistent/eventmon-test.sqlite3"))

INSTALLED_APPS = ["eventmon"]
ROOT_URLCONF = "adapters.djapp.urls_db"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(_db)},
    # A file in a directory that does not exist: every connection attempt fails.
    "unreachable": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(_db.parent / "no-such-dir" / "db.sqlite3"),
    },
}
EVENTMON = json.loads(os.environ.get("EVENTMON_TEST_SETTINGS", "{}"))
if os.environ.get("EVENTMON_TEST_MIDDLEWARE") == "0":
    MIDDLEWARE: list[str] = []
