from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

EVENTS = {42: "PyCon", 7: "Concert"}


def event(request: HttpRequest, event_id: int) -> JsonResponse:
    if event_id not in EVENTS:
        raise Http404("no such event")
    return JsonResponse({"id": event_id, "name": EVENTS[event_id]})


async def tickets(request: HttpRequest, event_id: int) -> StreamingHttpResponse:
    async def rows() -> AsyncIterator[str]:
        yield "seat,holder\n"
        for seat in range(1, 4):
            await asyncio.sleep(0.01)  # timed until the last row is sent
            yield f"{seat},guest {seat}\n"

    return StreamingHttpResponse(rows(), content_type="text/csv")


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("events/<int:event_id>", event),
    path("events/<int:event_id>/tickets.csv", tickets),
    path("health", health),
]
