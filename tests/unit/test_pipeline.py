"""Unit tests for mqtthub.pipeline: one batch of device updates, readings and dead letters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mqtthub.messages import Kind, Reason, Status
from mqtthub.pipeline import (
    DEAD_LETTER_PAYLOAD_LIMIT,
    Batch,
    RawMessage,
    build_batch,
    parse_all,
)
from mqtthub.presence import PresenceEngine

T0 = 1_700_000_000.0
MAX_PAYLOAD = 65536


def raw(topic: str, payload: bytes, at: float = T0) -> RawMessage:
    return RawMessage(topic=topic, payload=payload, qos=1, retain=False, received_at=at)


def batch_of(
    *messages: RawMessage,
    max_payload: int = MAX_PAYLOAD,
    is_registered: Callable[[str], bool] | None = None,
) -> Batch:
    parsed = parse_all(messages, prefix="devices", max_payload=max_payload)
    return build_batch(parsed, presence=PresenceEngine(), is_registered=is_registered)


def test_parse_all_keeps_order_and_raw_messages() -> None:
    """Every received message is parsed once, in arrival order, next to its raw form."""
    messages = [
        raw("devices/a/sensor", b'{"t": 1}'),
        raw("devices/b/status", b"offline"),
        raw("devices/c/bogus", b""),
    ]
    parsed = parse_all(messages, prefix="devices", max_payload=MAX_PAYLOAD)
    assert [item.raw for item in parsed] == messages
    assert [getattr(item.result, "device_id", None) for item in parsed] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("first", "second", "final_status", "final_kind"),
    [
        (("status", b"online"), ("status", b"offline"), Status.OFFLINE, Kind.STATUS),
        (("status", b"offline"), ("status", b"online"), Status.ONLINE, Kind.STATUS),
        (("status", b"offline"), ("sensor", b'{"temp": 20}'), Status.ONLINE, Kind.SENSOR),
        (("status", b"offline"), ("heartbeat", b""), Status.ONLINE, Kind.HEARTBEAT),
        (("sensor", b'{"temp": 20}'), ("status", b"offline"), Status.OFFLINE, Kind.STATUS),
    ],
)
def test_two_messages_from_one_device_give_one_update_with_the_last_status(
    first: tuple[str, bytes],
    second: tuple[str, bytes],
    final_status: Status,
    final_kind: Kind,
) -> None:
    """The device list shows the state after the last message; any data means online."""
    batch = batch_of(
        raw(f"devices/esp8266/{first[0]}", first[1], at=T0),
        raw(f"devices/esp8266/{second[0]}", second[1], at=T0 + 5),
    )
    assert list(batch.devices) == ["esp8266"]
    update = batch.devices["esp8266"]
    assert update.status is final_status
    assert update.last_message_type is final_kind
    assert update.first_seen == T0
    assert update.last_seen == T0 + 5


def test_each_device_gets_its_own_update() -> None:
    """Messages from two devices in one batch update both devices independently."""
    batch = batch_of(
        raw("devices/a/status", b"offline", at=T0),
        raw("devices/b/sensor", b'{"temp": 1}', at=T0 + 1),
        raw("devices/a/heartbeat", b"", at=T0 + 2),
        raw("devices/b/status", b"offline", at=T0 + 3),
    )
    assert {name: update.status for name, update in batch.devices.items()} == {
        "a": Status.ONLINE,
        "b": Status.OFFLINE,
    }
    assert batch.devices["a"].last_seen == T0 + 2
    assert batch.devices["b"].first_seen == T0 + 1


def test_readings_carry_the_device_id() -> None:
    """Each stored reading is (device_id, metric, ts, value), device taken from the topic."""
    batch = batch_of(
        raw("devices/kitchen/sensor", b'{"temp": 21.5, "door": true}', at=T0),
        raw("devices/garage/sensor", b'{"ts": 1699999000, "temp": 4}', at=T0 + 1),
        raw("devices/garage/heartbeat", b'{"rssi": -70}', at=T0 + 2),
    )
    assert batch.readings == [
        ("kitchen", "temp", T0, 21.5),
        ("kitchen", "door", T0, 1.0),
        ("garage", "temp", 1_699_999_000.0, 4.0),
        ("garage", "rssi", T0 + 2, -70.0),
    ]


def test_accepted_messages_are_counted_by_kind() -> None:
    """Stats count stored messages per type; dead letters are not counted as accepted."""
    batch = batch_of(
        raw("devices/a/sensor", b'{"t": 1}'),
        raw("devices/a/sensor", b'{"t": 2}'),
        raw("devices/a/status", b"online"),
        raw("devices/a/heartbeat", b""),
        raw("devices/a/sensor", b"not json"),
    )
    assert batch.accepted_by_kind == {"sensor": 2, "status": 1, "heartbeat": 1}
    assert batch.stored == 4
    assert len(batch.dead_letters) == 1


def test_sensor_message_with_nan_lands_in_dead_letters() -> None:
    """A sensor message with a NaN lands in dead letters as non_finite_number, untouched."""
    payload = b'{"temp": NaN}'
    batch = batch_of(raw("devices/esp8266/sensor", payload, at=T0 + 3))
    assert batch.readings == []
    assert batch.stored == 0
    [letter] = batch.dead_letters
    assert letter.reason is Reason.NON_FINITE_NUMBER
    assert letter.device_id == "esp8266"
    assert letter.topic == "devices/esp8266/sensor"
    assert letter.payload == payload
    assert letter.payload_size == len(payload)
    assert letter.received_at == T0 + 3
    assert letter.detail


def test_dead_letters_keep_arrival_order_and_reasons() -> None:
    """The dead-letter list reads like the log of what went wrong, in order."""
    batch = batch_of(
        raw("devices/a/sensor", b"{"),
        raw("devices/bad id/sensor", b'{"t": 1}'),
        raw("devices/a/config", b"{}"),
        raw("devices/a/sensor", b'{"device_id": "b", "t": 1}'),
        raw("elsewhere/a/sensor", b'{"t": 1}'),
    )
    assert [(letter.reason, letter.device_id) for letter in batch.dead_letters] == [
        (Reason.INVALID_JSON, "a"),
        (Reason.BAD_DEVICE_ID, None),
        (Reason.UNKNOWN_MESSAGE_TYPE, "a"),
        (Reason.DEVICE_ID_MISMATCH, "a"),
        (Reason.BAD_TOPIC, None),
    ]


@pytest.mark.parametrize("size", [MAX_PAYLOAD + 1, 100_000, 1_000_000])
def test_oversize_dead_letter_keeps_a_prefix_and_the_real_size(size: int) -> None:
    """A huge payload is stored truncated to 4096 bytes, with its original size recorded."""
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert len(payload) == size
    batch = batch_of(raw("devices/esp8266/sensor", payload))
    [letter] = batch.dead_letters
    assert letter.reason is Reason.PAYLOAD_TOO_LARGE
    assert len(letter.payload) <= DEAD_LETTER_PAYLOAD_LIMIT == 4096
    assert payload.startswith(letter.payload)
    assert letter.payload_size == size
    assert letter.device_id == "esp8266"


def test_payload_just_over_a_small_limit_is_kept_whole() -> None:
    """With a low MQTTHUB_MAX_PAYLOAD, a rejected payload under 4096 bytes is kept entirely."""
    payload = b'{"temp": 1, "pad": "' + b"x" * 200 + b'"}'
    batch = batch_of(raw("devices/esp8266/sensor", payload), max_payload=128)
    [letter] = batch.dead_letters
    assert letter.reason is Reason.PAYLOAD_TOO_LARGE
    assert letter.payload == payload
    assert letter.payload_size == len(payload)


def test_unregistered_devices_are_rejected_when_registration_is_off() -> None:
    """With auto-registration off, an unknown device's data goes to unknown_device dead letters."""
    known = {"kitchen"}
    batch = batch_of(
        raw("devices/kitchen/sensor", b'{"temp": 21}'),
        raw("devices/intruder/sensor", b'{"temp": 99}'),
        raw("devices/intruder/status", b"online"),
        is_registered=known.__contains__,
    )
    assert list(batch.devices) == ["kitchen"]
    assert batch.readings == [("kitchen", "temp", T0, 21.0)]
    assert [(letter.reason, letter.device_id) for letter in batch.dead_letters] == [
        (Reason.UNKNOWN_DEVICE, "intruder"),
        (Reason.UNKNOWN_DEVICE, "intruder"),
    ]
    assert batch.stored == 1


def test_invalid_message_from_unknown_device_keeps_its_own_reason() -> None:
    """A malformed message keeps its parse reason even when the device is unknown."""
    batch = batch_of(
        raw("devices/intruder/sensor", b'{"temp": Infinity}'),
        is_registered=lambda device_id: False,
    )
    assert [letter.reason for letter in batch.dead_letters] == [Reason.NON_FINITE_NUMBER]


def test_without_registry_every_valid_device_is_accepted() -> None:
    """Auto-registration (the default) accepts data from devices never seen before."""
    batch = batch_of(raw("devices/new-device/sensor", b'{"temp": 1}'))
    assert list(batch.devices) == ["new-device"]
    assert batch.dead_letters == []


def test_a_parser_failure_rejects_only_its_own_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever parsing one message raises becomes its internal_error dead letter (with the
    exception type); the rest of the batch is stored."""
    from mqtthub import pipeline

    real_parse = pipeline.parse

    def parse(topic: str, payload: bytes, **kwargs: object) -> object:
        if payload == b"boom":
            raise MemoryError("simulated")
        return real_parse(topic, payload, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "parse", parse)
    batch = batch_of(raw("devices/a/sensor", b'{"t": 1}'), raw("devices/b/sensor", b"boom"))
    assert batch.stored == 1
    [dead] = batch.dead_letters
    assert dead.reason is Reason.INTERNAL_ERROR
    assert dead.detail == "MemoryError: simulated"


def test_a_presence_failure_rejects_only_its_own_message() -> None:
    """If applying one message raises, that message is a dead letter and changes nothing."""

    class FlakyPresence(PresenceEngine):
        def observe(self, message: Any, **kwargs: Any) -> Any:
            if message.device_id == "bad":
                raise RuntimeError("bug")
            return super().observe(message, **kwargs)

    parsed = parse_all(
        [raw("devices/bad/sensor", b'{"t": 1}'), raw("devices/good/sensor", b'{"t": 2}')],
        prefix="devices",
        max_payload=MAX_PAYLOAD,
    )
    batch = build_batch(parsed, presence=FlakyPresence())
    assert list(batch.devices) == ["good"]
    assert [r[0] for r in batch.readings] == ["good"]
    assert [(d.reason, d.device_id, d.detail) for d in batch.dead_letters] == [
        (Reason.INTERNAL_ERROR, "bad", "RuntimeError: bug")
    ]


def test_dead_letters_keep_topic_and_detail_short() -> None:
    """A 60,000-character device id is kept as at most 512 characters of topic and a short
    detail, so hostile topics cannot fill the database."""
    topic = "devices/" + "x" * 60_000 + "/sensor"
    [dead] = batch_of(raw(topic, b'{"t": 1}')).dead_letters
    assert dead.reason is Reason.BAD_DEVICE_ID
    assert len(dead.topic) == 512
    assert dead.topic.endswith("\u2026")
    assert len(dead.detail) < 300
