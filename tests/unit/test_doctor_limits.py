"""Unit tests for mqtthub.doctor.limits: connection limits, packet size, CONNACK limits."""

from __future__ import annotations

import pytest

from mqtthub.doctor.checks import Cause, Check, Outcome, passed
from mqtthub.doctor.limits import (
    AcceptEvidence,
    PayloadEvidence,
    check_accept,
    check_connect_limit,
    check_payload,
)
from mqtthub.doctor.mqtt_rules import Attempt, ConnectEvidence, check_connect

TCP_OK = passed("tcp", "broker.example:1883 accepts connections")
PUBLISH_OK = passed("publish", "published to devices/mqtthub-doctor/heartbeat")


def payload(**fields: object) -> PayloadEvidence:
    values: dict[str, object] = {
        "size": 65536,
        "explicit": False,
        "protocol": "MQTT 5",
        "puback_code": 0,
        "delivered": True,
    }
    return PayloadEvidence(**(values | fields))  # type: ignore[arg-type]


def test_closed_on_accept_is_a_connection_limit() -> None:
    check = check_accept(TCP_OK, AcceptEvidence("mqtt://broker.example:1883", True))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.TOO_MANY_CONNECTIONS)
    assert "max_connections" in (check.fix or "")


def test_a_connection_left_open_passes_unchanged() -> None:
    assert check_accept(TCP_OK, AcceptEvidence("mqtt://broker.example:1883", False)) is TCP_OK


@pytest.mark.parametrize(
    ("reason", "code", "said"),
    [("quota_exceeded", 0x97, "quota"), ("connection_rate_exceeded", 0x9F, "per second")],
)
def test_connack_quota_and_rate_refusals(reason: str, code: int, said: str) -> None:
    evidence = ConnectEvidence((Attempt("MQTT 5", reason, code),), "hub", "doctor-1")
    check = check_connect_limit(check_connect(evidence), evidence)
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.TOO_MANY_CONNECTIONS)
    assert said in check.detail
    assert f"{code:#x}" in check.detail


def test_other_connect_results_are_left_alone() -> None:
    refused = ConnectEvidence((Attempt("MQTT 5", "not_authorized", 0x87),), "hub", "d")
    check = check_connect(refused)
    assert check_connect_limit(check, refused) is check
    connected = ConnectEvidence((Attempt("MQTT 5", "connected"),), "hub", "d")
    check = check_connect(connected)
    assert check_connect_limit(check, connected) is check


def test_a_delivered_probe_passes_showing_the_connack_limits() -> None:
    check = check_payload(PUBLISH_OK, payload(receive_maximum=20, server_keepalive=30))
    assert check.status is Outcome.PASS
    assert "65536-byte probe was delivered" in check.detail
    assert "Receive Maximum 20" in check.detail
    assert "Server Keep Alive 30 s" in check.detail


def test_mqtt_311_announces_nothing() -> None:
    check = check_payload(PUBLISH_OK, payload(protocol="MQTT 3.1.1", puback_code=None))
    assert "announces no limits on MQTT 3.1.1" in check.detail


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"puback_code": 0x95, "delivered": False}, "PUBACK 0x95"),
        ({"disconnect_code": 0x95, "lost": True, "delivered": False}, "DISCONNECT 0x95"),
        ({"lost": True, "delivered": False, "puback_code": None}, "closed the connection"),
        ({"delivered": False, "protocol": "MQTT 3.1.1", "puback_code": None}, "never delivered"),
    ],
)
def test_each_way_a_broker_refuses_a_large_packet(fields: dict[str, object], said: str) -> None:
    check = check_payload(PUBLISH_OK, payload(**fields))
    assert (check.status, check.cause) == (Outcome.WARN, Cause.PACKET_TOO_LARGE)
    assert said in check.detail
    assert "MQTTHUB_MAX_PAYLOAD" in check.detail


def test_an_explicit_payload_size_fails_and_names_the_announced_limit() -> None:
    evidence = payload(explicit=True, puback_code=0x95, delivered=False, maximum_packet_size=2000)
    check = check_payload(PUBLISH_OK, evidence)
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.PACKET_TOO_LARGE)
    assert "Maximum Packet Size 2000" in check.detail
    assert "message_size_limit" in (check.fix or "")


def test_a_refused_publish_keeps_its_own_verdict() -> None:
    """The ACL warning on publish is kept; the probe adds its facts to it."""
    denied = Check("publish", Outcome.WARN, Cause.ACL_DENIED_PUBLISH, "refused", "acl")
    check = check_payload(denied, payload())
    assert (check.status, check.cause, check.fix) == (Outcome.WARN, Cause.ACL_DENIED_PUBLISH, "acl")
