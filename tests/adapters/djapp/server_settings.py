"""Settings for Django under real servers (gunicorn, uvicorn): the process-wide collector."""

from __future__ import annotations

import os

from adapters.djapp.settings import *  # noqa: F403

ROOT_URLCONF = os.environ.get("EVENTMON_TEST_URLS", "adapters.djapp.urls_server")
EVENTMON: dict[str, object] = {}
