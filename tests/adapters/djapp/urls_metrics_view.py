from __future__ import annotations

from django.urls import path, re_path

from adapters.djapp import views as v
from eventmon.django import metrics_view


def legacy(request: object, year: str) -> object:
    return v.health(request)  # type: ignore[arg-type]


urlpatterns = [
    path("events/<int:event_id>", v.event),
    path("internal/metrics", metrics_view),
    re_path(r"^legacy/(?P<year>[0-9]{4})/$", legacy),
]
