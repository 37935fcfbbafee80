"""Why a connection attempt failed: the error types, their reason codes and sentences.

:class:`mqtthub.transport.client.MqttTransport` raises and catches these; the reason codes
go into connection events and the link state, the sentences and hints into the log.
"""

from __future__ import annotations

import ssl

from mqtthub.errors import BrokerError
from mqtthub.transport.websocket import WebSocketUpgradeError


class ClientCertRefusedError(BrokerError):
    """The broker refused our client certificate (or wants one): ``reason`` is the cause
    code (``client_cert_required``, ``client_cert_rejected``, ``client_cert_expired``)."""

    def __init__(self, reason: str, sentence: str) -> None:
        """Keep the cause code; the message is the sentence for the log."""
        super().__init__(sentence)
        self.reason = reason


class NoConnackError(BrokerError):
    """The broker closed the connection before answering CONNECT."""


class ConnackTimeoutError(TimeoutError):
    """The broker took the CONNECT (TCP and TLS were up) but sent no CONNACK in time."""


class CredentialsLikelyError(BrokerError):
    """The broker closed the connection before CONNACK with MQTT 5 and with 3.1.1 (or with
    the 3.1.1 that was set) although credentials were sent: a wrong username or password is
    the likely cause (rumqttd answers one this way)."""

    reason = "probable_bad_credentials"


def failure_reason(exc: BaseException) -> str:
    """The reason code of a failed connection attempt (connection events, link state)."""
    if isinstance(exc, ClientCertRefusedError | CredentialsLikelyError):
        return exc.reason
    if isinstance(exc, WebSocketUpgradeError):
        return "websocket_upgrade_failed"
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, TimeoutError):
        return "connection_timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_verification_failed"
    if isinstance(exc, ssl.SSLError):
        return "tls_error"
    if isinstance(exc, NoConnackError):
        return "closed_before_connack"
    return "network_error"


def describe_failure(exc: BaseException) -> str:
    """A failed connection attempt in a sentence for the log, with what to check."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there; is the broker running?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message} (check MQTTHUB_CA_FILE)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc} (is this a TLS port?)"
    return str(exc) or type(exc).__name__


def refusal_hint(reason: str) -> str:
    """What to do about a CONNACK refusal ``reason``."""
    return {
        "bad_credentials": "check user:password in MQTTHUB_BROKER_URL or MQTT_USERNAME/PASSWORD",
        "not_authorized": "the broker rejects these credentials or this user "
        "(Mosquitto answers a wrong password this way); check username/password",
        "client_id_rejected": "the broker rejects the client id; set MQTTHUB_CLIENT_ID",
        "unsupported_protocol": "the broker speaks neither MQTT 5 nor 3.1.1",
        "banned": "the broker has banned this client",
    }.get(reason, "see the broker's log")
