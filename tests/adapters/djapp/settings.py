"""Minimal Django settings for eventmon's adapter tests: no database, no apps."""

from __future__ import annotations

SECRET_KEY = "eventmon-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "adapters.djapp.urls_sync"
MIDDLEWARE = ["eventmon.django.EventmonMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}  # any database access fails loudly
INSTALLED_APPS: list[str] = []
USE_TZ = True
EVENTMON = {"exclude_paths": ["/health", "/static/*"]}
LOGGING_CONFIG = None
