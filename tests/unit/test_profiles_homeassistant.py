"""Unit tests for the Home Assistant discovery profile (payloads written for these tests
after the discovery documentation: abbreviated ESPHome-style and full Zigbee2MQTT-style)."""

from __future__ import annotations

import json

import pytest

from mqtthub.messages import Accepted, Kind, Reason, Rejected, Status
from mqtthub.profiles.base import MetricInfo
from mqtthub.profiles.homeassistant import HomeAssistantProfile, compile_template

T0 = 1_790_000_000.0
LIMIT = 65536


def decode(profile: HomeAssistantProfile, topic: str, payload: bytes | str) -> object:
    data = payload.encode() if isinstance(payload, str) else payload
    decoded = profile.decode(topic, data, received_at=T0, max_payload=LIMIT)
    return decoded


def configure(profile: HomeAssistantProfile, topic: str, config: dict[str, object]) -> None:
    decoded = profile.decode(topic, json.dumps(config).encode(), received_at=T0, max_payload=LIMIT)
    assert decoded is not None
    assert decoded.result is None, decoded.result


ESPHOME_TEMPERATURE = {
    "~": "kitchen/sensor/temperature",
    "name": "Kitchen Temperature",
    "stat_t": "~/state",
    "avty_t": "kitchen/status",
    "unit_of_meas": "°C",
    "dev_cla": "temperature",
    "uniq_id": "aabbccddeeff-temperature",
    "dev": {"ids": "aabbccddeeff", "name": "kitchen"},
}


def test_a_config_alone_stores_nothing_and_names_topics_to_follow() -> None:
    profile = HomeAssistantProfile()
    configure(profile, "homeassistant/sensor/kitchen/temperature/config", ESPHOME_TEMPERATURE)
    assert profile.take_new_topics() == ["kitchen/sensor/temperature/state", "kitchen/status"]
    assert profile.take_new_topics() == []


def test_state_becomes_a_reading_with_unit_name_and_class() -> None:
    profile = HomeAssistantProfile()
    configure(profile, "homeassistant/sensor/kitchen/temperature/config", ESPHOME_TEMPERATURE)
    decoded = profile.decode(
        "kitchen/sensor/temperature/state", b"21.5", received_at=T0, max_payload=LIMIT
    )
    assert decoded is not None
    assert decoded.result == Accepted("kitchen", Kind.SENSOR, T0, [("temperature", 21.5, T0)])
    assert decoded.info == {"temperature": MetricInfo("°C", "Kitchen Temperature", "temperature")}


def test_availability_is_presence_and_an_offline_is_untimed_like_a_will() -> None:
    profile = HomeAssistantProfile()
    configure(profile, "homeassistant/sensor/kitchen/temperature/config", ESPHOME_TEMPERATURE)
    decoded = profile.decode("kitchen/status", b"offline", received_at=T0, max_payload=LIMIT)
    assert decoded is not None
    result = decoded.result
    assert isinstance(result, Accepted)
    assert (result.kind, result.status, result.timed) == (Kind.STATUS, Status.OFFLINE, False)


def test_zigbee2mqtt_style_json_state_feeds_several_entities() -> None:
    profile = HomeAssistantProfile()
    device = {"identifiers": ["zigbee2mqtt_0x00158d0001a2b3c4"], "name": "hall"}
    for key, unit in (("temperature", "°C"), ("humidity", "%")):
        configure(
            profile,
            f"homeassistant/sensor/0x00158d0001a2b3c4/{key}/config",
            {
                "state_topic": "zigbee2mqtt/hall",
                "value_template": f"{{{{ value_json.{key} }}}}",
                "unit_of_measurement": unit,
                "device": device,
            },
        )
    configure(
        profile,
        "homeassistant/binary_sensor/0x00158d0001a2b3c4/occupancy/config",
        {
            "state_topic": "zigbee2mqtt/hall",
            "value_template": "{{ value_json.occupancy }}",
            "payload_on": True,
            "payload_off": False,
            "device": device,
        },
    )
    payload = json.dumps({"temperature": 19.25, "humidity": 51, "occupancy": True})
    decoded = profile.decode(
        "zigbee2mqtt/hall", payload.encode(), received_at=T0, max_payload=LIMIT
    )
    assert decoded is not None
    result = decoded.result
    assert isinstance(result, Accepted)
    assert result.device_id == "0x00158d0001a2b3c4"
    assert sorted(result.readings) == [
        ("humidity", 51.0, T0),
        ("occupancy", 1.0, T0),
        ("temperature", 19.25, T0),
    ]


def test_an_empty_config_forgets_a_ghost_entity() -> None:
    profile = HomeAssistantProfile()
    topic = "homeassistant/sensor/kitchen/temperature/config"
    configure(profile, topic, ESPHOME_TEMPERATURE)
    decoded = profile.decode(topic, b"", received_at=T0, max_payload=LIMIT)
    assert decoded is not None
    assert decoded.result is None
    assert profile.followed_topics() == ()
    assert (
        profile.decode("kitchen/sensor/temperature/state", b"1", received_at=T0, max_payload=LIMIT)
        is None
    )


def test_a_shared_bridge_availability_topic_is_not_presence() -> None:
    profile = HomeAssistantProfile()
    for node in ("a1", "b2"):
        configure(
            profile,
            f"homeassistant/sensor/{node}/t/config",
            {"state_topic": f"bridge/{node}", "availability_topic": "bridge/state"},
        )
    decoded = profile.decode("bridge/state", b"offline", received_at=T0, max_payload=LIMIT)
    assert decoded is not None
    assert decoded.result is None


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (b"{not json", Reason.INVALID_JSON),
        (b"[1, 2]", Reason.INVALID_TYPE),
        (json.dumps({"state_topic": "x/+/y"}).encode(), Reason.INVALID_TYPE),
        (
            json.dumps({"state_topic": "x", "value_template": "{% if x %}1{% endif %}"}).encode(),
            Reason.INVALID_TYPE,
        ),
    ],
)
def test_bad_configs_are_dead_letters(config: bytes, reason: Reason) -> None:
    profile = HomeAssistantProfile()
    decoded = profile.decode(
        "homeassistant/sensor/n1/t/config", config, received_at=T0, max_payload=LIMIT
    )
    assert decoded is not None
    assert isinstance(decoded.result, Rejected)
    assert decoded.result.reason is reason


def test_a_state_without_a_number_is_a_dead_letter() -> None:
    profile = HomeAssistantProfile()
    configure(profile, "homeassistant/sensor/kitchen/temperature/config", ESPHOME_TEMPERATURE)
    decoded = profile.decode(
        "kitchen/sensor/temperature/state", b"unavailable", received_at=T0, max_payload=LIMIT
    )
    assert decoded is not None
    assert isinstance(decoded.result, Rejected)
    assert decoded.result.reason is Reason.NO_READINGS


def test_other_topics_are_not_this_profiles() -> None:
    assert decode(HomeAssistantProfile(), "devices/x/sensor", b"{}") is None


@pytest.mark.parametrize(
    ("template", "payload", "value"),
    [
        ("{{ value }}", "21.5", 21.5),
        ("{{ value | float }}", "3", 3.0),
        ("{{ value_json.a.b }}", '{"a": {"b": 2}}', 2.0),
        ("{{ value_json['x-y'] }}", '{"x-y": 4}', 4.0),
        ("{{ value_json.list[1] }}", '{"list": [1, 7]}', 7.0),
        ("{{ value_json.t | round(1) }}", '{"t": 21.46}', 21.5),
        ("{{ value_json.t | int }}", '{"t": 21.9}', 21.0),
        ("{{ value_json.missing }}", '{"t": 1}', None),
    ],
)
def test_supported_value_templates(template: str, payload: str, value: float | None) -> None:
    compiled = compile_template(template)
    assert compiled is not None
    document = json.loads(payload) if compiled.from_json else None
    assert compiled.number(compiled.extract(payload, document)) == value


@pytest.mark.parametrize(
    "template",
    ["{{ value_json.x * 10 }}", "{{ states('sensor.x') }}", "{% raw %}", "{{ value | x }}"],
)
def test_other_templates_are_refused(template: str) -> None:
    assert compile_template(template) is None
