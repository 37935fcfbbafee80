"""Unit tests for mqtthub.messages: what devices may send and why a message is rejected."""

from __future__ import annotations

import pytest

from mqtthub.messages import (
    Accepted,
    Kind,
    Reason,
    Rejected,
    Status,
    parse,
    subscriptions,
)

# 2023-11-14T22:13:20Z, the server receive time of every message below.
RECEIVED_AT = 1_700_000_000.0
DAY = 24 * 3600
MAX_PAYLOAD = 65536


def parse_message(
    topic: str, payload: bytes, *, prefix: str = "devices", max_payload: int = MAX_PAYLOAD
) -> Accepted | Rejected:
    return parse(topic, payload, received_at=RECEIVED_AT, prefix=prefix, max_payload=max_payload)


def accepted(topic: str, payload: bytes) -> Accepted:
    result = parse_message(topic, payload)
    assert isinstance(result, Accepted), result
    return result


def rejected(topic: str, payload: bytes, **kwargs: int) -> Rejected:
    result = parse_message(topic, payload, **kwargs)
    assert isinstance(result, Rejected), result
    return result


def readings_of(message: Accepted) -> list[tuple[str, float, float]]:
    """The message's readings as (metric, value, ts) tuples."""
    return [(metric, value, ts) for metric, value, ts in message.readings]


# --- topics and device ids ------------------------------------------------------------


def test_subscription_covers_every_message_type_with_one_filter() -> None:
    """serve subscribes once to devices/+/+, so unknown types still reach dead letters."""
    assert subscriptions("devices") == ("devices/+/+",)
    assert subscriptions("site/a/devices") == ("site/a/devices/+/+",)


@pytest.mark.parametrize(
    "device_id",
    [
        "esp8266",
        "a",
        "A-Z_0.9:x",
        "aa:bb:cc:dd:ee:ff",
        "x" * 64,
    ],
)
def test_device_ids_matching_the_pattern_are_accepted(device_id: str) -> None:
    """A device id of 1-64 characters from [A-Za-z0-9_.:-] is taken from the topic."""
    message = accepted(f"devices/{device_id}/sensor", b'{"temp": 21.5}')
    assert message.device_id == device_id
    assert message.kind is Kind.SENSOR


@pytest.mark.parametrize(
    "device_id",
    ["", "x" * 65, "my device", "café", "dev+1", "dev#1", "dev$", "dev,1"],
)
def test_device_ids_outside_the_pattern_are_rejected(device_id: str) -> None:
    """A topic whose device id breaks [A-Za-z0-9_.:-]{1,64} is rejected as bad_device_id."""
    result = rejected(f"devices/{device_id}/sensor", b'{"temp": 21.5}')
    assert result.reason is Reason.BAD_DEVICE_ID


@pytest.mark.parametrize(
    "topic",
    [
        "devices/esp8266",
        "devices/esp8266/sensor/extra",
        "devices/esp8266/sensor/",
        "/devices/esp8266/sensor",
        "other/esp8266/sensor",
        "devicesX/esp8266/sensor",
    ],
)
def test_topics_not_shaped_prefix_device_kind_are_rejected(topic: str) -> None:
    """Anything but {prefix}/{device_id}/{kind} is rejected as bad_topic."""
    assert rejected(topic, b'{"temp": 1}').reason is Reason.BAD_TOPIC


@pytest.mark.parametrize("kind", ["config", "Sensor", "STATUS", "telemetry", "cmd"])
def test_unknown_message_types_are_rejected_with_the_device_id(kind: str) -> None:
    """devices/esp8266/config is unknown_message_type; the dead letter still names the device."""
    result = rejected(f"devices/esp8266/{kind}", b'{"temp": 1}')
    assert result.reason is Reason.UNKNOWN_MESSAGE_TYPE
    assert result.device_id == "esp8266"


def test_a_multi_level_prefix_is_honoured() -> None:
    """With prefix site/one/devices, site/one/devices/esp8266/sensor is a sensor message."""
    result = parse_message(
        "site/one/devices/esp8266/sensor", b'{"temp": 1}', prefix="site/one/devices"
    )
    assert isinstance(result, Accepted)
    assert result.device_id == "esp8266"
    other = parse_message(
        "site/two/devices/esp8266/sensor", b'{"temp": 1}', prefix="site/one/devices"
    )
    assert isinstance(other, Rejected)
    assert other.reason is Reason.BAD_TOPIC


# --- sensor payloads ------------------------------------------------------------------


def test_flat_sensor_object_without_ts_uses_server_receive_time() -> None:
    """{"temp": 21.5, "hum": 40} gives two readings stamped with the receive time."""
    message = accepted("devices/esp8266/sensor", b'{"temp": 21.5, "hum": 40}')
    assert message.ts == RECEIVED_AT
    assert readings_of(message) == [("temp", 21.5, RECEIVED_AT), ("hum", 40.0, RECEIVED_AT)]


@pytest.mark.parametrize(
    ("ts_json", "expected_ts"),
    [
        pytest.param("1699999000", 1_699_999_000.0, id="epoch-seconds"),
        pytest.param("1699999000.25", 1_699_999_000.25, id="epoch-seconds-fraction"),
        pytest.param("1699999000123", 1_699_999_000.123, id="epoch-milliseconds"),
        pytest.param('"2023-11-14T21:56:40Z"', 1_699_999_000.0, id="iso-utc-z"),
        pytest.param('"2023-11-14T23:56:40+02:00"', 1_699_999_000.0, id="iso-offset"),
        pytest.param('"2023-11-14T21:56:40"', 1_699_999_000.0, id="iso-naive-is-utc"),
        pytest.param('"2023-11-14T21:56:40.5Z"', 1_699_999_000.5, id="iso-fraction"),
    ],
)
def test_sensor_ts_in_seconds_milliseconds_or_iso8601(ts_json: str, expected_ts: float) -> None:
    """The device's ts, in any of the accepted forms, stamps the readings (UTC epoch seconds)."""
    message = accepted("devices/esp8266/sensor", f'{{"ts": {ts_json}, "temp": 20}}'.encode())
    assert message.ts == pytest.approx(expected_ts, abs=1e-3)
    [(metric, _, reading_ts)] = readings_of(message)
    assert metric == "temp"
    assert reading_ts == pytest.approx(expected_ts, abs=1e-3)


def test_sensor_array_gives_each_item_its_own_ts() -> None:
    """A buffered upload [{ts, temp}, {ts, temp}] keeps each sample's time; ts is the latest."""
    payload = b'[{"ts": 1699999000, "temp": 20.0}, {"ts": 1699999060, "temp": 20.5}, {"hum": 41}]'
    message = accepted("devices/esp8266/sensor", payload)
    assert readings_of(message) == [
        ("temp", 20.0, 1_699_999_000.0),
        ("temp", 20.5, 1_699_999_060.0),
        ("hum", 41.0, RECEIVED_AT),
    ]
    assert message.ts == RECEIVED_AT


def test_sensor_array_message_ts_is_the_latest_item() -> None:
    """An array whose items all carry ts is stamped with the newest of them."""
    payload = b'[{"ts": 1699999060, "temp": 1}, {"ts": 1699999000, "temp": 2}]'
    assert accepted("devices/esp8266/sensor", payload).ts == 1_699_999_060.0


def test_booleans_become_one_and_zero() -> None:
    """{"relay": true, "door": false} stores relay=1.0 and door=0.0."""
    message = accepted("devices/esp8266/sensor", b'{"relay": true, "door": false}')
    assert readings_of(message) == [("relay", 1.0, RECEIVED_AT), ("door", 0.0, RECEIVED_AT)]


def test_non_numeric_values_are_ignored() -> None:
    """Strings, nested objects, arrays and null in a sensor payload produce no readings."""
    payload = (
        b'{"temp": 21, "fw": "1.2.3", "wifi": {"rssi": -70}, "samples": [1, 2],'
        b' "error": null, "ok": true}'
    )
    message = accepted("devices/esp8266/sensor", payload)
    assert readings_of(message) == [("temp", 21.0, RECEIVED_AT), ("ok", 1.0, RECEIVED_AT)]


def test_integers_and_negative_numbers_become_floats() -> None:
    """Readings are floats whatever JSON number form the device used."""
    message = accepted("devices/esp8266/sensor", b'{"a": -3, "b": 0, "c": 1.5e3, "d": -0.25}')
    assert [(metric, value) for metric, value, _ in readings_of(message)] == [
        ("a", -3.0),
        ("b", 0.0),
        ("c", 1500.0),
        ("d", -0.25),
    ]
    assert all(type(value) is float for _, value, _ in readings_of(message))


def test_payload_device_id_equal_to_topic_is_accepted_and_not_a_reading() -> None:
    """A payload repeating the topic's device_id is fine; device_id and ts are not metrics."""
    payload = b'{"device_id": "esp8266", "ts": 1699999000, "temp": 20}'
    message = accepted("devices/esp8266/sensor", payload)
    assert [metric for metric, _, _ in readings_of(message)] == ["temp"]


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("sensor", b'{"device_id": "esp32", "temp": 20}'),
        ("sensor", b'[{"device_id": "esp8266", "temp": 20}, {"device_id": "esp32", "temp": 1}]'),
        ("sensor", b'{"device_id": "ESP8266", "temp": 20}'),
        ("sensor", b'{"device_id": "", "temp": 20}'),
        ("sensor", b'{"device_id": 8266, "temp": 20}'),
        ("status", b'{"device_id": "esp32", "status": "online"}'),
        ("heartbeat", b'{"device_id": "esp32", "uptime": 5}'),
    ],
)
def test_payload_device_id_different_from_topic_is_rejected(kind: str, payload: bytes) -> None:
    """A device publishing as esp8266 but claiming another device_id is device_id_mismatch."""
    result = rejected(f"devices/esp8266/{kind}", payload)
    assert result.reason is Reason.DEVICE_ID_MISMATCH
    assert result.device_id == "esp8266"
    assert result.kind is Kind(kind)


# --- status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"device_id": "esp8266", "status": "online"}', Status.ONLINE),
        (b'{"device_id": "esp8266", "status": "offline"}', Status.OFFLINE),
        (b'{"status": "offline"}', Status.OFFLINE),
        (b"online", Status.ONLINE),
        (b"offline", Status.OFFLINE),
        (b"offline\n", Status.OFFLINE),
        (b"  online ", Status.ONLINE),
        (b'"offline"', Status.OFFLINE),
    ],
)
def test_status_as_json_object_or_plain_text(payload: bytes, expected: Status) -> None:
    """Both {"device_id":..,"status":"online"} and a bare `online` set the device's status."""
    message = accepted("devices/esp8266/status", payload)
    assert message.kind is Kind.STATUS
    assert message.status is expected
    assert message.readings == ()


def test_status_object_with_ts_uses_it() -> None:
    """A status object carrying ts is stamped with the device's time."""
    message = accepted("devices/esp8266/status", b'{"status": "offline", "ts": 1699999000}')
    assert message.ts == 1_699_999_000.0


@pytest.mark.parametrize(
    "payload",
    [b"", b"onlin", b"connected", b'{"status": 1}', b'{"state": "online"}', b'["online"]', b"1"],
)
def test_status_other_than_online_or_offline_is_rejected(payload: bytes) -> None:
    """A status message that is neither online nor offline is rejected as invalid_status."""
    assert rejected("devices/esp8266/status", payload).reason is Reason.INVALID_STATUS


# --- heartbeat ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", [b"", b"ping", b"1", b"\xff\xfe\x00binary", b"[1, 2]", b'"alive"', b"null"]
)
def test_heartbeat_accepts_any_payload(payload: bytes) -> None:
    """A heartbeat with an empty, text, binary or non-object payload is accepted without data."""
    message = accepted("devices/esp8266/heartbeat", payload)
    assert message.kind is Kind.HEARTBEAT
    assert message.ts == RECEIVED_AT
    assert message.readings == ()


def test_heartbeat_object_numbers_become_readings() -> None:
    """{"uptime": 3600, "rssi": -70, "fw": "1.2"} stores uptime and rssi, ignores fw."""
    message = accepted("devices/esp8266/heartbeat", b'{"uptime": 3600, "rssi": -70, "fw": "1.2"}')
    assert readings_of(message) == [
        ("uptime", 3600.0, RECEIVED_AT),
        ("rssi", -70.0, RECEIVED_AT),
    ]


# --- rejections -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        pytest.param("sensor", b"temp=21.5", Reason.INVALID_JSON, id="sensor-plain-text"),
        pytest.param("sensor", b"{temp: 21.5}", Reason.INVALID_JSON, id="sensor-unquoted-key"),
        pytest.param("sensor", b'{"temp": 1} {"temp": 2}', Reason.INVALID_JSON, id="trailing"),
        pytest.param("sensor", b"", Reason.INVALID_JSON, id="sensor-empty"),
        pytest.param("sensor", b"\xff\xfe{}", Reason.INVALID_UTF8, id="sensor-not-utf8"),
        pytest.param("status", b"\xffonline", Reason.INVALID_UTF8, id="status-not-utf8"),
        pytest.param("sensor", b"21.5", Reason.INVALID_TYPE, id="sensor-number"),
        pytest.param("sensor", b'"21.5"', Reason.INVALID_TYPE, id="sensor-string"),
        pytest.param("sensor", b"null", Reason.INVALID_TYPE, id="sensor-null"),
        pytest.param("sensor", b"[1, 2]", Reason.INVALID_TYPE, id="sensor-array-of-numbers"),
        pytest.param("sensor", b'[{"t": 1}, 5]', Reason.INVALID_TYPE, id="sensor-mixed-array"),
        pytest.param("sensor", b"[]", Reason.NO_READINGS, id="sensor-empty-array"),
        pytest.param("sensor", b"{}", Reason.NO_READINGS, id="sensor-empty-object"),
        pytest.param("sensor", b'{"fw": "1.2"}', Reason.NO_READINGS, id="sensor-only-strings"),
        pytest.param("sensor", b'{"temp C": 1}', Reason.INVALID_METRIC_NAME, id="metric-space"),
        pytest.param("sensor", b'{"temp": NaN}', Reason.NON_FINITE_NUMBER, id="nan"),
        pytest.param("sensor", b'{"temp": Infinity}', Reason.NON_FINITE_NUMBER, id="inf"),
        pytest.param("sensor", b'{"temp": -Infinity}', Reason.NON_FINITE_NUMBER, id="-inf"),
        pytest.param("sensor", b'{"temp": 1e999}', Reason.NON_FINITE_NUMBER, id="1e999"),
        pytest.param("sensor", b'{"temp": -1e999}', Reason.NON_FINITE_NUMBER, id="-1e999"),
        pytest.param(
            "sensor", b'[{"temp": 1}, {"temp": NaN}]', Reason.NON_FINITE_NUMBER, id="nan-in-array"
        ),
        pytest.param(
            "sensor", b'{"temp": 1, "x": {"y": 1e999}}', Reason.NON_FINITE_NUMBER, id="nested-1e999"
        ),
        pytest.param("heartbeat", b'{"rssi": NaN}', Reason.NON_FINITE_NUMBER, id="heartbeat-nan"),
        pytest.param(
            "status",
            b'{"status": "online", "v": Infinity}',
            Reason.NON_FINITE_NUMBER,
            id="status-inf",
        ),
    ],
)
def test_bad_payloads_are_rejected_with_a_machine_readable_reason(
    kind: str, payload: bytes, reason: Reason
) -> None:
    """Each malformed payload lands in dead letters with its own stable reason code."""
    result = rejected(f"devices/esp8266/{kind}", payload)
    assert result.reason is reason
    assert result.device_id == "esp8266"
    assert result.kind is Kind(kind)
    assert result.detail


def test_reason_codes_are_stable_snake_case_strings() -> None:
    """APIs and metrics expose reasons as their string values, e.g. non_finite_number."""
    assert Reason.NON_FINITE_NUMBER == "non_finite_number"
    assert Reason.DEVICE_ID_MISMATCH.value == "device_id_mismatch"
    assert all(reason.value == reason.name.lower() for reason in Reason)


@pytest.mark.parametrize("kind", ["sensor", "status", "heartbeat"])
def test_payload_over_the_limit_is_rejected_for_every_kind(kind: str) -> None:
    """A payload one byte over MQTTHUB_MAX_PAYLOAD is payload_too_large; at the limit is fine."""
    at_limit = b'{"temp": 1}'.ljust(64)
    assert len(at_limit) == 64
    status_payload = b"online".ljust(64)
    payload = status_payload if kind == "status" else at_limit
    ok = parse_message(f"devices/esp8266/{kind}", payload, max_payload=64)
    assert isinstance(ok, Accepted)
    result = rejected(f"devices/esp8266/{kind}", payload + b" ", max_payload=64)
    assert result.reason is Reason.PAYLOAD_TOO_LARGE
    assert result.device_id == "esp8266"


def test_oversize_check_does_not_need_valid_content() -> None:
    """A huge garbage payload is reported as too large, not as invalid JSON."""
    result = rejected("devices/esp8266/sensor", b"\xff" * 100_000)
    assert result.reason is Reason.PAYLOAD_TOO_LARGE


# --- timestamps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ts_json",
    [
        pytest.param("0", id="zero"),
        pytest.param("12345", id="seconds-since-boot"),
        pytest.param("999999999", id="2001-09-08"),
        pytest.param("-5", id="negative"),
        pytest.param('"2000-12-31T23:59:59Z"', id="iso-2000"),
        pytest.param('"1970-01-01T00:00:00Z"', id="iso-epoch"),
        pytest.param(str(int(RECEIVED_AT + DAY + 1)), id="day-and-a-second-ahead"),
        pytest.param(str(int((RECEIVED_AT + 2 * DAY) * 1000)), id="ms-two-days-ahead"),
        pytest.param('"2030-01-01T00:00:00Z"', id="iso-far-future"),
        pytest.param("99999999999", id="year-5138-seconds"),
        pytest.param("1e300", id="huge"),
        pytest.param('"yesterday"', id="not-iso"),
        pytest.param('"1700000000"', id="number-as-string"),
        pytest.param('""', id="empty-string"),
        pytest.param("true", id="boolean"),
        pytest.param("{}", id="object"),
        pytest.param("[1699999000]", id="array"),
    ],
)
def test_implausible_or_malformed_ts_is_invalid_timestamp(ts_json: str) -> None:
    """A ts before 2001, more than a day ahead, or not a time at all is invalid_timestamp."""
    result = rejected("devices/esp8266/sensor", f'{{"ts": {ts_json}, "temp": 1}}'.encode())
    assert result.reason is Reason.INVALID_TIMESTAMP


@pytest.mark.parametrize("kind", ["status", "heartbeat"])
def test_implausible_ts_is_rejected_for_status_and_heartbeat_too(kind: str) -> None:
    """Status and heartbeat objects are held to the same ts rules as sensor data."""
    payload = b'{"status": "online", "ts": 12345}'
    assert rejected(f"devices/esp8266/{kind}", payload).reason is Reason.INVALID_TIMESTAMP


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param(RECEIVED_AT + DAY, id="exactly-a-day-ahead"),
        pytest.param(RECEIVED_AT + 60, id="a-minute-ahead"),
        pytest.param(1_009_843_200.0, id="2002-01-01"),
        pytest.param(RECEIVED_AT - 365 * DAY, id="a-year-old"),
    ],
)
def test_plausible_ts_near_the_edges_is_accepted(ts: float) -> None:
    """Clock skew up to a day ahead and old buffered samples from after 2001 are kept."""
    message = accepted("devices/esp8266/sensor", f'{{"ts": {ts}, "temp": 1}}'.encode())
    assert message.ts == ts


def test_null_ts_means_server_receive_time() -> None:
    """A ts of null is treated like no ts at all."""
    assert accepted("devices/esp8266/sensor", b'{"ts": null, "temp": 1}').ts == RECEIVED_AT


# --- the accepted message -------------------------------------------------------------


def test_a_sensor_object_is_one_sample_in_payload_order() -> None:
    """The values a sensor object carries become one sample, metrics in payload order; the
    (metric, value, ts) readings list the same values."""
    message = accepted("devices/d1/sensor", b'{"t": 21.5, "device_id": "d1", "n": 3, "ok": true}')
    assert message.samples == (("d1", RECEIVED_AT, {"t": 21.5, "n": 3.0, "ok": 1.0}),)
    assert list(message.samples[0][2]) == ["t", "n", "ok"]
    assert readings_of(message) == [
        ("t", 21.5, RECEIVED_AT),
        ("n", 3.0, RECEIVED_AT),
        ("ok", 1.0, RECEIVED_AT),
    ]


def test_an_array_keeps_every_reading_and_stores_the_first_per_metric_and_time() -> None:
    """Objects at one time merge into one sample whose repeated metric keeps its first
    value; the readings still list every value the payload had."""
    message = accepted(
        "devices/d1/sensor",
        b'[{"t": 1, "ts": 1700000000}, {"t": 2, "ts": 1700000000}, {"t": 3, "ts": 1700000001}]',
    )
    assert message.samples == (
        ("d1", 1_700_000_000.0, {"t": 1.0}),
        ("d1", 1_700_000_001.0, {"t": 3.0}),
    )
    assert [value for _, value, _ in message.readings] == [1.0, 2.0, 3.0]


def test_accepted_messages_compare_by_value_and_cannot_be_changed() -> None:
    """A parsed message equals one built from its readings, and is immutable."""
    message = accepted("devices/d1/sensor", b'{"t": 21.5}')
    same = Accepted("d1", Kind.SENSOR, RECEIVED_AT, (("t", 21.5, RECEIVED_AT),))
    assert message == same
    assert hash(message) == hash(same)
    assert "readings=(('t', 21.5," in repr(message)
    assert message != Accepted("d1", Kind.SENSOR, RECEIVED_AT)
    with pytest.raises(AttributeError):
        message.ts = 0.0  # type: ignore[misc]


def test_the_same_topic_under_another_prefix_is_checked_again() -> None:
    """Topics are remembered once checked, per prefix: another prefix does not reuse them."""
    assert accepted("devices/d1/sensor", b'{"t": 1}').device_id == "d1"
    elsewhere = parse_message("devices/d1/sensor", b'{"t": 1}', prefix="site")
    assert isinstance(elsewhere, Rejected)
    assert elsewhere.reason is Reason.BAD_TOPIC
    assert accepted("devices/d1/sensor", b'{"t": 1}').device_id == "d1"
