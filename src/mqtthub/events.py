"""Live events for the dashboard: a fan-out of small JSON-ready dicts (no I/O).

The writer publishes after each commit; each ``/api/stream`` client has a bounded queue.
A client too slow to keep up is told to ``resync`` (reload what it shows) instead of
making the service hold an unbounded backlog for it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SUBSCRIBER_QUEUE = 1000
RECENT_MESSAGES = 20


class ResyncQueue(asyncio.Queue[dict[str, Any]]):
    """A subscriber's queue; when it overflows it holds a single ``resync`` event."""

    def clear_and_resync(self) -> None:
        """Drop the backlog and tell the client to reload."""
        while not self.empty():
            self.get_nowait()
        self.put_nowait({"event": "resync", "data": {}})


class EventBus:
    """Publish/subscribe of events on the event loop."""

    def __init__(self) -> None:
        """No subscribers yet."""
        self._subscribers: set[ResyncQueue] = set()

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send an event to every subscriber; a full subscriber gets ``resync`` instead."""
        event = {"event": kind, "data": data}
        for queue in self._subscribers:
            if queue.full():
                queue.clear_and_resync()
            else:
                queue.put_nowait(event)

    @contextmanager
    def subscribe(self) -> Iterator[ResyncQueue]:
        """A queue of events for one client, for as long as the block runs."""
        queue = ResyncQueue(maxsize=SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        """How many clients listen."""
        return len(self._subscribers)


class RecentMessages:
    """The last few raw messages of each device, for the device page."""

    def __init__(self, per_device: int = RECENT_MESSAGES) -> None:
        """Keep ``per_device`` messages per device."""
        self._per_device = per_device
        self._messages: dict[str, deque[tuple[float, str, bytes]]] = {}

    def add(self, device_id: str, received_at: float, topic: str, payload: bytes) -> None:
        """Remember one message (as received: it is decoded only when asked for)."""
        recent = self._messages.get(device_id)
        if recent is None:
            recent = self._messages[device_id] = deque(maxlen=self._per_device)
        recent.append((received_at, topic, payload))

    def of(self, device_id: str) -> list[dict[str, Any]]:
        """A device's recent messages, newest first; payloads as text (at most 2 KiB)."""
        return [
            {
                "received_at": received_at,
                "topic": topic,
                "payload": payload[:2048].decode("utf-8", errors="replace"),
            }
            # tuple() first: the writer may append while an HTTP thread reads.
            for received_at, topic, payload in reversed(tuple(self._messages.get(device_id, ())))
        ]

    def forget(self, device_id: str) -> None:
        """Drop a deleted device's messages."""
        self._messages.pop(device_id, None)
