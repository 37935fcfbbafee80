"""Tasmota's telemetry topics (pure, no I/O).

Covered, with Tasmota's default FullTopic ``%prefix%/%topic%/``:

* ``tele/<topic>/SENSOR``: sensor readings (``Kind.SENSOR``); a SENSOR message without a
  number is a ``no_readings`` dead letter.
* ``tele/<topic>/STATE``: the periodic state report, a heartbeat (``Kind.HEARTBEAT``) whose
  numbers become readings (``UptimeSec``, ``Heap``, ``POWER``, ``Wifi.RSSI``...).
* ``tele/<topic>/LWT``: ``Online`` / ``Offline`` presence (``Kind.STATUS``, untimed:
  Tasmota's ``Offline`` is its last will, so presence records it as ``last_will``).

Not covered: ``stat/<topic>/...`` (command results, ``STATUS8``/``STATUS10``), ``tele``
topics other than these three, and a FullTopic other than the default.

The device id is ``<topic>``. Numbers, booleans and ``ON``/``OFF`` are flattened with
dotted names (``AM2301.Temperature``, ``ENERGY.Power``, ``Wifi.RSSI``; the items of an
array are numbered: ``ENERGY.Power.0``); other strings are skipped. ``Time`` is the
timestamp: Tasmota sends local time without an offset (``2024-01-31T12:00:00``), read in
the profile's ``timezone`` (a time that carries an offset, as with SetOption52, keeps it);
without ``Time``, or with the 1970 time of a clock NTP has not set yet, the receive time
is used. Units come with the readings as metric info:
``TempUnit`` for temperatures and dew points, ``PressureUnit`` for pressures, ``%`` for
humidity, and the usual ENERGY fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from typing import Any

from mqtthub.messages import Accepted, Kind, Reason, Status
from mqtthub.profiles.base import Decoded, MetricInfo
from mqtthub.profiles.flatten import (
    PayloadError,
    decode_text,
    flatten,
    guarded,
    load_object,
    local_iso_ts,
    metric_info,
)

_KINDS = {"SENSOR": Kind.SENSOR, "STATE": Kind.HEARTBEAT, "LWT": Kind.STATUS}
_TEMPERATURES = {"C": "°C", "F": "°F"}
# Units of fields whatever object holds them (the last name; array indexes dropped).
_FIELD_UNITS = {"Humidity": "%"}
# Units of fields by full name.
_NAMED_UNITS = {
    "ENERGY.Power": "W",
    "ENERGY.ApparentPower": "VA",
    "ENERGY.ReactivePower": "var",
    "ENERGY.Voltage": "V",
    "ENERGY.Current": "A",
    "ENERGY.Frequency": "Hz",
    "ENERGY.Total": "kWh",
    "ENERGY.Today": "kWh",
    "ENERGY.Yesterday": "kWh",
    "ENERGY.Period": "Wh",
    "Wifi.RSSI": "%",
    "Wifi.Signal": "dBm",
    "UptimeSec": "s",
}


class TasmotaProfile:
    """Tasmota's ``tele/<topic>/SENSOR``, ``STATE`` and ``LWT`` (see the module docstring).

    Args:
        timezone: the zone Tasmota's ``Time`` (local time without an offset) is read in:
            the devices' configured time zone.
    """

    name = "tasmota"

    def __init__(self, timezone: tzinfo) -> None:
        """Read ``Time`` values without an offset in ``timezone``."""
        self.timezone = timezone

    def subscriptions(self) -> tuple[str, ...]:
        """The three telemetry topics of every device."""
        return ("tele/+/SENSOR", "tele/+/STATE", "tele/+/LWT")

    def decode(
        self, topic: str, payload: bytes, *, received_at: float, max_payload: int
    ) -> Decoded | None:
        """The message as readings, a heartbeat or presence; None for other topics."""
        levels = topic.split("/")
        if len(levels) != 3 or levels[0] != "tele" or levels[2] not in _KINDS:
            return None
        device_id, kind = levels[1], _KINDS[levels[2]]
        return guarded(
            lambda: (
                Decoded(_lwt(device_id, payload, received_at))
                if kind is Kind.STATUS
                else self._telemetry(device_id, kind, payload, received_at)
            ),
            device_id=device_id,
            kind=kind,
            payload=payload,
            max_payload=max_payload,
        )

    def _telemetry(self, device_id: str, kind: Kind, payload: bytes, received_at: float) -> Decoded:
        document = load_object(payload)
        timed = "Time" in document and not _unsynced(document["Time"])
        ts = (
            local_iso_ts(document["Time"], timezone=self.timezone, received_at=received_at)
            if timed
            else received_at
        )
        metrics = flatten(document)
        if kind is Kind.SENSOR and not metrics:
            raise PayloadError(Reason.NO_READINGS, "no numeric, boolean or ON/OFF values")
        samples = ((device_id, ts, metrics),) if metrics else ()
        accepted = Accepted(device_id, kind, ts, timed=timed, samples=samples)
        return Decoded(accepted, _units(document, metrics))


def _unsynced(time: object) -> bool:
    """A ``Time`` of 1970: Tasmota sends that until NTP has set its clock (the receive
    time is used then, rather than dead-lettering every reading of a fresh boot)."""
    return isinstance(time, str) and time.startswith("1970-")


def _lwt(device_id: str, payload: bytes, received_at: float) -> Accepted:
    text = decode_text(payload).lower()
    if text not in ("online", "offline"):
        raise PayloadError(
            Reason.INVALID_STATUS, f"LWT must be 'Online' or 'Offline', got {text!r:.80}"
        )
    return Accepted(device_id, Kind.STATUS, received_at, status=Status(text))


def _units(document: dict[str, Any], metrics: Iterable[str]) -> dict[str, MetricInfo]:
    """The units Tasmota implies for ``metrics`` (those it says nothing about are left out)."""
    temp_unit, pressure = document.get("TempUnit"), document.get("PressureUnit")
    temperature = _TEMPERATURES.get(temp_unit) if isinstance(temp_unit, str) else None
    pressure = pressure if isinstance(pressure, str) else None
    by_field = {
        **_FIELD_UNITS,
        "Temperature": temperature,
        "DewPoint": temperature,
        "Pressure": pressure,
        "SeaPressure": pressure,
    }
    info = {}
    for metric in metrics:
        levels = metric.split(".")
        while len(levels) > 1 and levels[-1].isdigit():
            levels.pop()  # ENERGY.Power.0 is an ENERGY.Power
        unit = _NAMED_UNITS.get(".".join(levels)) or by_field.get(levels[-1])
        if unit:
            info[metric] = metric_info(unit=unit)
    return info
