"""The Homie convention's topics (pure, no I/O).

Covered, below the root topic (``homie``):

* ``<root>/<device>/$state``, presence (``Kind.STATUS``):

  ============  ===========================================================
  ``ready``     online
  ``init``      online (connected, still publishing its description)
  ``alert``     online (connected; the alert itself is not recorded)
  ``lost``      offline, untimed: the device's last will (``last_will``)
  ``disconnected``, ``sleeping``
                offline, said by the device itself: marked timed (at the receive
                time) so that presence records ``status_message``, not ``last_will``
  ============  ===========================================================

  Any other value is an ``invalid_status`` dead letter.
* ``<root>/<device>/<node>/<property>``: the reading ``<node>.<property>``
  (``Kind.SENSOR``, at the receive time) from a number, ``true``/``false`` or
  ``ON``/``OFF``. Other values (Homie's string, enum, color and datetime properties) have
  nothing to store: a :class:`Decoded` without a result, not a dead letter.
* ``<root>/<device>/<node>/<property>/$unit`` and ``/$name``: the metric's unit and display
  name, as :class:`Decoded` info without a result.

Every other topic below the root (the device's and nodes' other ``$`` attributes, Homie 3's
``$stats``, ``/set`` commands, ``$broadcast``) and an empty payload (a retained value
being cleared) are the profile's own but have nothing to store: no result, no dead letter.
"""

from __future__ import annotations

from mqtthub.messages import Accepted, Kind, Reason, Status
from mqtthub.profiles.base import Decoded, MetricInfo
from mqtthub.profiles.flatten import (
    PayloadError,
    check_metric_name,
    decode_text,
    guarded,
    metric_info,
    text_value,
)

#: $state -> (status, said by the device itself).
_STATES = {
    "ready": (Status.ONLINE, False),
    "init": (Status.ONLINE, False),
    "alert": (Status.ONLINE, False),
    "lost": (Status.OFFLINE, False),
    "disconnected": (Status.OFFLINE, True),
    "sleeping": (Status.OFFLINE, True),
}


class HomieProfile:
    """Homie devices below ``root`` (see the module docstring).

    Args:
        root: the Homie root topic, one or more levels (Homie's default: ``homie``).
    """

    name = "homie"

    def __init__(self, root: str = "homie") -> None:
        """Read the devices below ``root``."""
        self.root = root
        self._root_levels = root.split("/")

    def subscriptions(self) -> tuple[str, ...]:
        """``$state``, property values, and their ``$unit`` and ``$name``."""
        root = self.root
        return (
            f"{root}/+/$state",
            f"{root}/+/+/+",
            f"{root}/+/+/+/$unit",
            f"{root}/+/+/+/$name",
        )

    def decode(
        self, topic: str, payload: bytes, *, received_at: float, max_payload: int
    ) -> Decoded | None:
        """The message as presence, a reading or metric info; None outside the root."""
        levels = topic.split("/")
        depth = len(self._root_levels)
        if len(levels) < depth + 2 or levels[:depth] != self._root_levels:
            return None
        device_id, rest = levels[depth], levels[depth + 1 :]
        if device_id.startswith("$"):
            return Decoded(None)  # $broadcast: for devices, not from one
        kind = Kind.STATUS if rest == ["$state"] else _kind(rest)
        return guarded(
            lambda: _read(device_id, rest, kind, payload, received_at),
            device_id=device_id,
            kind=kind,
            payload=payload,
            max_payload=max_payload,
        )


def _read(
    device_id: str, rest: list[str], kind: Kind | None, payload: bytes, received_at: float
) -> Decoded:
    """One message of a device, ``rest`` the topic's levels after the device id."""
    if kind is None or not payload:
        return Decoded(None, device_id=device_id)
    text = decode_text(payload)
    if kind is Kind.STATUS:
        return Decoded(_state(device_id, text, received_at))
    metric = check_metric_name(f"{rest[0]}.{rest[1]}")
    if len(rest) == 3:
        return Decoded(None, _info(metric, rest[2], text), device_id)
    value = text_value(text)
    if value is None:
        return Decoded(None, device_id=device_id)
    sample = (device_id, received_at, {metric: value})
    return Decoded(Accepted(device_id, Kind.SENSOR, received_at, samples=(sample,)))


def _kind(rest: list[str]) -> Kind | None:
    """SENSOR for a property value or its ``$unit``/``$name``; None for anything else."""
    if len(rest) not in (2, 3) or rest[0].startswith("$") or rest[1].startswith("$"):
        return None
    if len(rest) == 3 and rest[2] not in ("$unit", "$name"):
        return None
    return Kind.SENSOR


def _state(device_id: str, text: str, received_at: float) -> Accepted:
    state = _STATES.get(text)
    if state is None:
        raise PayloadError(
            Reason.INVALID_STATUS,
            f"$state must be one of {', '.join(_STATES)}, got {text!r:.80}",
        )
    status, said = state
    return Accepted(device_id, Kind.STATUS, received_at, status=status, timed=said)


def _info(metric: str, attribute: str, text: str) -> dict[str, MetricInfo]:
    if attribute == "$unit":
        return {metric: metric_info(unit=text)}
    return {metric: metric_info(name=text)}
