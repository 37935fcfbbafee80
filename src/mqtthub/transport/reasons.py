"""MQTT reason codes as stable snake_case names (pure tables, no I/O)."""

from __future__ import annotations

# MQTT 3.1.1 CONNACK return codes.
CONNACK_V3 = {
    1: "unsupported_protocol",
    2: "client_id_rejected",
    3: "server_unavailable",
    4: "bad_credentials",
    5: "not_authorized",
}

# MQTT 5 reason codes used in CONNACK and DISCONNECT.
REASON_V5 = {
    0x00: "normal_disconnect",
    0x04: "disconnect_with_will",
    0x80: "unspecified_error",
    0x81: "malformed_packet",
    0x82: "protocol_error",
    0x83: "implementation_specific_error",
    0x84: "unsupported_protocol",
    0x85: "client_id_rejected",
    0x86: "bad_credentials",
    0x87: "not_authorized",
    0x88: "server_unavailable",
    0x89: "server_busy",
    0x8A: "banned",
    0x8B: "server_shutting_down",
    0x8C: "bad_authentication_method",
    0x8D: "keepalive_timeout",
    0x8E: "client_id_conflict",
    0x8F: "topic_filter_invalid",
    0x90: "topic_name_invalid",
    0x93: "receive_maximum_exceeded",
    0x94: "topic_alias_invalid",
    0x95: "packet_too_large",
    0x96: "message_rate_too_high",
    0x97: "quota_exceeded",
    0x98: "administrative_action",
    0x99: "payload_format_invalid",
    0x9A: "retain_not_supported",
    0x9B: "qos_not_supported",
    0x9C: "use_another_server",
    0x9D: "server_moved",
    0x9E: "shared_subscriptions_not_supported",
    0x9F: "connection_rate_exceeded",
    0xA0: "maximum_connect_time",
    0xA1: "subscription_ids_not_supported",
    0xA2: "wildcard_subscriptions_not_supported",
}

# Refusals that a quick retry cannot fix: retry only at the backoff cap.
PERMANENT = frozenset(
    {
        "unsupported_protocol",
        "client_id_rejected",
        "bad_credentials",
        "not_authorized",
        "banned",
        "bad_authentication_method",
    }
)

# SUBACK codes at or above this refuse the subscription.
SUBACK_FAILURE = 0x80


def connack_reason(code: int, *, mqtt5: bool) -> str:
    """Name a CONNACK code for the protocol version that produced it."""
    if mqtt5 and code in CONNACK_V3:
        # A 3.1.1-only broker answers an MQTT 5 CONNECT with a 3.1.1 return code (1).
        return CONNACK_V3[code]
    table = REASON_V5 if mqtt5 else CONNACK_V3
    return table.get(code, f"code_{code}")


def disconnect_reason(code: int | None) -> str:
    """Name an MQTT 5 DISCONNECT reason code; None means the connection was lost."""
    if code is None:
        return "connection_lost"
    return REASON_V5.get(code, f"code_{code:#x}")


def describe_disconnect(reason: str, client_id: str) -> str:
    """A sentence for people about why the broker connection ended."""
    return {
        "client_id_conflict": f"another client connected with client id {client_id}; every "
        "instance needs its own MQTTHUB_CLIENT_ID",
        "keepalive_timeout": "the broker heard nothing within 1.5 x keepalive",
        "connection_lost": "the connection closed without a DISCONNECT from the broker",
        "server_shutting_down": "the broker is shutting down",
        "session_taken_over": f"another client took over the session of {client_id}",
    }.get(reason, f"the broker disconnected us: {reason}")


# TLS alerts a broker sends about our client certificate, by OpenSSL's reason name
# (``ssl.SSLError.reason``). The broker verifies the certificate during the handshake on
# TLS 1.2 and right after it on TLS 1.3, so the alert may arrive on the first read.
CLIENT_CERT_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "client_cert_required",
    "TLSV1_ALERT_UNKNOWN_CA": "client_cert_rejected",
    "SSLV3_ALERT_BAD_CERTIFICATE": "client_cert_rejected",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "client_cert_rejected",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "client_cert_rejected",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "client_cert_rejected",
    "TLSV1_ALERT_ACCESS_DENIED": "client_cert_rejected",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "client_cert_expired",
}
#: TLS 1.2 has no "certificate required" alert: a broker that wants a certificate and
#: gets none fails the handshake with this one.
HANDSHAKE_FAILURE_ALERT = "SSLV3_ALERT_HANDSHAKE_FAILURE"


def client_cert_alert(alert: str | None, *, sent_cert: bool) -> str | None:
    """Name a TLS alert from the broker that is about our client certificate.

    Args:
        alert: OpenSSL's reason, e.g. ``TLSV1_ALERT_UNKNOWN_CA`` (None: no alert).
        sent_cert: whether a client certificate was configured (and so sent).

    Returns:
        ``client_cert_required``, ``client_cert_rejected``, ``client_cert_expired``, or
        None when the alert says nothing about a client certificate.
    """
    if alert is None:
        return None
    if alert == HANDSHAKE_FAILURE_ALERT and not sent_cert:
        return "client_cert_required"
    return CLIENT_CERT_ALERTS.get(alert)


def alert_words(alert: str) -> str:
    """``TLSV1_ALERT_UNKNOWN_CA`` -> ``unknown ca`` (the alert as OpenSSL prints it)."""
    return alert.split("_ALERT_", 1)[-1].replace("_", " ").lower()


def describe_client_cert_alert(reason: str, alert: str) -> str:
    """A sentence for the log about a broker's verdict on our client certificate."""
    heard = f"TLS alert '{alert_words(alert)}'"
    return {
        "client_cert_required": f"the broker requires a client certificate and none was sent "
        f"({heard}); set MQTTHUB_CLIENT_CERT and MQTTHUB_CLIENT_KEY",
        "client_cert_rejected": f"the broker rejected the client certificate ({heard}): it is "
        "not signed by a CA the broker trusts for clients; use a certificate issued by the "
        "broker's client CA in MQTTHUB_CLIENT_CERT/MQTTHUB_CLIENT_KEY",
        "client_cert_expired": f"the broker rejected the client certificate as expired "
        f"({heard}); renew the certificate in MQTTHUB_CLIENT_CERT",
    }.get(reason, f"the broker ended the TLS handshake ({heard})")
