"""A small Django project instrumented with eventmon: one line in MIDDLEWARE."""

from __future__ import annotations

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "eventsite.urls"
WSGI_APPLICATION = "eventsite.wsgi.application"
ASGI_APPLICATION = "eventsite.asgi.application"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

MIDDLEWARE = [
    "eventmon.django.EventmonMiddleware",  # the one line: first, so it times everything
    "django.middleware.common.CommonMiddleware",
]

# Optional: what eventmon does not record, where it serves metrics.
EVENTMON = {"exclude_paths": ["/health"]}
