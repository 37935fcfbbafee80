"""The seam between ``serve`` and MQTT: what the service needs of a connection.

:class:`~mqtthub.transport.client.MqttTransport` (gmqtt, with all its workarounds) is the
real one; tests drive ``Service``, the writer and the downlink in-process through a fake
that implements the same protocol (``tests/support/fake_transport.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

#: Called synchronously on the event loop for each incoming message with (topic, payload,
#: qos, retain, dup, ack). ``ack`` is None for QoS 0; for QoS 1 the receiver hands it to
#: :meth:`Transport.acknowledge` once the message may be acknowledged (after commit).
MessageHandler = Callable[[str, bytes, int, bool, bool, Any], None]


class LinkPhase(StrEnum):
    """What the connection is doing."""

    STARTING = "starting"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    REFUSED = "refused"


@dataclass(slots=True)
class LinkState:
    """What the connection is doing now, for ``/healthz`` and logs.

    Attributes:
        phase: ``starting``, ``connecting``, ``connected``, ``disconnected`` or ``refused``.
        reason: why it is not connected (a reason name), else None.
        protocol: ``MQTT 5`` or ``MQTT 3.1.1`` once connected.
        since: when the phase began (epoch seconds).
        broker: the broker URL with the password masked.
    """

    phase: LinkPhase
    reason: str | None
    protocol: str | None
    since: float
    broker: str

    @property
    def connected(self) -> bool:
        """True while subscribed and receiving."""
        return self.phase == LinkPhase.CONNECTED


class Transport(Protocol):
    """One subscribed MQTT connection that keeps itself alive."""

    state: LinkState

    async def run(self) -> None:
        """Connect, subscribe and reconnect until :meth:`close`."""

    async def close(self) -> None:
        """Disconnect cleanly and stop reconnecting."""

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, expiry: int | None = None
    ) -> bool:
        """Publish at QoS 1; False when not connected."""

    def acknowledge(self, acks: Sequence[Any]) -> None:
        """Acknowledge QoS 1 messages by the ``ack`` handles the handler was given."""

    def pause_reading(self) -> None:
        """Stop reading from the broker (backpressure)."""

    def resume_reading(self) -> None:
        """Read from the broker again."""

    @property
    def unsent_acknowledgements(self) -> int:
        """PUBACKs of stored messages that lost connections could not send."""

    def add_topics(self, topics: Sequence[str]) -> None:
        """Subscribe to more topic filters, now if connected and on every reconnect."""
