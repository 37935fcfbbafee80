"""`mqtthub doctor` against real Mosquitto brokers configured with limits: connections,
packet sizes, keepalive and in-flight window (the CONNACK's Receive Maximum)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mqtthub.doctor.run import DoctorOptions
from support.doctor import doctor_checks
from support.mosquitto import MosquittoBroker, MosquittoFactory

pytestmark = pytest.mark.usefixtures("clean_environment")


def doctor(
    broker: MosquittoBroker, options: DoctorOptions | None = None, **flags: Any
) -> dict[str, dict[str, Any]]:
    flags["broker_url"] = f"mqtt://127.0.0.1:{broker.port}"
    return doctor_checks(flags, options)


def verdict(check: dict[str, Any]) -> tuple[str, str | None]:
    return check["status"], check["cause"]


def connect_packet(client_id: bytes) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, keepalive 60)."""
    return (
        bytes([0x10, 12 + len(client_id), 0, 4])
        + b"MQTT"
        + bytes([4, 2, 0, 60, 0, len(client_id)])
        + client_id
    )


def closed_at_once(broker: MosquittoBroker) -> bool:
    """Whether a new connection is closed by the broker before it says anything."""
    with socket.create_connection((broker.host, broker.port), timeout=2) as probe:
        try:
            return probe.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


@pytest.fixture
def occupied(mosquitto_factory: MosquittoFactory) -> Iterator[MosquittoBroker]:
    """A broker with max_connections 1 whose connections are all taken by clients.

    Mosquitto 2.0.11 counts a connection closed before CONNECT (like the fixture's
    readiness check) for a while, so clients connect until the broker denies new ones.
    """
    broker = mosquitto_factory(listener_extra="max_connections 1")
    held: list[socket.socket] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        client = socket.create_connection((broker.host, broker.port), timeout=2)
        client.sendall(connect_packet(f"holder-{len(held)}".encode()))
        try:
            answer = client.recv(4)
        except ConnectionResetError:
            answer = b""
        if answer == b"\x20\x02\x00\x00":  # CONNACK accepted: a slot taken
            held.append(client)
            continue
        client.close()
        if held and closed_at_once(broker):
            break
    else:
        pytest.fail("the broker never reached its connection limit")
    yield broker
    for client in held:
        client.close()


def test_a_broker_at_its_connection_limit(occupied: MosquittoBroker) -> None:
    """max_connections reached: Mosquitto closes new connections at once (on MQTT 3.1.1
    and 5 alike): too_many_connections on the tcp check, not protocol_unsupported."""
    started = time.monotonic()
    checks = doctor(occupied)
    assert time.monotonic() - started < 15
    assert verdict(checks["tcp"]) == ("fail", "too_many_connections"), checks["tcp"]
    assert "max_connections" in checks["tcp"]["fix"]
    assert "max_connections exceeded" in occupied.log_text()


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_message_size_limit_drops_a_device_sized_probe(
    mosquitto_factory: MosquittoFactory, version: str
) -> None:
    """message_size_limit 1000, a 4000-byte probe asked for: PUBACK 0x95 on MQTT 5, a
    silent drop on 3.1.1; both packet_too_large."""
    broker = mosquitto_factory(extra="message_size_limit 1000")
    checks = doctor(broker, DoctorOptions(payload_size=4000), mqtt_version=version)
    publish = checks["publish"]
    assert verdict(publish) == ("fail", "packet_too_large"), publish
    assert ("0x95" if version == "5" else "never delivered it") in publish["detail"]
    assert "message_size_limit" in publish["fix"]
    assert checks["subscribe"]["status"] == "pass"


def test_max_packet_size_below_the_default_probe_warns(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """max_packet_size 2000 under MQTTHUB_MAX_PAYLOAD (65536): the broker disconnects
    with 0x95; a warning (devices may send less), the announced limit shown."""
    broker = mosquitto_factory(listener_extra="max_packet_size 2000")
    checks = doctor(broker)
    publish = checks["publish"]
    assert verdict(publish) == ("warn", "packet_too_large"), publish
    assert "DISCONNECT 0x95" in publish["detail"]
    assert "Maximum Packet Size 2000" in publish["detail"]


def test_a_healthy_broker_shows_its_connack_limits(mosquitto_factory: MosquittoFactory) -> None:
    """max_inflight_messages 5 and max_keepalive 10 (60 s configured): Receive Maximum 5
    and Server Keep Alive 10 are shown, keepalive_rejected warns as before; the
    device-sized probe passes."""
    broker = mosquitto_factory(max_inflight_messages=5, max_keepalive=10)
    checks = doctor(broker)
    assert verdict(checks["mqtt_connect"]) == ("warn", "keepalive_rejected")
    publish = checks["publish"]
    assert publish["status"] == "pass", publish
    assert "a 65536-byte probe was delivered" in publish["detail"]
    assert "Receive Maximum 5" in publish["detail"]
    assert "Server Keep Alive 10 s" in publish["detail"]
