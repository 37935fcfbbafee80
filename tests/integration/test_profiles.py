"""Firmware profiles end to end: real Mosquitto, a real serve, payloads written for these
tests after each project's documentation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.mosquitto import MosquittoBroker, mosquitto_pub
from support.serve import ServeProcess, device, serve_for, wait_until

MAPPINGS = """
[[mapping]]
topic = "acme/{device}/telemetry"
kind = "sensor"
metrics = { temperature = "env.t", battery = "$.power.battery" }
units = { temperature = "°C", battery = "V" }
timestamp = "at"
timestamp_format = "epoch_ms"

[[mapping]]
topic = "acme/{device}/presence"
kind = "status"
online = ["up"]
offline = ["down"]
"""


@pytest.fixture
def serve(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[ServeProcess]:
    mappings = tmp_path / "mappings.toml"
    mappings.write_text(MAPPINGS)
    with serve_for(
        mosquitto.port,
        tmp_path / "serve",
        MQTTHUB_PROFILES="mqtthub,tasmota,esphome,homeassistant,homie",
        MQTTHUB_MAPPINGS=str(mappings),
        MQTTHUB_TASMOTA_TIMEZONE="UTC",
    ) as running:
        yield running


def latest(serve: ServeProcess, device_id: str, metric: str) -> dict[str, Any] | None:
    found = device(serve, device_id)
    return found["latest"].get(metric) if found else None


def test_tasmota_sensor_with_dotted_names_units_and_its_will(
    mosquitto: MosquittoBroker, serve: ServeProcess
) -> None:
    mosquitto_pub(mosquitto, "tele/plug1/LWT", "Online", retain=True)
    sensor = {
        "Time": "2026-11-29T10:00:00",
        "AM2301": {"Temperature": 22.1, "Humidity": 45.3},
        "TempUnit": "C",
    }
    mosquitto_pub(mosquitto, "tele/plug1/SENSOR", json.dumps(sensor))
    reading = wait_until(lambda: latest(serve, "plug1", "AM2301.Temperature"), what="SENSOR")
    assert reading["value"] == 22.1
    assert reading["unit"] == "°C"
    assert reading["ts"].startswith("2026-11-29T10:00:00")
    assert latest(serve, "plug1", "AM2301.Humidity")["unit"] == "%"  # type: ignore[index]
    mosquitto_pub(mosquitto, "tele/plug1/LWT", "Offline", retain=True)
    gone = wait_until(
        lambda: (d := device(serve, "plug1")) and d["status"] == "offline" and d, what="offline"
    )
    assert gone["status_reason"] == "last_will"


def test_esphome_status_and_state(mosquitto: MosquittoBroker, serve: ServeProcess) -> None:
    mosquitto_pub(mosquitto, "kitchen/status", "online")
    mosquitto_pub(mosquitto, "kitchen/sensor/temperature/state", "21.5")
    mosquitto_pub(mosquitto, "kitchen/binary_sensor/door/state", "ON")
    wait_until(lambda: latest(serve, "kitchen", "door"), what="binary sensor")
    assert latest(serve, "kitchen", "temperature")["value"] == 21.5  # type: ignore[index]
    assert latest(serve, "kitchen", "door")["value"] == 1.0  # type: ignore[index]
    assert device(serve, "kitchen")["status"] == "online"  # type: ignore[index]


def test_home_assistant_discovery_is_followed_to_its_state_topic(
    mosquitto: MosquittoBroker, serve: ServeProcess
) -> None:
    config = {
        "name": "Hall temperature",
        "state_topic": "zigbee2mqtt/hall",
        "value_template": "{{ value_json.temperature }}",
        "unit_of_measurement": "°C",
        "device_class": "temperature",
        "availability_topic": "zigbee2mqtt/hall/availability",
        "device": {"identifiers": ["zigbee2mqtt_0x00158d0001a2b3c4"], "name": "hall"},
    }
    topic = "homeassistant/sensor/0x00158d0001a2b3c4/temperature/config"
    mosquitto_pub(mosquitto, topic, json.dumps(config), retain=True)
    # The state topic is subscribed once the config is read: publish until it is stored.
    reading = wait_until(
        lambda: (
            mosquitto_pub(mosquitto, "zigbee2mqtt/hall", '{"temperature": 19.5}')
            or latest(serve, "0x00158d0001a2b3c4", "temperature")
        ),
        timeout=15,
        interval=0.3,
        what="the discovered state",
    )
    assert reading["value"] == 19.5
    assert (reading["unit"], reading["name"]) == ("°C", "Hall temperature")
    mosquitto_pub(mosquitto, "zigbee2mqtt/hall/availability", "offline")
    wait_until(
        lambda: device(serve, "0x00158d0001a2b3c4")["status"] == "offline",  # type: ignore[index]
        what="availability offline",
    )


def test_homie_device_going_lost(mosquitto: MosquittoBroker, serve: ServeProcess) -> None:
    mosquitto_pub(mosquitto, "homie/weather/$state", "ready", retain=True)
    mosquitto_pub(mosquitto, "homie/weather/outdoor/temperature/$unit", "°C", retain=True)
    mosquitto_pub(mosquitto, "homie/weather/outdoor/temperature", "18.5")
    reading = wait_until(lambda: latest(serve, "weather", "outdoor.temperature"), what="homie")
    assert (reading["value"], reading["unit"]) == (18.5, "°C")
    mosquitto_pub(mosquitto, "homie/weather/$state", "lost", retain=True)
    gone = wait_until(
        lambda: (d := device(serve, "weather")) and d["status"] == "offline" and d, what="lost"
    )
    assert gone["status_reason"] == "last_will"


def test_a_mapping_file_for_a_made_up_vendor(
    mosquitto: MosquittoBroker, serve: ServeProcess
) -> None:
    mosquitto_pub(mosquitto, "acme/pump-7/presence", "up")
    payload = {"at": 1_790_000_000_000, "env": {"t": 4.5}, "power": {"battery": 3.61}}
    mosquitto_pub(mosquitto, "acme/pump-7/telemetry", json.dumps(payload))
    reading = wait_until(lambda: latest(serve, "pump-7", "battery"), what="mapped reading")
    assert (reading["value"], reading["unit"]) == (3.61, "V")
    assert reading["ts"].startswith("2026-09-21T")
    assert latest(serve, "pump-7", "temperature")["unit"] == "°C"  # type: ignore[index]
    mosquitto_pub(mosquitto, "acme/pump-7/presence", "down")
    wait_until(lambda: device(serve, "pump-7")["status"] == "offline", what="mapped offline")  # type: ignore[index]


def test_the_mqtthub_convention_is_unchanged_and_malformed_firmware_is_a_dead_letter(
    mosquitto: MosquittoBroker, serve: ServeProcess
) -> None:
    mosquitto_pub(mosquitto, "devices/d1/sensor", '{"t": 1.5}')
    mosquitto_pub(mosquitto, "tele/plug2/SENSOR", "{broken")
    wait_until(lambda: latest(serve, "d1", "t"), what="mqtthub reading")
    letters = wait_until(lambda: serve.get("/api/dead-letters").json(), what="dead letter")
    assert [(d["topic"], d["reason"]) for d in letters] == [("tele/plug2/SENSOR", "invalid_json")]
