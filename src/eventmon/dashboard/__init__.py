"""The built-in dashboard: a page, a JSON API and server-sent events.

Off unless enabled::

    from eventmon.asgi import EventmonMiddleware
    from eventmon.dashboard import Dashboard

    app = EventmonMiddleware(app, dashboard=Dashboard(token="s3cret"))
    # http://127.0.0.1:8000/eventmon/?token=s3cret

Everything the page needs (HTML, script, stylesheet) ships in the package; it
loads nothing from the network. The JSON API is documented in docs/dashboard.md.
"""

from __future__ import annotations

from eventmon.dashboard._core import API_VERSION, Dashboard, Provider
from eventmon.dashboard._http import Response
from eventmon.dashboard.asgi import DashboardASGI
from eventmon.dashboard.wsgi import DashboardWSGI

__all__ = ["API_VERSION", "Dashboard", "DashboardASGI", "DashboardWSGI", "Provider", "Response"]
