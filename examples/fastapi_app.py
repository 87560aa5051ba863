"""The same idea on FastAPI: routers and path templates are labelled as declared.

Run it:    uvicorn examples.fastapi_app:app --port 8000
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, HTTPException

from eventmon.asgi import EventmonMiddleware

app = FastAPI(title="tickets")
router = APIRouter(prefix="/api/v1")


@router.get("/events/{event_id}")
async def get_event(event_id: int) -> dict[str, int | str]:
    if event_id != 42:
        raise HTTPException(404, "no such event")
    return {"id": event_id, "name": "Doors open"}


app.include_router(router)
app.add_middleware(EventmonMiddleware)  # the one line: /metrics, templates, percentiles
