"""The receive path reads PUBLISH packets itself: topic, packet id and payload, with MQTT 5
properties skipped whatever their length."""

from __future__ import annotations

from typing import Any

from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from mqtthub.transport.connection import ManagedClient, _Connection
from support.fake_broker import varint


def _publish_body(topic: bytes, packet_id: int | None, properties: bytes | None) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if packet_id is not None:
        body += packet_id.to_bytes(2, "big")
    if properties is not None:
        body += varint(len(properties)) + properties
    return body + b'{"t": 1}'


def _received(version: int, header: int, body: bytes) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    client = ManagedClient("parse-test")
    _Connection(client, version, lambda *message: seen.append(message))
    client._package_handler._handle_publish_packet(header, body)
    return [(t, p, q, r, d, None if a is None else a.packet_id) for t, p, q, r, d, a in seen]


def test_mqtt5_properties_of_any_length_are_skipped() -> None:
    """A user property and a message expiry, 200+ bytes of properties (a two-byte length)."""
    user_property = b"\x26" + (5).to_bytes(2, "big") + b"owner" + (190).to_bytes(2, "big")
    properties = b"\x02" + (60).to_bytes(4, "big") + user_property + b"x" * 190
    assert len(properties) > 127
    body = _publish_body(b"devices/d1/sensor", 513, properties)
    assert _received(MQTTv50, 0x32 | 0x08 | 0x01, body) == [
        ("devices/d1/sensor", b'{"t": 1}', 1, True, True, 513)
    ]


def test_mqtt311_and_qos0_have_no_packet_id_or_properties() -> None:
    """MQTT 3.1.1 has no property block; QoS 0 has no packet id and no acknowledgement."""
    assert _received(MQTTv311, 0x30, _publish_body(b"devices/d1/status", None, None)) == [
        ("devices/d1/status", b'{"t": 1}', 0, False, False, None)
    ]
    assert _received(MQTTv50, 0x30, _publish_body(b"devices/d1/status", None, b"")) == [
        ("devices/d1/status", b'{"t": 1}', 0, False, False, None)
    ]
