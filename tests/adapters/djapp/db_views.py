"""Views that use the database of :mod:`adapters.djapp.db_settings`."""

from __future__ import annotations

from django.db import connections
from django.http import HttpRequest, HttpResponse


def items(request: HttpRequest) -> HttpResponse:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM item")
        (n,) = cursor.fetchone()
        cursor.executemany("INSERT INTO item (name) VALUES (%s)", [("a",), ("b",)])
    return HttpResponse(str(n))


def unreachable(request: HttpRequest) -> HttpResponse:
    with connections["unreachable"].cursor() as cursor:  # raises: cannot open the file
        cursor.execute("SELECT 1")
    return HttpResponse("unreachable")  # pragma: no cover


def bad_sql(request: HttpRequest) -> HttpResponse:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")  # raises: a bad statement
    return HttpResponse("bad")  # pragma: no cover
