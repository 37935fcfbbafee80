"""Unit tests for mqtthub.simulation_firmware: what ``simulate --profile X`` publishes is
what serve's profile X reads, with units, and its presence messages mean what they should."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC
from zoneinfo import ZoneInfo

import orjson
import pytest

from mqtthub import simulation_values as sv
from mqtthub.messages import Accepted, Kind, Status
from mqtthub.profiles import MqtthubProfile, Profiles
from mqtthub.profiles.base import Decoded, MetricInfo, Profile
from mqtthub.profiles.esphome import EsphomeProfile
from mqtthub.profiles.homeassistant import HomeAssistantProfile
from mqtthub.profiles.homie import HomieProfile
from mqtthub.profiles.tasmota import TasmotaProfile
from mqtthub.simulation_firmware import FIRMWARES, UNITS, Firmware, Publish

NOW = 1_790_000_000.0
DEVICE = "sim0001"


def profile_for(name: str) -> Profiles:
    made: dict[str, list[Profile]] = {
        "mqtthub": [MqtthubProfile()],
        "tasmota": [TasmotaProfile(UTC)],
        "esphome": [EsphomeProfile(), HomeAssistantProfile()],  # units: ESPHome's discovery
        "homeassistant": [HomeAssistantProfile()],
        "homie": [HomieProfile()],
    }
    return Profiles(made[name])


def read(profiles: Profiles, messages: Iterable[Publish]) -> list[Decoded]:
    return [
        profiles.decode(m.topic, m.payload, received_at=NOW, max_payload=65536) for m in messages
    ]


def readings_and_units(decoded: list[Decoded]) -> tuple[dict[str, float], dict[str, MetricInfo]]:
    values: dict[str, float] = {}
    info: dict[str, MetricInfo] = {}
    for item in decoded:
        if isinstance(item.result, Accepted):
            values.update({metric: value for metric, value, _ts in item.result.readings})
        info.update(item.info)
    return values, info


@pytest.fixture
def current() -> dict[str, float]:
    return sv.initial_values(random.Random(1))


@pytest.mark.parametrize("name", FIRMWARES)
def test_every_firmware_is_read_by_its_profile_with_every_value(
    name: str, current: dict[str, float]
) -> None:
    """Birth, sensor and heartbeat messages are all read; nothing is a dead letter."""
    firmware, profiles = Firmware(name), profile_for(name)
    messages = [
        *firmware.birth(DEVICE),
        *firmware.sensor(DEVICE, current, 4242, NOW),
        *firmware.heartbeat(DEVICE, current, 4242, NOW),
    ]
    decoded = read(profiles, messages)
    rejected = [(m.topic, d.result) for m, d in zip(messages, decoded, strict=True)]
    assert not [r for r in rejected if r[1] is not None and not isinstance(r[1], Accepted)]
    values, info = readings_and_units(decoded)
    temperature = next(v for k, v in values.items() if k.lower().endswith("temperature"))
    assert temperature == pytest.approx(current["temperature"], abs=0.01)
    assert any(k.endswith("UptimeSec") or k.endswith("uptime") for k in values), values
    if name != "mqtthub":  # mqtthub's convention carries no units
        units = {k: i.unit for k, i in info.items() if i.unit}
        temperature_unit = next(u for k, u in units.items() if k.lower().endswith("temperature"))
        assert temperature_unit == "°C"


@pytest.mark.parametrize("name", FIRMWARES)
def test_the_will_is_an_offline_last_will_and_birth_says_online(name: str) -> None:
    firmware, profiles = Firmware(name), profile_for(name)
    birth = firmware.birth(DEVICE)
    read(profiles, birth)  # configs first (Home Assistant availability)
    online = read(profiles, [birth[-1]])[0].result
    assert isinstance(online, Accepted)
    assert (online.device_id, online.status) == (DEVICE, Status.ONLINE)
    will = read(profiles, [firmware.will(DEVICE)])[0].result
    assert isinstance(will, Accepted)
    assert (will.kind, will.status, will.timed) == (Kind.STATUS, Status.OFFLINE, False)
    assert firmware.will(DEVICE).retain is (name != "mqtthub")


def test_tasmota_sensor_is_nested_with_units_and_local_time() -> None:
    firmware = Firmware("tasmota", timezone=ZoneInfo("Europe/Berlin"))
    current = sv.initial_values(random.Random(2))
    (message,) = firmware.sensor(DEVICE, current, 10, NOW)
    document = orjson.loads(message.payload)
    assert message.topic == "tele/sim0001/SENSOR"
    assert set(document["BME280"]) == {"Temperature", "Humidity", "Pressure"}
    assert (document["TempUnit"], document["PressureUnit"]) == ("C", "hPa")
    assert document["Time"] == "2026-09-21T16:13:20"  # 14:13:20 UTC in Berlin, no offset
    decoded = TasmotaProfile(ZoneInfo("Europe/Berlin")).decode(
        message.topic, message.payload, received_at=NOW, max_payload=65536
    )
    assert decoded is not None
    assert isinstance(decoded.result, Accepted)
    assert decoded.result.ts == NOW
    assert decoded.info["BME280.Pressure"].unit == "hPa"


def test_tasmota_state_has_uptime_and_wifi() -> None:
    current = sv.initial_values(random.Random(3))
    (state,) = Firmware("tasmota").heartbeat(DEVICE, current, 90061, NOW)
    document = orjson.loads(state.payload)
    assert (document["Uptime"], document["UptimeSec"]) == ("1T01:01:01", 90061)
    assert document["Wifi"]["Signal"] == round(current["rssi"])
    assert 0 <= document["Wifi"]["RSSI"] <= 100


def test_home_assistant_configs_are_retained_with_unit_device_and_availability() -> None:
    configs = [m for m in Firmware("homeassistant").birth(DEVICE) if m.kind == "config"]
    assert {m.topic for m in configs} == {
        f"homeassistant/sensor/{DEVICE}/{name}/config" for name in UNITS
    }
    assert all(m.retain for m in configs)
    config = orjson.loads(configs[0].payload)
    assert {"unit_of_measurement", "device", "availability_topic", "value_template"} <= set(config)


def test_homie_announces_units_then_ready_and_stops_disconnected() -> None:
    firmware = Firmware("homie")
    birth = firmware.birth(DEVICE)
    topics = [m.topic for m in birth]
    assert topics.index("homie/sim0001/$state") < topics.index("homie/sim0001/env/$properties")
    assert (birth[-1].topic, birth[-1].payload) == ("homie/sim0001/$state", b"ready")
    assert Publish("homie/sim0001/env/temperature/$unit", "°C".encode(), True, "config") in birth
    (goodbye,) = firmware.goodbye(DEVICE, NOW)
    result = read(profile_for("homie"), [goodbye])[0].result
    assert isinstance(result, Accepted)
    assert (result.status, result.timed) == (Status.OFFLINE, True)  # said, not a will


def test_mqtthub_messages_are_todays() -> None:
    current = sv.initial_values(random.Random(4))
    firmware = Firmware("mqtthub", topic_prefix="site")
    (sensor,) = firmware.sensor(DEVICE, current, 7, NOW)
    assert sensor == Publish("site/sim0001/sensor", sv.sensor_payload(DEVICE, current, 7))
    assert [m.payload for m in firmware.birth(DEVICE)] == [b"online"]
    assert firmware.will(DEVICE) == Publish("site/sim0001/status", b"offline", False, "status")


def test_an_unknown_profile_and_malformed_chaos_outside_mqtthub_are_refused() -> None:
    with pytest.raises(ValueError, match="profile: one of"):
        Firmware("zigbee")
    endpoint = sv.BrokerEndpoint("127.0.0.1", 1883, False, None, None)
    with pytest.raises(ValueError, match="only with the mqtthub profile"):
        sv.FleetConfig(endpoint=endpoint, profile="tasmota", malformed_rate=0.1)
    with pytest.raises(ValueError, match="profile: one of"):
        sv.FleetConfig(endpoint=endpoint, profile="zigbee")
