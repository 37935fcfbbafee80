"""Unit tests for the Tasmota profile (payloads written for these tests after Tasmota's
documentation of its telemetry: SENSOR, STATE and LWT)."""

from __future__ import annotations

import json
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from mqtthub.messages import Accepted, Kind, Reason, Status
from mqtthub.profiles.tasmota import TasmotaProfile
from support.profile_checks import T0, accepted, read, rejected, units, values

BERLIN = TasmotaProfile(ZoneInfo("Europe/Berlin"))
UTC_PROFILE = TasmotaProfile(UTC)

AM2301 = {
    "Time": "2024-01-31T13:00:00",
    "AM2301": {"Temperature": 22.1, "Humidity": 45.3, "DewPoint": 9.6},
    "TempUnit": "C",
}
POWER_PLUG = {
    "Time": "2024-01-31T13:00:00",
    "ENERGY": {
        "TotalStartTime": "2023-06-01T10:00:00",
        "Total": 152.431,
        "Yesterday": 1.204,
        "Today": 0.387,
        "Period": 3,
        "Power": 41,
        "ApparentPower": 55,
        "ReactivePower": 36,
        "Factor": 0.75,
        "Voltage": 231,
        "Current": 0.238,
    },
}
STATE = {
    "Time": "2024-01-31T13:00:00",
    "Uptime": "2T04:11:09",
    "UptimeSec": 187869,
    "Heap": 26,
    "SleepMode": "Dynamic",
    "Sleep": 50,
    "LoadAvg": 19,
    "MqttCount": 3,
    "POWER": "ON",
    "Wifi": {"AP": 1, "SSId": "home", "Channel": 6, "RSSI": 74, "Signal": -63},
}


def test_subscribes_to_the_three_telemetry_topics() -> None:
    assert BERLIN.subscriptions() == ("tele/+/SENSOR", "tele/+/STATE", "tele/+/LWT")


def test_sensor_values_are_flattened_with_dotted_names_and_units() -> None:
    """An AM2301's temperature lands as AM2301.Temperature in °C, its humidity in %."""
    message, info = read(BERLIN, "tele/plug-1/SENSOR", json.dumps(AM2301))
    assert (message.device_id, message.kind) == ("plug-1", Kind.SENSOR)
    assert values(message) == {
        "AM2301.Temperature": 22.1,
        "AM2301.Humidity": 45.3,
        "AM2301.DewPoint": 9.6,
    }
    assert units(info) == {
        "AM2301.Temperature": "°C",
        "AM2301.Humidity": "%",
        "AM2301.DewPoint": "°C",
    }


def test_fahrenheit_and_pressure_units_follow_the_payload() -> None:
    payload = {
        "Time": "2024-01-31T13:00:00",
        "BME280": {"Temperature": 71.6, "Humidity": 40, "Pressure": 1013.2, "SeaPressure": 1020},
        "PressureUnit": "hPa",
        "TempUnit": "F",
    }
    _message, info = read(BERLIN, "tele/weather/SENSOR", json.dumps(payload))
    assert units(info) == {
        "BME280.Temperature": "°F",
        "BME280.Humidity": "%",
        "BME280.Pressure": "hPa",
        "BME280.SeaPressure": "hPa",
    }


def test_energy_fields_get_their_units_and_strings_are_skipped() -> None:
    message, info = read(BERLIN, "tele/plug-1/SENSOR", json.dumps(POWER_PLUG))
    assert "ENERGY.TotalStartTime" not in values(message)
    assert values(message)["ENERGY.Power"] == 41.0
    assert units(info) == {
        "ENERGY.Total": "kWh",
        "ENERGY.Yesterday": "kWh",
        "ENERGY.Today": "kWh",
        "ENERGY.Period": "Wh",
        "ENERGY.Power": "W",
        "ENERGY.ApparentPower": "VA",
        "ENERGY.ReactivePower": "var",
        "ENERGY.Voltage": "V",
        "ENERGY.Current": "A",
    }  # Factor has no unit


def test_arrays_of_a_multi_channel_meter_are_numbered() -> None:
    payload = {"ENERGY": {"Power": [12, 0, 7.5], "Voltage": [230, 231, 229]}}
    message, info = read(BERLIN, "tele/meter/SENSOR", json.dumps(payload))
    assert list(values(message)) == [
        "ENERGY.Power.0",
        "ENERGY.Power.1",
        "ENERGY.Power.2",
        "ENERGY.Voltage.0",
        "ENERGY.Voltage.1",
        "ENERGY.Voltage.2",
    ]
    assert units(info)["ENERGY.Power.2"] == "W"


def test_state_is_a_heartbeat_with_its_numbers_and_power_as_one() -> None:
    message, info = read(BERLIN, "tele/plug-1/STATE", json.dumps(STATE))
    assert message.kind is Kind.HEARTBEAT
    assert values(message) == {
        "UptimeSec": 187869.0,
        "Heap": 26.0,
        "Sleep": 50.0,
        "LoadAvg": 19.0,
        "MqttCount": 3.0,
        "POWER": 1.0,
        "Wifi.AP": 1.0,
        "Wifi.Channel": 6.0,
        "Wifi.RSSI": 74.0,
        "Wifi.Signal": -63.0,
    }
    assert units(info) == {"UptimeSec": "s", "Wifi.RSSI": "%", "Wifi.Signal": "dBm"}


def test_a_state_without_numbers_is_still_a_heartbeat() -> None:
    message = accepted(BERLIN, "tele/plug-1/STATE", '{"Time":"2024-01-31T13:00:00","POWER":"x"}')
    assert message.kind is Kind.HEARTBEAT
    assert message.readings == ()


# --- time -----------------------------------------------------------------------------


def test_time_is_local_time_in_the_configured_zone() -> None:
    """13:00 in Berlin in winter is 12:00 UTC; the same text read as UTC is an hour later."""
    berlin = accepted(BERLIN, "tele/plug-1/SENSOR", json.dumps(AM2301))
    assert (berlin.ts, berlin.timed) == (T0, True)
    assert {ts for _m, _v, ts in berlin.readings} == {T0}
    utc = accepted(UTC_PROFILE, "tele/plug-1/SENSOR", json.dumps(AM2301))
    assert utc.ts == T0 + 3600


def test_summer_time_is_applied() -> None:
    payload = {**AM2301, "Time": "2024-07-01T14:00:00"}
    message = accepted(BERLIN, "tele/plug-1/SENSOR", json.dumps(payload), received_at=1.8e9)
    assert message.ts == 1_719_835_200.0  # 12:00 UTC: Berlin is UTC+2 in July


def test_a_time_with_an_offset_keeps_it() -> None:
    payload = {**AM2301, "Time": "2024-01-31T07:00:00-05:00"}
    assert accepted(BERLIN, "tele/plug-1/SENSOR", json.dumps(payload)).ts == T0


def test_without_time_the_receive_time_is_used() -> None:
    payload = {"AM2301": {"Temperature": 22.1}, "TempUnit": "C"}
    message = accepted(BERLIN, "tele/plug-1/SENSOR", json.dumps(payload))
    assert (message.ts, message.timed) == (T0, False)


@pytest.mark.parametrize(
    "time",
    [
        "2024-02-02T13:00:00",  # two days ahead
        "yesterday",
        1706702400,
        None,
    ],
)
def test_an_implausible_or_malformed_time_is_a_dead_letter(time: object) -> None:
    payload = {**AM2301, "Time": time}
    result = rejected(BERLIN, "tele/plug-1/SENSOR", json.dumps(payload))
    assert result.reason is Reason.INVALID_TIMESTAMP
    assert (result.device_id, result.kind) == ("plug-1", Kind.SENSOR)


# --- presence -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status"),
    [("Online", Status.ONLINE), ("Offline", Status.OFFLINE), ("offline\n", Status.OFFLINE)],
)
def test_lwt_is_untimed_presence(payload: str, status: Status) -> None:
    """Tasmota's Offline is its last will: untimed, so presence records last_will."""
    message = accepted(BERLIN, "tele/plug-1/LWT", payload)
    assert (message.kind, message.status, message.timed, message.ts) == (
        Kind.STATUS,
        status,
        False,
        T0,
    )


def test_an_unknown_lwt_payload_is_a_dead_letter() -> None:
    assert rejected(BERLIN, "tele/plug-1/LWT", "Sleeping").reason is Reason.INVALID_STATUS


# --- dead letters and foreign topics --------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"Time": "2024-01-31T13:00:00", "AM2301": {', Reason.INVALID_JSON),
        (b"[22.1, 45.3]", Reason.INVALID_TYPE),
        (b'"Online"', Reason.INVALID_TYPE),
        (b'{"Time": "2024-01-31T13:00:00", "TempUnit": "C"}', Reason.NO_READINGS),
        (b'{"AM2301": {"Temperature": 1e999}}', Reason.NON_FINITE_NUMBER),
        (b'{"AM 2301": {"Temperature": 22.1}}', Reason.INVALID_METRIC_NAME),
        (b'{"' + b"A" * 70 + b'": 1}', Reason.INVALID_METRIC_NAME),
        (b"\xff\xfe{}", Reason.INVALID_UTF8),
    ],
)
def test_malformed_sensor_payloads_are_dead_letters(payload: bytes, reason: Reason) -> None:
    result = rejected(BERLIN, "tele/plug-1/SENSOR", payload)
    assert result.reason is reason, result
    assert (result.device_id, result.kind) == ("plug-1", Kind.SENSOR)


def test_a_payload_over_the_limit_is_a_dead_letter() -> None:
    result = rejected(BERLIN, "tele/plug-1/SENSOR", json.dumps(AM2301), max_payload=10)
    assert result.reason is Reason.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize(
    "topic", ["tele/bad topic/SENSOR", "tele/../LWT", "tele/" + "x" * 65 + "/STATE"]
)
def test_a_topic_that_is_not_a_device_id_is_a_dead_letter(topic: str) -> None:
    result = rejected(BERLIN, topic, json.dumps(AM2301))
    assert result.reason is Reason.BAD_DEVICE_ID


@pytest.mark.parametrize(
    "topic",
    [
        "stat/plug-1/RESULT",
        "stat/plug-1/STATUS10",
        "tele/plug-1/INFO1",
        "tele/plug-1/sensor",
        "tele/plug-1/SENSOR/extra",
        "cmnd/plug-1/POWER",
        "devices/plug-1/sensor",
        "tele/SENSOR",
    ],
)
def test_other_topics_are_not_tasmotas(topic: str) -> None:
    assert BERLIN.decode(topic, b"{}", received_at=T0, max_payload=65536) is None


def test_a_1970_time_before_ntp_sync_falls_back_to_the_receive_time() -> None:
    """Tasmota reports 1970 until its clock is set: readings are kept, at receive time."""
    payload = b'{"Time": "1970-01-01T00:00:42", "DS18B20": {"Temperature": 20.5}}'
    decoded = UTC_PROFILE.decode(
        "tele/plug/SENSOR", payload, received_at=1_790_000_000.0, max_payload=4096
    )
    assert decoded is not None
    assert isinstance(decoded.result, Accepted)
    assert decoded.result.ts == 1_790_000_000.0
    assert decoded.result.timed is False
