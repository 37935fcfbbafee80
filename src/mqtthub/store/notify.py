"""Live events across workers: each worker NOTIFYs what it committed, the HTTP side LISTENs.

With several workers a dashboard connects to one of them but the devices' messages are
split among all. Each worker sends its batch's live events (the ``device`` and
``dead_letter`` events the dashboard draws) with PostgreSQL ``NOTIFY`` inside the batch's
transaction, so they are delivered exactly when the data is visible; every worker that
serves HTTP listens and passes the other workers' events to its own dashboards.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
from sqlalchemy import Connection

from mqtthub.leader import libpq_url

log = logging.getLogger("mqtthub.events")
CHANNEL = "mqtthub_events"
PAYLOAD_LIMIT = 7000  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
RETRY_S = 2.0

#: One live event: (kind, data), as ``EventBus.publish`` takes it.
Event = tuple[str, dict[str, Any]]


def payloads(origin: str, events: list[Event]) -> list[str]:
    """``events`` as NOTIFY payloads under ``PAYLOAD_LIMIT`` bytes, each naming ``origin``.

    An event too large for a payload of its own becomes a ``resync`` (the dashboard then
    reloads what it shows).
    """
    head = orjson.dumps({"o": origin, "e": []})[: -len(b"[]}")]  # b'{"o":"...","e":'
    out: list[str] = []
    part: list[bytes] = []
    size = len(head) + 3
    for kind, data in events:
        encoded = orjson.dumps([kind, data], option=orjson.OPT_NON_STR_KEYS)
        if len(head) + len(encoded) + 3 > PAYLOAD_LIMIT:
            encoded = orjson.dumps(["resync", {}])
        if size + len(encoded) + 1 > PAYLOAD_LIMIT and part:
            out.append((head + b"[" + b",".join(part) + b"]}").decode())
            part, size = [], len(head) + 3
        part.append(encoded)
        size += len(encoded) + 1
    if part:
        out.append((head + b"[" + b",".join(part) + b"]}").decode())
    return out


def notify(connection: Connection, origin: str, events: list[Event]) -> None:
    """Send ``events`` on :data:`CHANNEL`, delivered when ``connection``'s transaction commits."""
    if events:
        connection.exec_driver_sql(
            "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
            (CHANNEL, payloads(origin, events)),
        )


class EventRelay:
    """Listens on :data:`CHANNEL` and publishes the other workers' events here."""

    def __init__(
        self, database_url: str, origin: str, publish: Callable[[str, dict[str, Any]], None]
    ) -> None:
        """``origin``: this worker's id (its own events are already published locally)."""
        self._url = libpq_url(database_url)
        self._origin = origin
        self._publish = publish

    async def run(self) -> None:
        """Relay until cancelled; a lost database session is reopened every ``RETRY_S``."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        try:
            await asyncio.to_thread(self._listen, loop, stop)
        finally:
            stop.set()  # the thread notices within a second

    def _listen(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as session:
                    session.execute(f"LISTEN {CHANNEL}")
                    while not stop.is_set():
                        for notice in session.notifies(timeout=1.0):
                            self._relay(loop, notice.payload)
            except psycopg.Error as exc:
                log.warning("live events from other workers interrupted: %s", exc)
                stop.wait(RETRY_S)

    def _relay(self, loop: asyncio.AbstractEventLoop, payload: str) -> None:
        message = orjson.loads(payload)
        if message["o"] == self._origin:
            return
        for kind, data in message["e"]:
            loop.call_soon_threadsafe(self._publish, kind, data)
