"""What each firmware ``mqtthub simulate --profile`` emulates publishes (pure, no I/O).

Topics and payloads follow each project's documentation; the values come from
:mod:`mqtthub.simulation_values` (the same drifting BME280, light sensor, Wi-Fi RSSI and
supply voltage of an ESP8266 for every firmware). Nothing here reads the clock: the time
is passed in.

* ``mqtthub``: ``{prefix}/{id}/status|sensor|heartbeat`` with flat JSON (today's fleet).
* ``tasmota``: ``tele/{id}/LWT`` ``Online`` (retained; the will ``Offline``, retained),
  ``tele/{id}/SENSOR`` with nested JSON (``BME280``, ``BH1750``), ``TempUnit``,
  ``PressureUnit`` and ``Time`` (local time without an offset, in the zone given), and
  ``tele/{id}/STATE`` (``UptimeSec``, ``Vcc``, ``Wifi.RSSI``/``Wifi.Signal``, ``POWER``).
* ``esphome``: ``{id}/status`` ``online`` (retained; will ``offline``), one
  ``{id}/sensor/{name}/state`` per value, and ESPHome's default Home Assistant discovery
  configs (retained, abbreviated keys) that carry the units.
* ``homeassistant``: a JSON device announced by discovery: retained configs per value
  (name, ``unit_of_measurement``, ``device_class``, ``device``, ``availability_topic``,
  ``value_template``), JSON state on ``mqtthub-sim/{id}/state`` and ``.../system``,
  availability ``online`` / ``offline`` (the will).
* ``homie``: Homie 4: ``$homie``, ``$name``, ``$nodes``, nodes ``env`` and ``system`` with
  ``$properties``, each property's ``$name``, ``$datatype`` and ``$unit`` (all retained),
  ``$state`` ``init`` then ``ready`` (the will ``lost``; a clean stop ``disconnected``),
  retained property values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import NamedTuple

import orjson

from mqtthub import simulation_values as values

FIRMWARES = values.FIRMWARES
#: Units of the simulated values.
UNITS = {
    "temperature": "°C",
    "humidity": "%",
    "pressure": "hPa",
    "light": "lx",
    "rssi": "dBm",
    "voltage": "V",
    "uptime": "s",
}
#: Home Assistant device classes of the simulated values.
DEVICE_CLASSES = {
    "temperature": "temperature",
    "humidity": "humidity",
    "pressure": "pressure",
    "light": "illuminance",
    "rssi": "signal_strength",
    "voltage": "voltage",
    "uptime": "duration",
}
#: Values sent with sensor messages; rssi and uptime go with heartbeats.
SENSOR_VALUES = ("temperature", "humidity", "pressure", "light", "voltage")
HEARTBEAT_VALUES = ("rssi", "uptime")
HASS_BASE = "mqtthub-sim"


class Publish(NamedTuple):
    """One message to publish; ``kind`` names it in the run's counters."""

    topic: str
    payload: bytes
    retain: bool = False
    kind: str = "sensor"


@dataclass(frozen=True, slots=True)
class Firmware:
    """The messages of one firmware.

    Attributes:
        profile: one of :data:`FIRMWARES`.
        topic_prefix: mqtthub's topic prefix (``mqtthub`` only).
        homeassistant_prefix: the discovery prefix (``esphome``, ``homeassistant``).
        timezone: the zone Tasmota's ``Time`` is written in (its devices' local time).
    """

    profile: str = "mqtthub"
    topic_prefix: str = "devices"
    homeassistant_prefix: str = "homeassistant"
    timezone: tzinfo = UTC

    def __post_init__(self) -> None:
        """Reject an unknown profile.

        Raises:
            ValueError: the message lists the known ones.
        """
        if self.profile not in FIRMWARES:
            raise ValueError(f"profile: one of {', '.join(FIRMWARES)}")

    def will(self, device_id: str) -> Publish:
        """The last will the device registers when it connects."""
        topic, payload = {
            "mqtthub": (f"{self.topic_prefix}/{device_id}/status", "offline"),
            "tasmota": (f"tele/{device_id}/LWT", "Offline"),
            "esphome": (f"{device_id}/status", "offline"),
            "homeassistant": (f"{HASS_BASE}/{device_id}/availability", "offline"),
            "homie": (f"homie/{device_id}/$state", "lost"),
        }[self.profile]
        return Publish(topic, payload.encode(), self.profile != "mqtthub", "status")

    def birth(self, device_id: str) -> list[Publish]:
        """What the device publishes right after connecting (announcements, ``online``)."""
        if self.profile == "homie":
            return _homie_birth(device_id)
        configs = []
        if self.profile in ("esphome", "homeassistant"):
            configs = [self._discovery(device_id, name) for name in UNITS]
        online = self.will(device_id)
        payload = online.payload.decode().replace("offline", "online").replace("Off", "On")
        return [*configs, online._replace(payload=payload.encode())]

    def sensor(
        self, device_id: str, current: dict[str, float], uptime: int, now: float
    ) -> list[Publish]:
        """One round of sensor readings (``current``: the drifting values)."""
        if self.profile == "mqtthub":
            payload = values.sensor_payload(device_id, current, uptime)
            return [Publish(f"{self.topic_prefix}/{device_id}/sensor", payload)]
        shown = values.rounded({name: current[name] for name in SENSOR_VALUES})
        if self.profile == "tasmota":
            return [Publish(f"tele/{device_id}/SENSOR", self._tasmota_sensor(shown, now))]
        return self._per_value(device_id, shown, "sensor", "state")

    def heartbeat(
        self, device_id: str, current: dict[str, float], uptime: int, now: float
    ) -> list[Publish]:
        """The periodic sign of life, carrying uptime and Wi-Fi signal."""
        rssi = round(current["rssi"])
        if self.profile == "mqtthub":
            payload = values.heartbeat_payload(device_id, uptime, rssi)
            topic = f"{self.topic_prefix}/{device_id}/heartbeat"
            return [Publish(topic, payload, kind="heartbeat")]
        if self.profile == "tasmota":
            state = _tasmota_state(rssi, uptime, current["voltage"], self._time(now))
            return [Publish(f"tele/{device_id}/STATE", state, kind="heartbeat")]
        return self._per_value(device_id, {"rssi": rssi, "uptime": uptime}, "heartbeat", "system")

    def goodbye(self, device_id: str, now: float) -> list[Publish]:
        """What a well-behaved device publishes before a clean disconnect."""
        if self.profile == "mqtthub":
            payload = values.goodbye_payload(device_id, now)
            return [Publish(f"{self.topic_prefix}/{device_id}/status", payload, kind="status")]
        if self.profile == "homie":
            return [Publish(f"homie/{device_id}/$state", b"disconnected", True, "status")]
        return [self.will(device_id)]  # Tasmota, ESPHome, availability: "offline" themselves

    def _per_value(
        self, device_id: str, shown: dict[str, float | int], kind: str, group: str
    ) -> list[Publish]:
        """ESPHome: a state topic per value; Home Assistant: one JSON state per group;
        Homie: a retained property value each."""
        if self.profile == "esphome":
            return [
                Publish(f"{device_id}/sensor/{name}/state", _text(value), kind=kind)
                for name, value in shown.items()
            ]
        if self.profile == "homeassistant":
            topic = f"{HASS_BASE}/{device_id}/{'system' if group == 'system' else 'state'}"
            return [Publish(topic, orjson.dumps(shown), kind=kind)]
        node = "system" if group == "system" else "env"
        return [
            Publish(f"homie/{device_id}/{node}/{name}", _text(value), True, kind)
            for name, value in shown.items()
        ]

    def _discovery(self, device_id: str, name: str) -> Publish:
        topic = f"{self.homeassistant_prefix}/sensor/{device_id}/{name}/config"
        title = f"{device_id} {name}"
        if self.profile == "esphome":  # ESPHome's own discovery: abbreviated keys
            config: dict[str, object] = {
                "name": title,
                "stat_t": f"{device_id}/sensor/{name}/state",
                "avty_t": f"{device_id}/status",
                "unit_of_meas": UNITS[name],
                "dev_cla": DEVICE_CLASSES[name],
                "uniq_id": f"{device_id}{name}",
                "dev": {"ids": device_id, "name": device_id, "sw": "esphome", "mdl": "d1_mini"},
            }
        else:
            group = "system" if name in HEARTBEAT_VALUES else "state"
            config = {
                "name": title,
                "state_topic": f"{HASS_BASE}/{device_id}/{group}",
                "value_template": f"{{{{ value_json.{name} }}}}",
                "unit_of_measurement": UNITS[name],
                "device_class": DEVICE_CLASSES[name],
                "availability_topic": f"{HASS_BASE}/{device_id}/availability",
                "unique_id": f"{device_id}_{name}",
                "device": {
                    "identifiers": [device_id],
                    "name": device_id,
                    "manufacturer": "mqtthub",
                    "model": "simulated ESP8266",
                },
            }
        return Publish(topic, orjson.dumps(config), True, "config")

    def _tasmota_sensor(self, shown: dict[str, float | int], now: float) -> bytes:
        document = {
            "Time": self._time(now),
            "BME280": {
                "Temperature": shown["temperature"],
                "Humidity": shown["humidity"],
                "Pressure": shown["pressure"],
            },
            "BH1750": {"Illuminance": shown["light"]},
            "PressureUnit": "hPa",
            "TempUnit": "C",
        }
        return orjson.dumps(document)

    def _time(self, now: float) -> str:
        """Tasmota's ``Time``: local time of the devices' zone, without an offset."""
        local = datetime.fromtimestamp(now, self.timezone).replace(tzinfo=None)
        return local.isoformat(timespec="seconds")


def _tasmota_state(rssi: int, uptime: int, voltage: float, time: str) -> bytes:
    days, rest = divmod(uptime, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    quality = max(0, min(100, 2 * (rssi + 100)))  # Tasmota's RSSI: link quality in %
    document = {
        "Time": time,
        "Uptime": f"{days}T{hours:02d}:{minutes:02d}:{seconds:02d}",
        "UptimeSec": uptime,
        "Vcc": round(voltage, 3),
        "Heap": 25,
        "SleepMode": "Dynamic",
        "Sleep": 50,
        "LoadAvg": 19,
        "MqttCount": 1,
        "POWER": "ON",
        "Wifi": {
            "AP": 1,
            "SSId": "sim",
            "Channel": 6,
            "Mode": "11n",
            "RSSI": quality,
            "Signal": rssi,
            "LinkCount": 1,
            "Downtime": "0T00:00:03",
        },
    }
    return orjson.dumps(document)


def _homie_birth(device_id: str) -> list[Publish]:
    base = f"homie/{device_id}"
    nodes = {"env": ("Environment", SENSOR_VALUES), "system": ("System", HEARTBEAT_VALUES)}
    pairs = [
        ("$homie", "4.0.0"),
        ("$name", device_id),
        ("$state", "init"),
        ("$nodes", ",".join(nodes)),
    ]
    for node, (title, names) in nodes.items():
        pairs += [(f"{node}/$name", title), (f"{node}/$properties", ",".join(names))]
        for name in names:
            datatype = "integer" if name in HEARTBEAT_VALUES else "float"
            pairs += [
                (f"{node}/{name}/$name", name.capitalize()),
                (f"{node}/{name}/$datatype", datatype),
                (f"{node}/{name}/$unit", UNITS[name]),
            ]
    announced = [Publish(f"{base}/{topic}", text.encode(), True, "config") for topic, text in pairs]
    return [*announced, Publish(f"{base}/$state", b"ready", True, "status")]


def _text(value: float | int) -> bytes:
    return str(value).encode()
