"""Broker limits: connection limits, packet size, the CONNACK's limits (pure rules).

What a client can observe of a broker's limits, and what it cannot:

- a connection limit (Mosquitto ``max_connections``) closes new connections right after
  accepting them, before any MQTT is spoken (EMQX and others may instead answer MQTT 5
  CONNACK 0x97 "quota exceeded" or 0x9F "connection rate exceeded");
- a packet size limit (Mosquitto ``message_size_limit``: PUBACK 0x95 on MQTT 5, a silent
  drop on 3.1.1; ``max_packet_size``: CONNACK Maximum Packet Size and a DISCONNECT 0x95
  or a plain close) is found by publishing a probe of the size devices send;
- Receive Maximum (Mosquitto announces its ``max_inflight_messages``) and Server Keep
  Alive (``max_keepalive``) come in the MQTT 5 CONNACK and are reported;
- a per-client queue limit (``max_queued_messages``) is not announced: only messages
  missing after a session was away reveal it, which a probe of seconds cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqtthub.doctor.checks import Cause, Check, Outcome
from mqtthub.doctor.mqtt_rules import ConnectEvidence

CONNECTION_LIMIT_FIX = (
    "raise the broker's connection limit (Mosquitto: max_connections in the listener; "
    "EMQX: listeners.tcp.default.max_connections) or find the clients holding the "
    "connections (Mosquitto's log, $SYS/broker/clients/connected)"
)
QUOTA_REASONS = frozenset({"quota_exceeded", "connection_rate_exceeded"})


@dataclass(frozen=True, slots=True)
class AcceptEvidence:
    """What a new TCP connection saw before it said anything."""

    address: str
    closed_on_accept: bool


def check_accept(tcp: Check, evidence: AcceptEvidence) -> Check:
    """A broker that closes every new connection at once is at its connection limit."""
    if tcp.status is Outcome.FAIL or not evidence.closed_on_accept:
        return tcp
    return Check(
        "tcp",
        Outcome.FAIL,
        Cause.TOO_MANY_CONNECTIONS,
        f"{evidence.address} accepts TCP connections and closes them at once, before a "
        "word of MQTT: the broker is at its connection limit (Mosquitto logs 'denied: "
        "max_connections exceeded'), or a proxy in front of it has no broker behind it",
        CONNECTION_LIMIT_FIX,
    )


def check_connect_limit(connect: Check, evidence: ConnectEvidence) -> Check:
    """CONNACK 0x97 (quota exceeded) or 0x9F (connection rate exceeded): a connection limit."""
    if evidence.connected is not None:
        return connect
    refusal = next((a for a in evidence.attempts if a.reason in QUOTA_REASONS), None)
    if refusal is None:
        return connect
    what = (
        "too many new connections per second"
        if refusal.reason == "connection_rate_exceeded"
        else "its connection quota is used up"
    )
    return Check(
        "mqtt_connect",
        Outcome.FAIL,
        Cause.TOO_MANY_CONNECTIONS,
        f"the broker refused CONNECT with {refusal.protocol} {refusal.reason} "
        f"({refusal.code:#x}): {what}",
        CONNECTION_LIMIT_FIX
        + (
            "; or slow down reconnects (its connection rate limit)"
            if refusal.reason == "connection_rate_exceeded"
            else ""
        ),
    )


@dataclass(frozen=True, slots=True)
class PayloadEvidence:
    """A probe of ``size`` bytes published and awaited, and the CONNACK's limits.

    Attributes:
        size: the probe's payload size in bytes.
        explicit: the size was asked for (--payload-size), not the default.
        protocol: the MQTT version of the connection.
        puback_code: MQTT 5 PUBACK reason (None: none, or 3.1.1).
        delivered: the probe came back through the subscription.
        disconnect_code: the broker's DISCONNECT reason after the probe, if it sent one.
        lost: the connection was lost after the probe.
        maximum_packet_size: CONNACK Maximum Packet Size (MQTT 5), if announced.
        receive_maximum: CONNACK Receive Maximum (MQTT 5), if announced.
        server_keepalive: CONNACK Server Keep Alive (MQTT 5), if announced.
    """

    size: int
    explicit: bool
    protocol: str
    puback_code: int | None
    delivered: bool
    disconnect_code: int | None = None
    lost: bool = False
    maximum_packet_size: int | None = None
    receive_maximum: int | None = None
    server_keepalive: int | None = None


def _announced(evidence: PayloadEvidence) -> str:
    if evidence.protocol != "MQTT 5":
        return "the broker announces no limits on MQTT 3.1.1"
    parts = [
        f"Receive Maximum {evidence.receive_maximum or 65535} (in-flight QoS 1 messages "
        "the broker takes from us; Mosquitto announces its max_inflight_messages)",
        f"Maximum Packet Size {evidence.maximum_packet_size or 'not limited'}",
    ]
    if evidence.server_keepalive is not None:
        parts.append(f"Server Keep Alive {evidence.server_keepalive} s")
    return "CONNACK limits: " + ", ".join(parts)


def check_payload(publish: Check, evidence: PayloadEvidence) -> Check:
    """A probe of the size devices send must get through; the CONNACK's limits are shown."""
    limits = _announced(evidence)
    size = f"{evidence.size}-byte"
    if publish.status is Outcome.FAIL:
        return publish
    too_large = (
        evidence.puback_code == 0x95
        or evidence.disconnect_code == 0x95
        or evidence.lost
        or (not evidence.delivered and evidence.puback_code in (None, 0))
    )
    if not too_large:
        return Check(
            "publish",
            publish.status,
            publish.cause,
            f"{publish.detail}; a {size} probe was delivered; {limits}",
            publish.fix,
        )
    if evidence.puback_code == 0x95:
        how = "refused it with PUBACK 0x95 (packet too large) and dropped it"
    elif evidence.disconnect_code == 0x95:
        how = "disconnected us with DISCONNECT 0x95 (packet too large)"
    elif evidence.lost:
        how = "closed the connection (Mosquitto's max_packet_size on MQTT 3.1.1)"
    else:
        how = (
            "acknowledged it and never delivered it, while the small probe was delivered "
            "(Mosquitto's message_size_limit drops silently on MQTT 3.1.1)"
        )
    bound = (
        f" (it announced Maximum Packet Size {evidence.maximum_packet_size})"
        if evidence.maximum_packet_size
        else ""
    )
    setting = "--payload-size" if evidence.explicit else "MQTTHUB_MAX_PAYLOAD"
    return Check(
        "publish",
        Outcome.FAIL if evidence.explicit else Outcome.WARN,
        Cause.PACKET_TOO_LARGE,
        f"{publish.detail}; a {size} probe ({setting}) was too large for the broker: it "
        f"{how}{bound}; {limits}",
        "raise the broker's limit above the largest payload devices send (Mosquitto: "
        "message_size_limit / max_packet_size; EMQX: mqtt.max_packet_size), or make the "
        "devices send smaller messages; to check the size devices really send, use "
        "--payload-size",
    )
