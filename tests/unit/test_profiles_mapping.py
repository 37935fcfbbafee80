"""Unit tests for mapping files (MQTTHUB_MAPPINGS): a made-up vendor's JSON topics
described in TOML, and the errors a bad file gets."""

from __future__ import annotations

import json
from unittest.mock import ANY

import pytest

from mqtthub.errors import ConfigError
from mqtthub.messages import Kind, Reason, Rejected, Status
from mqtthub.profiles.base import MetricInfo
from mqtthub.profiles.mapping import MappingProfile, load_mappings
from support.profile_checks import T0, accepted, decode, read, rejected, values

ACME = load_mappings(
    """
# A made-up vendor: nested readings with a device time in epoch milliseconds.
[[mapping]]
topic = "acme/{device}/telemetry"
kind = "sensor"
metrics = { temperature = "env.temp", humidity = "$.env.hum", first = "channels[0].v" }
units = { temperature = "°C", humidity = "%" }
names = { temperature = "Outdoor temperature" }
timestamp = "meta.time"
timestamp_format = "epoch_ms"

[[mapping]]
topic = "acme/{device}/presence"
kind = "status"
online = ["up", "1"]
offline = ["down", "0"]

[[mapping]]
topic = "acme/{device}/ping"
kind = "heartbeat"
"""
)


def mapping(entry: str) -> str:
    return f"[[mapping]]\n{entry}\n"


def sensor(*lines: str) -> str:
    """A sensor entry on x/{device} with these extra lines."""
    return mapping("\n".join(('topic = "x/{device}"', 'kind = "sensor"', *lines)))


def test_subscriptions_are_the_patterns_with_device_as_plus() -> None:
    assert ACME.subscriptions() == ("acme/+/telemetry", "acme/+/presence", "acme/+/ping")


def test_metrics_are_read_by_json_path_with_units_and_names() -> None:
    payload = {
        "meta": {"time": 1_706_702_340_000},
        "env": {"temp": 4.5, "hum": 81},
        "channels": [{"v": 3.3}, {"v": 5}],
    }
    message, info = read(ACME, "acme/ws-7/telemetry", json.dumps(payload))
    assert (message.device_id, message.kind) == ("ws-7", Kind.SENSOR)
    assert values(message) == {"temperature": 4.5, "humidity": 81.0, "first": 3.3}
    assert (message.ts, message.timed) == (T0 - 60, True)
    assert info == {
        "temperature": MetricInfo(unit="°C", name="Outdoor temperature"),
        "humidity": MetricInfo(unit="%"),
    }


def test_missing_paths_give_no_reading_and_numeric_strings_are_read() -> None:
    message, info = read(ACME, "acme/ws-7/telemetry", '{"env": {"temp": "4.5"}}')
    assert values(message) == {"temperature": 4.5}
    assert (message.ts, message.timed) == (T0, False)
    assert list(info) == ["temperature"]


def test_a_payload_without_any_mapped_value_is_a_no_readings_dead_letter() -> None:
    result = rejected(ACME, "acme/ws-7/telemetry", '{"env": {"pressure": 1000}}')
    assert result == Rejected(Reason.NO_READINGS, ANY, "ws-7", Kind.SENSOR)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"env": ', Reason.INVALID_JSON),
        ('{"env": {"temp": 1}, "meta": {"time": 5}}', Reason.INVALID_TIMESTAMP),
        ('{"env": {"temp": 1}, "meta": {"time": "soon"}}', Reason.INVALID_TIMESTAMP),
    ],
)
def test_malformed_payloads_are_dead_letters(payload: str, reason: Reason) -> None:
    assert rejected(ACME, "acme/ws-7/telemetry", payload).reason is reason


@pytest.mark.parametrize(
    ("payload", "status"),
    [("up", Status.ONLINE), ("1", Status.ONLINE), ("DOWN", Status.OFFLINE), ("0", Status.OFFLINE)],
)
def test_status_payloads_are_presence_without_a_device_time(payload: str, status: Status) -> None:
    message = accepted(ACME, "acme/ws-7/presence", payload)
    assert (message.kind, message.status, message.timed) == (Kind.STATUS, status, False)


def test_an_unmapped_status_payload_is_a_dead_letter() -> None:
    assert rejected(ACME, "acme/ws-7/presence", "online").reason is Reason.INVALID_STATUS


def test_a_heartbeat_entry_without_values_accepts_any_payload() -> None:
    message = accepted(ACME, "acme/ws-7/ping", b"\x00\x01")
    assert (message.kind, message.readings) == (Kind.HEARTBEAT, ())


@pytest.mark.parametrize(
    "topic", ["acme/ws-7", "acme/ws-7/telemetry/x", "other/ws-7/telemetry", "devices/d1/sensor"]
)
def test_topics_no_entry_matches_are_not_the_mappings(topic: str) -> None:
    assert ACME.decode(topic, b"{}", received_at=T0, max_payload=65536) is None


def test_a_device_level_that_is_not_a_device_id_is_a_dead_letter() -> None:
    result = rejected(ACME, "acme/bad id/telemetry", '{"env": {"temp": 1}}')
    assert result.reason is Reason.BAD_DEVICE_ID


def test_a_payload_over_the_limit_is_a_dead_letter() -> None:
    result = rejected(ACME, "acme/ws-7/presence", "down", max_payload=3)
    assert result.reason is Reason.PAYLOAD_TOO_LARGE


def test_flatten_takes_every_number_except_the_timestamp() -> None:
    profile = load_mappings(
        mapping(
            'topic = "vendor/+/{device}/#"\nkind = "sensor"\nflatten = true\n'
            'timestamp = "at"\ntimestamp_format = "iso8601"\nunits = { "power.0" = "W" }'
        )
    )
    assert profile.subscriptions() == ("vendor/+/+/#",)
    payload = '{"at": "2024-01-31T12:00:00Z", "power": [5, 6], "on": true, "label": "x"}'
    message, info = read(profile, "vendor/site-a/meter-1/data/now", payload)
    assert message.device_id == "meter-1"
    assert values(message) == {"power.0": 5.0, "power.1": 6.0, "on": 1.0}
    assert message.ts == T0
    assert info == {"power.0": MetricInfo(unit="W")}


def timed_sensor(fmt: str, zone: str = "UTC") -> MappingProfile:
    """A mapping of x/{device} whose value v comes with the time t in ``fmt``."""
    lines = ('metrics = { v = "v" }', 'timestamp = "t"', f'timestamp_format = "{fmt}"')
    return load_mappings(sensor(*lines, f'timezone = "{zone}"'))


def test_a_bare_number_is_read_with_the_root_path() -> None:
    profile = load_mappings(
        mapping('topic = "x/{device}/temperature"\nkind = "sensor"\nmetrics = { t = "$" }')
    )
    assert values(accepted(profile, "x/d1/temperature", "21.5")) == {"t": 21.5}


@pytest.mark.parametrize(
    ("fmt", "zone", "raw", "expected"),
    [
        ("auto", "UTC", 1_706_702_400, T0),
        ("auto", "UTC", 1_706_702_400_000, T0),
        ("auto", "UTC", "2024-01-31T13:00:00+01:00", T0),
        ("epoch", "UTC", "1706702400", T0),
        ("iso8601", "Europe/Berlin", "2024-01-31T13:00:00", T0),
        ("%d/%m/%Y %H:%M", "America/New_York", "31/01/2024 07:00", T0),
        ("%d/%m/%Y %H:%M", "UTC", "31/01/2024 12:00", T0),
    ],
)
def test_timestamp_formats_and_zones(fmt: str, zone: str, raw: object, expected: float) -> None:
    profile = timed_sensor(fmt, zone)
    message = accepted(profile, "x/d1", json.dumps({"v": 1, "t": raw}))
    assert (message.ts, message.timed) == (expected, True)


def test_a_time_that_does_not_match_the_format_is_a_dead_letter() -> None:
    result = rejected(timed_sensor("%H:%M %d.%m.%Y"), "x/d1", '{"v": 1, "t": "2024-01-31"}')
    assert result.reason is Reason.INVALID_TIMESTAMP


def test_a_status_read_by_json_path_with_its_time() -> None:
    profile = load_mappings(
        mapping(
            'topic = "x/{device}/lwt"\nkind = "status"\nstatus = "state.connected"\n'
            'online = "true"\noffline = "false"\ntimestamp = "ts"'
        )
    )
    message = accepted(profile, "x/d1/lwt", '{"state": {"connected": false}, "ts": 1706702400}')
    assert (message.status, message.ts, message.timed) == (Status.OFFLINE, T0, True)
    result = rejected(profile, "x/d1/lwt", '{"state": {}}')
    assert result.reason is Reason.INVALID_STATUS


def test_the_first_matching_entry_wins() -> None:
    profile = load_mappings(
        mapping('topic = "x/{device}/status"\nkind = "status"\n')
        + mapping('topic = "x/{device}/#"\nkind = "heartbeat"\n')
    )
    assert accepted(profile, "x/d1/status", "online").kind is Kind.STATUS
    assert accepted(profile, "x/d1/other", "online").kind is Kind.HEARTBEAT
    assert accepted(profile, "x/d1", "").kind is Kind.HEARTBEAT  # x/+/# matches x/d1 too


def test_default_status_payloads_are_online_and_offline() -> None:
    profile = load_mappings(mapping('topic = "x/{device}"\nkind = "status"'))
    assert decode(profile, "x/d1", "offline").result == accepted(profile, "x/d1", "Offline")


# --- errors in the file -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[mapping]\ntopic = "x"', "not valid TOML"),
        ("", "expected [[mapping]] entries"),
        ('title = "x"', "found title"),
        (sensor("metric = {}"), "unknown key 'metric'"),
        (mapping('topic = "x/{device}"\nkind = "reading"'), "kind must be one of"),
        (mapping('topic = "x/{device}"\nkind = ["sensor"]'), "kind must be one of"),
        (sensor(), "needs metrics"),
        (sensor('flatten = "yes"'), "flatten must be"),
        (
            sensor("flatten = true", 'metrics = { a = "a" }'),
            "not be combined",
        ),
        (mapping('topic = "x/+"\nkind = "status"'), "exactly one {device}"),
        (mapping('topic = "{device}/{device}"\nkind = "status"'), "exactly one {device}"),
        (mapping('topic = "x/dev{device}"\nkind = "status"'), "whole level"),
        (mapping('topic = "x/#/{device}"\nkind = "status"'), "whole level"),
        (mapping('kind = "status"'), "topic must be"),
        (sensor('metrics = { "a b" = "a" }'), "a b"),
        (sensor('metrics = { a = "a..b" }'), "a..b"),
        (sensor('metrics = { a = "$x" }'), "JSON path"),
        (sensor('metrics = { a = "$." }'), "JSON path"),
        (sensor("metrics = { a = 3 }"), "JSON path"),
        (sensor('metrics = "a"'), "must be a table"),
        (
            sensor('metrics = { a = "a" }', 'units = { b = "W" }'),
            "units.b names a metric",
        ),
        (
            sensor('metrics = { a = "a" }', "units = { a = 1 }"),
            "units.a must be a string",
        ),
        (
            sensor("flatten = true", 'timezone = "Mars/Base"'),
            "timezone 'Mars/Base'",
        ),
        (
            sensor("flatten = true", 'timestamp_format = "unix"'),
            "timestamp_format must be",
        ),
        (
            sensor("flatten = true", 'online = "up"'),
            "'online'",
        ),
        (mapping('topic = "x/{device}"\nkind = "status"\nflatten = true'), "'flatten'"),
        (mapping('topic = "x/{device}"\nkind = "status"\ntimestamp = "t"'), "needs status"),
        (mapping('topic = "x/{device}"\nkind = "status"\nonline = []'), "online must be"),
        ("mapping = [1]", "must be a table"),
    ],
)
def test_a_bad_file_is_a_config_error_naming_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^MQTTHUB_MAPPINGS") as error:
        load_mappings(text)
    assert message in str(error.value)


def test_errors_name_the_entry_by_number_and_topic_and_the_file() -> None:
    text = mapping('topic = "a/{device}"\nkind = "status"') + mapping(
        'topic = "b/{device}"\nkind = "nope"'
    )
    with pytest.raises(ConfigError) as error:
        load_mappings(text, source="MQTTHUB_MAPPINGS=/etc/acme.toml")
    assert str(error.value).startswith(
        "MQTTHUB_MAPPINGS=/etc/acme.toml: [[mapping]] #2 (topic 'b/{device}'): kind must be"
    )


def test_a_toml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError, match="line 2"):
        load_mappings('[[mapping]]\ntopic = "x/{device}\n')
