from __future__ import annotations

import io

from django.http import FileResponse
from django.urls import path, re_path

from adapters.djapp import views as v
from eventmon.django import metrics_view


def download(request: object) -> FileResponse:
    return FileResponse(io.BytesIO(b"0123456789" * 100), filename="tickets.csv")


def legacy(request: object, year: str) -> object:
    return v.health(request)  # type: ignore[arg-type]


urlpatterns = [
    path("events/<int:event_id>", v.event),
    path("internal/metrics", metrics_view),
    path("download", download),
    re_path(r"^legacy/(?P<year>[0-9]{4})/$", legacy),
]
