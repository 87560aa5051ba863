from __future__ import annotations

from django.urls import path

from adapters.djapp import db_views as v

urlpatterns = [
    path("items", v.items),
    path("unreachable", v.unreachable),
    path("bad-sql", v.bad_sql),
]
