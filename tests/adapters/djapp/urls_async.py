from __future__ import annotations

from django.urls import include, path

from adapters.djapp import views as v

api = [path("items/<int:item_id>", v.aitem)]

urlpatterns = [
    path("events/<int:event_id>", v.aevent),
    path("api/v1/", include(api)),
    path("status/<int:code>", v.astatus),
    path("boom", v.aboom),
    path("stream", v.astream),
    path("stream-boom", v.astream_boom),
    path("slow", v.aslow),
    path("inflight", v.ainflight),
    path("health", v.ahealth),
    path("static/app.css", v.ahealth),
]
