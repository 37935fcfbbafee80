"""Unit tests for the Homie profile (payloads written for these tests after the Homie
convention: device $state, node properties and their $unit and $name attributes)."""

from __future__ import annotations

from unittest.mock import ANY

import pytest

from mqtthub.messages import Kind, Reason, Rejected, Status
from mqtthub.profiles.base import MetricInfo
from mqtthub.profiles.homie import HomieProfile
from support.profile_checks import T0, accepted, decode, rejected, values

HOMIE = HomieProfile()


def test_subscriptions_cover_state_properties_and_their_unit_and_name() -> None:
    assert HOMIE.subscriptions() == (
        "homie/+/$state",
        "homie/+/+/+",
        "homie/+/+/+/$unit",
        "homie/+/+/+/$name",
    )
    assert HomieProfile("site/homie").subscriptions()[0] == "site/homie/+/$state"


@pytest.mark.parametrize(
    ("state", "status", "timed"),
    [
        ("ready", Status.ONLINE, False),
        ("init", Status.ONLINE, False),
        ("alert", Status.ONLINE, False),
        ("lost", Status.OFFLINE, False),
        ("disconnected", Status.OFFLINE, True),
        ("sleeping", Status.OFFLINE, True),
    ],
)
def test_state_is_presence(state: str, status: Status, timed: bool) -> None:
    """lost is the will (untimed: last_will); disconnected and sleeping are said by the
    device itself (timed at the receive time: status_message)."""
    message = accepted(HOMIE, "homie/boiler/$state", state)
    assert (message.device_id, message.kind, message.status) == ("boiler", Kind.STATUS, status)
    assert (message.ts, message.timed) == (T0, timed)


def test_an_unknown_state_is_a_dead_letter() -> None:
    result = rejected(HOMIE, "homie/boiler/$state", "napping")
    assert result == Rejected(Reason.INVALID_STATUS, ANY, "boiler", Kind.STATUS)


@pytest.mark.parametrize(
    ("payload", "value"),
    [("21.5", 21.5), ("-4", -4.0), ("true", 1.0), ("false", 0.0), ("ON", 1.0), ("OFF", 0.0)],
)
def test_a_property_value_is_a_reading_named_node_dot_property(payload: str, value: float) -> None:
    message = accepted(HOMIE, "homie/boiler/water/temperature", payload)
    assert message.kind is Kind.SENSOR
    assert message.readings == (("water.temperature", value, T0),)


@pytest.mark.parametrize("payload", ["heating", "255,128,0", "2024-01-31T12:00:00Z", ""])
def test_a_property_that_is_not_numeric_stores_nothing_and_is_no_dead_letter(payload: str) -> None:
    decoded = decode(HOMIE, "homie/boiler/water/mode", payload)
    assert (decoded.result, decoded.info, decoded.device_id) == (None, {}, "boiler")


def test_nan_is_a_no_readings_dead_letter() -> None:
    assert rejected(HOMIE, "homie/boiler/water/temperature", "NaN").reason is Reason.NO_READINGS


@pytest.mark.parametrize(
    ("attribute", "payload", "info"),
    [
        ("$unit", "°C", MetricInfo(unit="°C")),
        ("$name", "Water temperature", MetricInfo(name="Water temperature")),
        ("$unit", "u" * 40, MetricInfo(unit="u" * 32)),
    ],
)
def test_unit_and_name_are_metric_info_without_a_result(
    attribute: str, payload: str, info: MetricInfo
) -> None:
    decoded = decode(HOMIE, f"homie/boiler/water/temperature/{attribute}", payload)
    assert decoded.result is None
    assert decoded.device_id == "boiler"
    assert decoded.info == {"water.temperature": info}


@pytest.mark.parametrize(
    "topic",
    [
        "homie/boiler/$homie",
        "homie/boiler/$name",
        "homie/boiler/$nodes",
        "homie/boiler/water/$properties",
        "homie/boiler/$stats/uptime",
        "homie/boiler/water/temperature/$datatype",
        "homie/boiler/water/temperature/set",
        "homie/boiler/water/temperature/x/y",
    ],
)
def test_other_homie_topics_are_read_but_store_nothing(topic: str) -> None:
    decoded = decode(HOMIE, topic, "anything")
    assert (decoded.result, decoded.info, decoded.device_id) == (None, {}, "boiler")


def test_broadcasts_store_nothing() -> None:
    assert decode(HOMIE, "homie/$broadcast/alert", "storm").result is None


def test_a_device_id_mqtthub_cannot_keep_is_a_dead_letter() -> None:
    result = rejected(HOMIE, "homie/bad device/$state", "ready")
    assert (result.reason, result.kind) == (Reason.BAD_DEVICE_ID, Kind.STATUS)


def test_a_property_name_that_is_not_a_metric_name_is_a_dead_letter() -> None:
    result = rejected(HOMIE, "homie/boiler/water/" + "t" * 70, "1")
    assert result.reason is Reason.INVALID_METRIC_NAME


@pytest.mark.parametrize(
    ("payload", "reason"), [(b"\xff", Reason.INVALID_UTF8), (b"1" * 100, Reason.PAYLOAD_TOO_LARGE)]
)
def test_malformed_values_are_dead_letters(payload: bytes, reason: Reason) -> None:
    result = rejected(HOMIE, "homie/boiler/water/temperature", payload, max_payload=50)
    assert (result.reason, result.device_id) == (reason, "boiler")


def test_a_root_of_several_levels() -> None:
    profile = HomieProfile("site/homie")
    assert values(accepted(profile, "site/homie/boiler/water/temperature", "60")) == {
        "water.temperature": 60.0
    }
    assert profile.decode("homie/boiler/$state", b"ready", received_at=T0, max_payload=99) is None


@pytest.mark.parametrize(
    "topic", ["devices/boiler/status", "homie/boiler", "homie", "other/boiler/$state"]
)
def test_topics_outside_the_root_are_not_homies(topic: str) -> None:
    assert HOMIE.decode(topic, b"ready", received_at=T0, max_payload=65536) is None
