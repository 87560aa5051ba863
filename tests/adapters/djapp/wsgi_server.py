from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ["DJANGO_SETTINGS_MODULE"] = "adapters.djapp.server_settings"
application = get_wsgi_application()
