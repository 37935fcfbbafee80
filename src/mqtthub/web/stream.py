"""``GET /api/stream``: live events as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from mqtthub.web.api import RuntimeDep

router = APIRouter()
KEEPALIVE_S = 15.0


@router.get("/stream", tags=["live"])
async def stream(request: Request, runtime: RuntimeDep) -> StreamingResponse:
    """Events as they happen: ``device`` (status, last seen, latest values), ``stats``
    (every second), ``connection``, ``dead_letter``, ``device_deleted``, and ``resync``
    when this client fell behind and should reload what it shows."""

    async def events() -> AsyncIterator[str]:
        with runtime.events.subscribe() as queue:
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        event = await queue.get()
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield f"event: {event['event']}\ndata: {json.dumps(event['data'])}\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
