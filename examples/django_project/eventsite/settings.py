"""A small Django project instrumented with eventmon: one line in MIDDLEWARE."""

from __future__ import annotations

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "eventsite.urls"
WSGI_APPLICATION = "eventsite.wsgi.application"
ASGI_APPLICATION = "eventsite.asgi.application"
# The eventmon app: system checks on settings.EVENTMON (`manage.py check` fails on a
# mistake, ids eventmon.E001/E002/W001) and, for every database in DATABASES, query
# counts, query time, query errors and failed connections (db_connection_errors_total,
# which the database_connection_failure alert rule reads).
INSTALLED_APPS = ["eventmon"]
DATABASES: dict[str, dict[str, str]] = {}  # this example has no database; yours is counted
USE_TZ = True

MIDDLEWARE = [
    "eventmon.django.EventmonMiddleware",  # the one line: first, so it times everything
    "django.middleware.common.CommonMiddleware",
]

# Optional: what eventmon does not record, where it serves metrics; "database_metrics":
# False keeps the app's checks but leaves the database connections alone.
EVENTMON = {"exclude_paths": ["/health"], "database_metrics": True}
