"""Unit tests for the ESPHome profile (payloads written for these tests after ESPHome's
MQTT client documentation: status birth and will, component state topics)."""

from __future__ import annotations

import pytest

from mqtthub.messages import Kind, Reason, Status
from mqtthub.profiles import topic_matches
from mqtthub.profiles.esphome import EsphomeProfile
from support.profile_checks import T0, accepted, rejected, values

ESPHOME = EsphomeProfile()


def test_subscriptions_cover_status_and_the_components_read() -> None:
    assert ESPHOME.subscriptions() == (
        "+/status",
        "+/sensor/+/state",
        "+/binary_sensor/+/state",
        "+/switch/+/state",
        "+/light/+/state",
    )


def test_the_status_filter_does_not_take_mqtthubs_own_status_topics() -> None:
    """+/status has two levels; mqtthub's devices/<id>/status has three."""
    assert not any(topic_matches(f, "devices/d1/status") for f in ESPHOME.subscriptions())
    assert ESPHOME.decode("devices/d1/status", b"online", received_at=T0, max_payload=99) is None


@pytest.mark.parametrize(
    ("payload", "status"), [("online", Status.ONLINE), ("offline", Status.OFFLINE)]
)
def test_status_birth_and_will_are_untimed_presence(payload: str, status: Status) -> None:
    """ESPHome's offline is its last will: untimed, so presence records last_will."""
    message = accepted(ESPHOME, "living-room/status", payload)
    assert (message.device_id, message.kind, message.status) == ("living-room", Kind.STATUS, status)
    assert (message.ts, message.timed) == (T0, False)


@pytest.mark.parametrize("payload", ["Online", "gone", ""])
def test_another_status_payload_is_a_dead_letter(payload: str) -> None:
    result = rejected(ESPHOME, "living-room/status", payload)
    assert (result.reason, result.device_id) == (Reason.INVALID_STATUS, "living-room")


@pytest.mark.parametrize(
    ("payload", "value"), [("21.5", 21.5), ("-3", -3.0), ("1.2e3", 1200.0), (" 40.25\n", 40.25)]
)
def test_a_sensor_state_is_one_reading_at_the_receive_time(payload: str, value: float) -> None:
    message = accepted(ESPHOME, "living-room/sensor/temperature/state", payload)
    assert message.kind is Kind.SENSOR
    assert message.readings == (("temperature", value, T0),)
    assert message.timed is False


def test_a_sensor_without_a_state_is_a_no_readings_dead_letter() -> None:
    """ESPHome publishes nan for a sensor that has no value yet."""
    result = rejected(ESPHOME, "living-room/sensor/temperature/state", "nan")
    assert (result.reason, result.kind) == (Reason.NO_READINGS, Kind.SENSOR)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("warm", Reason.INVALID_TYPE),
        ("ON", Reason.INVALID_TYPE),
        ("1e999", Reason.NON_FINITE_NUMBER),
        (b"\xff", Reason.INVALID_UTF8),
    ],
)
def test_a_sensor_state_that_is_not_a_number_is_a_dead_letter(
    payload: str | bytes, reason: Reason
) -> None:
    assert rejected(ESPHOME, "living-room/sensor/temperature/state", payload).reason is reason


@pytest.mark.parametrize("component", ["binary_sensor", "switch"])
@pytest.mark.parametrize(("payload", "value"), [("ON", 1.0), ("OFF", 0.0)])
def test_on_off_states_are_one_and_zero(component: str, payload: str, value: float) -> None:
    message = accepted(ESPHOME, f"hall/{component}/motion/state", payload)
    assert values(message) == {"motion": value}


def test_an_on_off_state_with_another_payload_is_a_dead_letter() -> None:
    result = rejected(ESPHOME, "hall/binary_sensor/motion/state", "maybe")
    assert result.reason is Reason.INVALID_TYPE


def test_a_light_state_is_flattened_under_its_name() -> None:
    payload = (
        '{"state":"ON","brightness":128,"color_mode":"rgb",'
        '"color":{"r":255,"g":140,"b":0},"effect":"None"}'
    )
    message = accepted(ESPHOME, "desk/light/lamp/state", payload)
    assert values(message) == {
        "lamp.state": 1.0,
        "lamp.brightness": 128.0,
        "lamp.color.r": 255.0,
        "lamp.color.g": 140.0,
        "lamp.color.b": 0.0,
    }


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("ON", Reason.INVALID_JSON),
        ("[1]", Reason.INVALID_TYPE),
        ('{"effect":"x"}', Reason.NO_READINGS),
    ],
)
def test_a_malformed_light_state_is_a_dead_letter(payload: str, reason: Reason) -> None:
    assert rejected(ESPHOME, "desk/light/lamp/state", payload).reason is reason


def test_a_component_name_that_is_not_a_metric_name_is_a_dead_letter() -> None:
    result = rejected(ESPHOME, "hall/sensor/room temp/state", "21")
    assert result.reason is Reason.INVALID_METRIC_NAME


def test_a_node_name_that_is_not_a_device_id_is_a_dead_letter() -> None:
    result = rejected(ESPHOME, "my node/status", "online")
    assert (result.reason, result.kind) == (Reason.BAD_DEVICE_ID, Kind.STATUS)


def test_a_payload_over_the_limit_is_a_dead_letter() -> None:
    result = rejected(ESPHOME, "hall/sensor/t/state", "21.5", max_payload=2)
    assert result.reason is Reason.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize(
    "topic",
    [
        "hall/sensor/temperature/command",
        "hall/text_sensor/version/state",
        "hall/sensor/temperature",
        "hall/debug",
        "site/hall/status",
        "status",
        "tele/plug/SENSOR",
    ],
)
def test_other_topics_are_not_esphomes(topic: str) -> None:
    assert ESPHOME.decode(topic, b"1", received_at=T0, max_payload=65536) is None
