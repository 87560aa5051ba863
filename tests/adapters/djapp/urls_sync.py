from __future__ import annotations

from django.urls import include, path

from adapters.djapp import views as v

api = [path("items/<int:item_id>", v.item)]

urlpatterns = [
    path("events/<int:event_id>", v.event),
    path("api/v1/", include(api)),
    path("status/<int:code>", v.status),
    path("boom", v.boom),
    path("stream", v.stream),
    path("stream-boom", v.stream_boom),
    path("slow", v.slow),
    path("inflight", v.inflight),
    path("health", v.health),
    path("static/app.css", v.health),
]
