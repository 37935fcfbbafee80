"""What every doctor check is made of (pure, no I/O): a verdict (:class:`Outcome`), a
stable cause code (:class:`Cause`) and one report line with its fix (:class:`Check`).

Every rule takes one evidence record and returns one :class:`Check`. Cause codes are
stable: tests and users rely on them. The rules live by layer in
:mod:`mqtthub.doctor.network_rules`, :mod:`mqtthub.doctor.mqtt_rules`,
:mod:`mqtthub.doctor.traffic_rules`, :mod:`mqtthub.doctor.websocket_rules`,
:mod:`mqtthub.doctor.mtls` and :mod:`mqtthub.doctor.limits`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """A check's verdict."""

    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


class Cause(StrEnum):
    """Why a check did not pass."""

    CONFIG_INVALID = "config_invalid"
    DNS_FAILURE = "dns_failure"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_TIMEOUT = "connection_timeout"
    BROKER_NOT_RUNNING = "broker_not_running"
    TLS_EXPECTED = "tls_expected"
    TLS_NOT_OFFERED = "tls_not_offered"
    TLS_UNKNOWN_CA = "tls_unknown_ca"
    TLS_HOSTNAME_MISMATCH = "tls_hostname_mismatch"
    TLS_CERT_EXPIRED = "tls_cert_expired"
    PROTOCOL_UNSUPPORTED = "protocol_unsupported"
    MQTT_VERSION_UNSUPPORTED = "mqtt_version_unsupported"
    BAD_CREDENTIALS = "bad_credentials"
    NOT_AUTHORIZED = "not_authorized"
    CLIENT_ID_REJECTED = "client_id_rejected"
    KEEPALIVE_REJECTED = "keepalive_rejected"
    SERVER_UNAVAILABLE = "server_unavailable"
    ACL_DENIED_SUBSCRIBE = "acl_denied_subscribe"
    ACL_DENIED_PUBLISH = "acl_denied_publish"
    CLIENT_ID_CONFLICT = "client_id_conflict"
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    NO_DEVICE_TRAFFIC = "no_device_traffic"
    ENDPOINT_MISMATCH = "endpoint_mismatch"
    PIPELINE_NOT_STORING = "pipeline_not_storing"
    PROFILE_NOT_ENABLED = "profile_not_enabled"
    TOPIC_PREFIX_MISMATCH = "topic_prefix_mismatch"
    UNMATCHED_TOPICS = "unmatched_topics"
    # MQTT over WebSockets: the HTTP upgrade layer (rules in doctor/websocket_rules.py).
    WS_TLS_EXPECTED = "ws_tls_expected"
    WS_TLS_NOT_OFFERED = "ws_tls_not_offered"
    WS_NOT_HTTP = "ws_not_http"
    WS_NOT_WEBSOCKET_SERVER = "ws_not_websocket_server"
    WS_PATH_NOT_FOUND = "ws_path_not_found"
    WS_UPGRADE_REFUSED = "ws_upgrade_refused"
    WS_NO_MQTT_SUBPROTOCOL = "ws_no_mqtt_subprotocol"
    # Client certificates (rules in doctor/mtls.py) and broker limits (doctor/limits.py).
    CLIENT_CERT_REQUIRED = "client_cert_required"
    CLIENT_CERT_REJECTED = "client_cert_rejected"
    CLIENT_CERT_KEY_MISMATCH = "client_cert_key_mismatch"
    CLIENT_CERT_EXPIRED = "client_cert_expired"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SESSION_LOST = "session_lost"
    PACKET_TOO_LARGE = "packet_too_large"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    id: str
    status: Outcome
    cause: Cause | None
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "status": str(self.status),
            "cause": str(self.cause) if self.cause else None,
            "detail": self.detail,
            "fix": self.fix,
        }


def passed(check_id: str, detail: str) -> Check:
    """A passing check."""
    return Check(check_id, Outcome.PASS, None, detail)


def skipped(check_id: str, why: str) -> Check:
    """A check that did not run."""
    return Check(check_id, Outcome.SKIP, None, why)


def evidence_dict(evidence: Any) -> dict[str, Any]:
    """Evidence as JSON-ready data (for --json)."""
    return asdict(evidence)
