"""FAKE MQTT transport for in-process tests of ``Service``, the writer and the downlink.

It implements :class:`mqtthub.transport.base.Transport` without a network: a test
delivers messages as a broker would, and sees what the service published and which
messages it acknowledged. Everything behind the seam (parsing, the writer, SQLite, the
HTTP app) is the real code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mqtthub.transport.base import LinkPhase, LinkState, MessageHandler

__all__ = ["FakeTransport", "Published"]


@dataclass(frozen=True, slots=True)
class Published:
    """A message the service published."""

    topic: str
    payload: bytes
    retain: bool
    expiry: int | None


@dataclass
class FakeTransport:
    """A connected transport whose broker is the test.

    Construct it through :meth:`factory` so ``Service`` can build it with its keyword
    arguments (only ``handler`` is used).
    """

    handler: MessageHandler
    #: PUBACKs a lost connection could not send (a fake broker loses none).
    unsent_acknowledgements: int = 0
    state: LinkState = field(
        default_factory=lambda: LinkState(
            LinkPhase.CONNECTED, None, "MQTT 5", time.time(), "fake://"
        )
    )
    published: list[Published] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)
    paused: bool = False
    added_topics: list[str] = field(default_factory=list)
    _closed: asyncio.Event = field(default_factory=asyncio.Event)
    _next_packet_id: int = 1

    @classmethod
    def factory(cls, made: list[FakeTransport]) -> Any:
        """A ``transport_factory`` for ``Service`` that appends each transport to ``made``."""

        def make(*, handler: MessageHandler, **_options: Any) -> FakeTransport:
            transport = cls(handler)
            made.append(transport)
            return transport

        return make

    def deliver(self, topic: str, payload: bytes, *, qos: int = 1, dup: bool = False) -> int:
        """Hand one message to the service as the broker would; its packet id (0 for QoS 0)."""
        packet_id = 0
        if qos:
            packet_id, self._next_packet_id = self._next_packet_id, self._next_packet_id + 1
        self.handler(topic, payload, qos, False, dup, packet_id or None)
        return packet_id

    async def run(self) -> None:
        """Stay "connected" until closed."""
        await self._closed.wait()

    async def close(self) -> None:
        """Disconnect."""
        self._closed.set()

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, expiry: int | None = None
    ) -> bool:
        """Record a publish."""
        self.published.append(Published(topic, payload, retain, expiry))
        return True

    def acknowledge(self, acks: Sequence[Any]) -> None:
        """Record acknowledgements (packet ids)."""
        self.acknowledged.extend(acks)

    def pause_reading(self) -> None:
        """Record backpressure."""
        self.paused = True

    def resume_reading(self) -> None:
        """Record the end of backpressure."""
        self.paused = False

    def add_topics(self, topics: Sequence[str]) -> None:
        """Record subscriptions added at run time."""
        self.added_topics.extend(topics)
