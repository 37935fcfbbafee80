"""What every firmware profile is: subscriptions, and a pure parser from a message to a result.

A profile understands one firmware's topics and payloads (Tasmota, ESPHome, Homie, Home
Assistant discovery, a user's mapping file, or mqtthub's own convention) and turns each
message into the same :class:`~mqtthub.messages.Accepted` (a device id, a kind, readings,
a status) or :class:`~mqtthub.messages.Rejected` (a dead letter with its reason), plus
what it learned about the metrics (units, display names). Parsers are pure: no I/O, no
clock (the receive time is passed in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from mqtthub.messages import Accepted, Rejected


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """What a firmware says about a metric besides its values (None: not said)."""

    unit: str | None = None
    name: str | None = None
    device_class: str | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A profile's reading of one message: the result, and metric metadata it carried.

    Attributes:
        result: the message to store (:class:`~mqtthub.messages.Accepted`), the dead
            letter (:class:`~mqtthub.messages.Rejected`), or None when the topic is the
            profile's own but the message has nothing to store: metadata only (Homie's
            ``$unit``, ``$name``) or a message the profile deliberately ignores (Homie's
            other ``$`` attributes). None is neither stored nor dead-lettered.
        info: metadata per metric name (unit, display name, device class), for the
            result's device, or for ``device_id`` when there is no result.
        device_id: the device ``info`` describes when ``result`` is None (else None:
            the result carries its device id).
    """

    result: Accepted | Rejected | None
    info: Mapping[str, MetricInfo] = field(default_factory=dict)
    device_id: str | None = None


class Profile(Protocol):
    """One firmware convention."""

    name: str

    def subscriptions(self) -> tuple[str, ...]:
        """The topic filters this profile needs."""
        ...

    def decode(
        self, topic: str, payload: bytes, *, received_at: float, max_payload: int
    ) -> Decoded | None:
        """The message read by this profile, or None when the topic is not one of its own."""
        ...
