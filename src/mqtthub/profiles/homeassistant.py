"""Home Assistant MQTT discovery: follow the configs firmware announces to its state topics.

ESPHome, Zigbee2MQTT, OpenMQTTGateway, Tasmota (with its discovery option) and others
publish a retained JSON config per entity on
``homeassistant/<component>/[<node_id>/]<object_id>/config``. For ``sensor`` and
``binary_sensor`` entities this profile remembers where the values arrive
(``state_topic``, with a ``value_template``) and where the device's availability is
published (``availability_topic`` / ``availability``), with the unit, display name and
device class; the service then subscribes to those topics.

* Device id: the ``node_id`` of the config topic, else the config's first device
  identifier, else the ``object_id``; metric name: the ``object_id``.
* ``value_template``: the common forms only, no general Jinja: ``{{ value }}``,
  ``{{ value_json.a.b }}`` / ``{{ value_json['a'] }}`` / ``{{ value_json.list[0] }}``,
  each optionally followed by ``| float``, ``| int``, ``| round(n)``. A config with any
  other template is a dead letter saying so.
* Abbreviated keys (``stat_t``, ``unit_of_meas``, ``avty_t``, ``~`` as the base topic, …)
  are expanded.
* Ghosts: a device deleted in its bridge leaves its retained config behind until the
  bridge clears it with an empty retained payload. A config alone therefore registers
  nothing: the device appears when a value or an availability message arrives, and an
  empty config forgets the entity.
* An availability topic shared by several devices (a bridge's own state) says nothing
  about each device and is not used for presence.
* Values are timed by their receive time (state payloads carry no agreed timestamp).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from mqtthub.messages import (
    Accepted,
    Kind,
    Reason,
    Rejected,
    Status,
    is_metric_name,
    valid_device_id,
)
from mqtthub.profiles.base import Decoded, MetricInfo

COMPONENTS = frozenset({"sensor", "binary_sensor"})
_ABBREVIATIONS = {
    "stat_t": "state_topic",
    "avty_t": "availability_topic",
    "avty": "availability",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
    "dev_cla": "device_class",
    "uniq_id": "unique_id",
    "obj_id": "object_id",
    "dev": "device",
    "pl_on": "payload_on",
    "pl_off": "payload_off",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "t": "topic",
    "ids": "identifiers",
}
_TEMPLATE = re.compile(
    r"\{\{\s*(?P<source>value_json|value)(?P<path>(?:\.[A-Za-z_]\w*|\[\s*(?:'[^']*'|\"[^\"]*\"|\d+)\s*\])*)"
    r"\s*(?P<filters>(?:\|\s*(?:float|int|round\(\s*\d+\s*\))\s*)*)\}\}"
)
_PATH_PART = re.compile(r"\.([A-Za-z_]\w*)|\[\s*(?:'([^']*)'|\"([^\"]*)\"|(\d+))\s*\]")
_FILTER = re.compile(r"float|int|round\(\s*(\d+)\s*\)")


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled ``value_template`` of a supported form."""

    from_json: bool
    path: tuple[str | int, ...]
    filters: tuple[Callable[[float], float], ...]

    def extract(self, text: str, document: Any) -> Any:
        """The templated value of one state payload (``text``; ``document``: its JSON,
        decoded once), before the filters; None when the path does not exist."""
        value: Any = document if self.from_json else text
        for key in self.path:
            if isinstance(key, int):
                if not isinstance(value, list) or key >= len(value):
                    return None
            elif not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    def number(self, value: Any) -> float | None:
        """``value`` as a number through the filters, or None when it is not one."""
        number = _number(value)
        if number is None:
            return None
        for apply in self.filters:
            number = apply(number)
        return number


def compile_template(text: str | None) -> Template | None:
    """The template ``text`` (None: the plain value), or None when it is not supported."""
    if text is None:
        return Template(False, (), ())
    match = _TEMPLATE.fullmatch(text.strip())
    if match is None:
        return None
    path: list[str | int] = []
    for name, quoted, double, index in _PATH_PART.findall(match["path"]):
        path.append(int(index) if index else name or quoted or double)
    filters: list[Callable[[float], float]] = []
    for found in _FILTER.finditer(match["filters"]):
        if found[0] == "int":
            filters.append(lambda number: float(int(number)))
        elif found[1]:
            filters.append(_rounder(int(found[1])))
        # | float: values are floats already
    return Template(match["source"] == "value_json", tuple(path), tuple(filters))


def _rounder(digits: int) -> Callable[[float], float]:
    return lambda number: round(number, digits)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class Entity:
    """One discovered sensor: where its values arrive and how to read them."""

    device_id: str
    metric: str
    component: str
    state_topic: str
    template: Template
    payload_on: str
    payload_off: str
    info: MetricInfo


@dataclass(frozen=True, slots=True)
class Availability:
    """Where and how a device announces that it is online or offline."""

    device_id: str
    online: str
    offline: str


class HomeAssistantProfile:
    """Discovery configs and the state and availability topics they name (keeps state)."""

    name = "homeassistant"
    reads_retained_configs = True

    def __init__(self, prefix: str = "homeassistant") -> None:
        """Read discovery configs under ``prefix``."""
        self.prefix = prefix
        self._entities: dict[str, Entity] = {}  # by config topic
        self._availability: dict[str, tuple[str, Availability]] = {}  # by config topic
        self._by_state: dict[str, list[Entity]] = {}  # by state topic
        self._by_availability: dict[str, list[Availability]] = {}  # by availability topic
        self._new_topics: list[str] = []

    def subscriptions(self) -> tuple[str, ...]:
        """The discovery configs, with and without a node id."""
        return (f"{self.prefix}/+/+/config", f"{self.prefix}/+/+/+/config")

    def followed_topics(self) -> tuple[str, ...]:
        """Every state and availability topic the known configs name."""
        return (*self._by_state, *(t for t in self._by_availability if t not in self._by_state))

    def take_new_topics(self) -> list[str]:
        """Topics named by configs since the last call (to subscribe to)."""
        new, self._new_topics = self._new_topics, []
        return new

    def decode(
        self, topic: str, payload: bytes, *, received_at: float, max_payload: int
    ) -> Decoded | None:
        """A config, a state or an availability message; None for any other topic."""
        if len(payload) > max_payload:
            if self._is_config(topic) or topic in self._by_state or topic in self._by_availability:
                return Decoded(
                    Rejected(
                        Reason.PAYLOAD_TOO_LARGE,
                        f"payload is {len(payload)} bytes, limit is {max_payload} "
                        "(MQTTHUB_MAX_PAYLOAD)",
                    )
                )
            return None
        if self._is_config(topic):
            return self._config(topic, payload)
        entities = self._by_state.get(topic)
        if entities:
            return self._state(entities, payload, received_at)
        availability = self._by_availability.get(topic)
        if availability:
            return self._available(availability, payload, received_at)
        return None

    def _is_config(self, topic: str) -> bool:
        levels = topic.split("/")
        return levels[0] == self.prefix and levels[-1] == "config" and len(levels) in (4, 5)

    def _config(self, topic: str, payload: bytes) -> Decoded:
        levels = topic.split("/")
        component, object_id = levels[1], levels[-2]
        node_id = levels[2] if len(levels) == 5 else None
        if not payload.strip():
            self._entities.pop(topic, None)
            self._availability.pop(topic, None)
            self._index()
            return Decoded(None)
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return Decoded(Rejected(Reason.INVALID_JSON, f"discovery config: {exc}"))
        if not isinstance(document, dict):
            return Decoded(Rejected(Reason.INVALID_TYPE, "discovery config is not a JSON object"))
        config = _expanded(document)
        if component not in COMPONENTS:
            return Decoded(None)  # switches, lights, ...: nothing to measure
        device_id = node_id or _first_identifier(config) or object_id
        metric = str(config.get("object_id") or object_id)
        if not valid_device_id(device_id):
            return Decoded(
                Rejected(Reason.BAD_DEVICE_ID, f"discovery config: device id {device_id!r}")
            )
        if not is_metric_name(metric):
            return Decoded(
                Rejected(Reason.INVALID_METRIC_NAME, f"discovery config: metric {metric!r}")
            )
        state_topic = config.get("state_topic")
        if not isinstance(state_topic, str) or not _publishable(state_topic):
            return Decoded(
                Rejected(Reason.INVALID_TYPE, "discovery config without a usable state_topic")
            )
        raw_template = config.get("value_template")
        template = compile_template(raw_template if isinstance(raw_template, str) else None)
        if template is None:
            return Decoded(
                Rejected(
                    Reason.INVALID_TYPE,
                    f"value_template {str(raw_template)[:200]!r} is not supported: use "
                    "{{ value }} or {{ value_json.key }} (optionally | float, | int, | round(n))",
                )
            )
        entity = Entity(
            device_id,
            metric,
            component,
            state_topic,
            template,
            str(config.get("payload_on", "ON")),
            str(config.get("payload_off", "OFF")),
            MetricInfo(
                _text(config.get("unit_of_measurement"), 32),
                _text(config.get("name"), 128),
                _text(config.get("device_class"), 64),
            ),
        )
        known = set(self.followed_topics())
        self._entities[topic] = entity
        availability = _availability(config, device_id)
        if availability is not None:
            self._availability[topic] = availability
        else:
            self._availability.pop(topic, None)
        self._index()
        self._new_topics += [t for t in self.followed_topics() if t not in known]
        return Decoded(None)

    def _index(self) -> None:
        """Rebuild the lookups by state and availability topic (configs change rarely)."""
        self._by_state = {}
        for entity in self._entities.values():
            self._by_state.setdefault(entity.state_topic, []).append(entity)
        self._by_availability = {}
        for availability_topic, item in self._availability.values():
            self._by_availability.setdefault(availability_topic, []).append(item)

    def _state(self, entities: list[Entity], payload: bytes, received_at: float) -> Decoded:
        device_id = entities[0].device_id
        document: Any = None
        if any(e.template.from_json for e in entities):
            try:
                document = orjson.loads(payload)
            except orjson.JSONDecodeError:
                document = None
        readings: list[tuple[str, float, float]] = []
        info: dict[str, MetricInfo] = {}
        text = payload.decode("utf-8", "replace").strip()
        for entity in entities:
            if entity.device_id != device_id:
                continue  # one state topic for several devices: the first device's only
            raw = entity.template.extract(text, document)
            value = _binary(raw, entity) if entity.component == "binary_sensor" else None
            if value is None:
                value = entity.template.number(raw)
            if value is not None:
                readings.append((entity.metric, value, received_at))
                info[entity.metric] = entity.info
        if not readings:
            return Decoded(
                Rejected(
                    Reason.NO_READINGS,
                    "the state payload holds no number for the discovered entities",
                    device_id,
                    Kind.SENSOR,
                )
            )
        return Decoded(Accepted(device_id, Kind.SENSOR, received_at, readings), info)

    def _available(
        self, items: list[Availability], payload: bytes, received_at: float
    ) -> Decoded | None:
        devices = {item.device_id for item in items}
        if len(devices) > 1:
            return Decoded(None)  # a bridge's own availability: not each device's
        item = items[0]
        text = payload.decode("utf-8", "replace").strip()
        if text == item.online:
            status = Status.ONLINE
        elif text == item.offline:
            status = Status.OFFLINE
        else:
            return Decoded(
                Rejected(
                    Reason.INVALID_STATUS,
                    f"availability payload {text[:50]!r} is neither {item.online!r} "
                    f"nor {item.offline!r}",
                    item.device_id,
                    Kind.STATUS,
                )
            )
        return Decoded(Accepted(item.device_id, Kind.STATUS, received_at, status=status))


def _binary(value: Any, entity: Entity) -> float | None:
    """A binary sensor's ``payload_on`` / ``payload_off`` as 1 / 0."""
    if value == entity.payload_on:
        return 1.0
    if value == entity.payload_off:
        return 0.0
    return None


def _expanded(document: dict[str, Any]) -> dict[str, Any]:
    """Abbreviated keys spelt out, and ``~`` replaced by the base topic in topics."""
    config = {_ABBREVIATIONS.get(key, key): value for key, value in document.items()}
    base = config.get("~")
    if isinstance(base, str):
        for key, value in config.items():
            if key.endswith("_topic") and isinstance(value, str):
                config[key] = _based(value, base)
        if isinstance(config.get("availability"), list):
            config["availability"] = [
                {
                    **item,
                    "topic": _based(str(item.get("topic", item.get("t", ""))), base),
                }
                for item in config["availability"]
                if isinstance(item, dict)
            ]
    return config


def _based(topic: str, base: str) -> str:
    if topic.startswith("~"):
        return base + topic[1:]
    if topic.endswith("~"):
        return topic[:-1] + base
    return topic


def _first_identifier(config: dict[str, Any]) -> str | None:
    device = config.get("device")
    if not isinstance(device, dict):
        return None
    identifiers = device.get("identifiers", device.get("ids"))
    if isinstance(identifiers, list) and identifiers:
        return str(identifiers[0])
    if isinstance(identifiers, str):
        return identifiers
    return None


def _availability(config: dict[str, Any], device_id: str) -> tuple[str, Availability] | None:
    online = str(config.get("payload_available", "online"))
    offline = str(config.get("payload_not_available", "offline"))
    topic = config.get("availability_topic")
    items = config.get("availability")
    if not isinstance(topic, str) and isinstance(items, list) and items:
        first = (
            {_ABBREVIATIONS.get(k, k): v for k, v in items[0].items()}
            if isinstance(items[0], dict)
            else {}
        )
        topic = first.get("topic")
        online = str(first.get("payload_available", online))
        offline = str(first.get("payload_not_available", offline))
    if not isinstance(topic, str) or not _publishable(topic):
        return None
    return topic, Availability(device_id, online, offline)


def _publishable(topic: str) -> bool:
    return bool(topic) and not any(ch in topic for ch in "+#\0") and len(topic) <= 512


def _text(value: Any, limit: int) -> str | None:
    return str(value)[:limit] if isinstance(value, str | int | float) and str(value) else None
