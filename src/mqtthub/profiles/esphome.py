"""ESPHome's MQTT topics (pure, no I/O).

Covered, with ESPHome's default topic prefix (the node name, one topic level):

* ``<node>/status``: the birth ``online`` and the will ``offline`` (presence, untimed: an
  ``offline`` is recorded as ``last_will``).
* ``<node>/sensor/<name>/state``: a number, the reading ``<name>``; ``nan`` (a sensor
  without a state) is a ``no_readings`` dead letter, other text an ``invalid_type`` one.
* ``<node>/binary_sensor/<name>/state`` and ``<node>/switch/<name>/state``: ``ON``/``OFF``,
  the reading ``<name>`` as 1.0/0.0.
* ``<node>/light/<name>/state``: ESPHome's JSON light state, flattened under ``<name>``
  (``<name>.state`` 1.0/0.0, ``<name>.brightness``, ``<name>.color.r``...).

Not covered: text sensors and other components, command topics, a topic prefix of more
than one level, and Home Assistant discovery (its own profile). The device id is
``<node>``; readings carry no device time, so their time is the receive time.
"""

from __future__ import annotations

from mqtthub.messages import Accepted, Kind, Reason, Status
from mqtthub.profiles.base import Decoded
from mqtthub.profiles.flatten import (
    PayloadError,
    check_metric_name,
    decode_text,
    flatten,
    guarded,
    load_object,
    number_value,
)

_SWITCHES = ("binary_sensor", "switch")
_COMPONENTS = ("sensor", *_SWITCHES, "light")
_ON_OFF = {"ON": 1.0, "OFF": 0.0}


class EsphomeProfile:
    """ESPHome's status and state topics (see the module docstring)."""

    name = "esphome"

    def subscriptions(self) -> tuple[str, ...]:
        """``+/status`` (two levels: no clash with mqtthub's ``devices/+/status``) and one
        ``+/<component>/+/state`` per component read."""
        return ("+/status", *(f"+/{component}/+/state" for component in _COMPONENTS))

    def decode(
        self, topic: str, payload: bytes, *, received_at: float, max_payload: int
    ) -> Decoded | None:
        """The message as presence or one reading; None for other topics."""
        levels = topic.split("/")
        if len(levels) == 2 and levels[1] == "status":
            kind = Kind.STATUS
        elif len(levels) == 4 and levels[1] in _COMPONENTS and levels[3] == "state":
            kind = Kind.SENSOR
        else:
            return None
        device_id = levels[0]
        return guarded(
            lambda: Decoded(
                _status(device_id, payload, received_at)
                if kind is Kind.STATUS
                else _reading(device_id, levels[1], levels[2], payload, received_at)
            ),
            device_id=device_id,
            kind=kind,
            payload=payload,
            max_payload=max_payload,
        )


def _status(device_id: str, payload: bytes, received_at: float) -> Accepted:
    text = decode_text(payload)
    if text not in ("online", "offline"):
        raise PayloadError(
            Reason.INVALID_STATUS, f"status must be 'online' or 'offline', got {text!r:.80}"
        )
    return Accepted(device_id, Kind.STATUS, received_at, status=Status(text))


def _reading(
    device_id: str, component: str, name: str, payload: bytes, received_at: float
) -> Accepted:
    sample = (device_id, received_at, _state(component, name, payload))
    return Accepted(device_id, Kind.SENSOR, received_at, samples=(sample,))


def _state(component: str, name: str, payload: bytes) -> dict[str, float]:
    """The readings of one component's state message."""
    check_metric_name(name)
    if component == "light":
        metrics = flatten(load_object(payload), prefix=name)
        if not metrics:
            raise PayloadError(Reason.NO_READINGS, "no numeric or ON/OFF values in the state")
        return metrics
    text = decode_text(payload)
    if component == "sensor":
        value = number_value(text)
        if value is None:
            raise PayloadError(Reason.INVALID_TYPE, f"sensor state must be a number: {text!r:.80}")
        return {name: value}
    if text not in _ON_OFF:
        raise PayloadError(
            Reason.INVALID_TYPE, f"{component} state must be ON or OFF: {text!r:.80}"
        )
    return {name: _ON_OFF[text]}
