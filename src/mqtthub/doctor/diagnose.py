"""Map what the probes saw (evidence) to checks with a cause and a fix (pure, no I/O).

Every rule takes one evidence record and returns one :class:`Check`. Cause codes are
stable: tests and users rely on them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from mqtthub.profiles import PROFILE_NAMES


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


# ---------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class ConfigEvidence:
    """The effective settings (secrets masked), or why they could not be loaded."""

    summary: dict[str, Any]
    error: str | None = None
    contradictions: tuple[str, ...] = ()


def check_config(evidence: ConfigEvidence) -> Check:
    """Invalid settings fail; contradictory ones warn."""
    if evidence.error:
        variables = [
            line.split(":", 1)[0]
            for line in evidence.error.splitlines()
            if re.fullmatch(r"[A-Z][A-Z0-9_]*( / [A-Z][A-Z0-9_]*)*", line.split(":", 1)[0])
        ]
        named = " and ".join(dict.fromkeys(variables)) if variables else "the settings"
        return Check(
            "config",
            Outcome.FAIL,
            Cause.CONFIG_INVALID,
            evidence.error,
            f"correct {named} (see the message above)",
        )
    shown = ", ".join(f"{k}={v}" for k, v in evidence.summary.items())
    if evidence.contradictions:
        return Check(
            "config",
            Outcome.WARN,
            Cause.CONFIG_INVALID,
            f"{shown}; " + "; ".join(evidence.contradictions),
            "make the broker settings agree: keep only MQTTHUB_BROKER_URL, with mqtts:// for "
            "a TLS port",
        )
    return passed("config", shown)


# ---------------------------------------------------------------- dns and tcp


@dataclass(frozen=True, slots=True)
class NetworkEvidence:
    """Name resolution and the TCP connect to the broker address."""

    host: str
    port: int
    addresses: tuple[str, ...] = ()
    dns_error: str | None = None
    tcp: str = "open"  # open | refused | timeout | error
    tcp_error: str | None = None
    local: bool = False
    broker_processes: tuple[str, ...] = ()


def check_dns(evidence: NetworkEvidence) -> Check:
    """The broker host must resolve."""
    if evidence.dns_error:
        return Check(
            "dns",
            Outcome.FAIL,
            Cause.DNS_FAILURE,
            f"{evidence.host} does not resolve: {evidence.dns_error}",
            "check the host in MQTTHUB_BROKER_URL (or MQTT_BROKER_HOST), or use its IP address",
        )
    return passed("dns", f"{evidence.host} -> {', '.join(evidence.addresses)}")


def check_tcp(evidence: NetworkEvidence) -> Check:
    """Something must accept TCP connections at the broker address."""
    where = f"{evidence.host}:{evidence.port}"
    if evidence.tcp == "open":
        return passed("tcp", f"{where} accepts connections")
    if evidence.tcp == "timeout":
        return Check(
            "tcp",
            Outcome.FAIL,
            Cause.CONNECTION_TIMEOUT,
            f"no answer from {where} (packets are dropped: a firewall, a wrong address, or "
            "a broker too busy to accept)",
            f"check that {where} is the broker's address and that a firewall lets port "
            f"{evidence.port} through",
        )
    if evidence.tcp == "refused" and evidence.local and not evidence.broker_processes:
        return Check(
            "tcp",
            Outcome.FAIL,
            Cause.BROKER_NOT_RUNNING,
            f"connection to {where} refused and no broker process runs on this machine",
            "start the broker (e.g. `mosquitto -d -c /etc/mosquitto/mosquitto.conf`), or let "
            "`mqtthub serve` start its embedded one (MQTTHUB_EMBEDDED_BROKER=auto)",
        )
    if evidence.tcp == "refused":
        running = (
            f"; broker processes here: {', '.join(evidence.broker_processes)}"
            if evidence.broker_processes
            else ""
        )
        return Check(
            "tcp",
            Outcome.FAIL,
            Cause.CONNECTION_REFUSED,
            f"connection to {where} refused: nothing listens on port {evidence.port}{running}",
            "point MQTTHUB_BROKER_URL at the port the broker listens on (1883 plain, 8883 "
            "TLS), or start the broker",
        )
    return Check(
        "tcp",
        Outcome.FAIL,
        Cause.CONNECTION_REFUSED,
        f"cannot connect to {where}: {evidence.tcp_error}",
        "check MQTTHUB_BROKER_URL and the network path to the broker",
    )


# ---------------------------------------------------------------- tls


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What the broker's certificate says."""

    subject: str
    issuer: str
    names: tuple[str, ...]
    not_after: str
    days_left: float


@dataclass(frozen=True, slots=True)
class TlsEvidence:
    """Whether the port speaks TLS, and how verification against the settings went."""

    configured: bool
    offered: bool
    cert: CertInfo | None = None
    verify_error: str | None = None
    verify_code: int | None = None
    host: str = ""
    ca_file: str | None = None


# OpenSSL X509_V_ERR codes.
_EXPIRED = frozenset({10})
_NOT_YET_VALID = frozenset({9})
_HOSTNAME = frozenset({62, 64})
_UNKNOWN_CA = frozenset({2, 18, 19, 20, 21})
EXPIRY_WARNING_DAYS = 30
MIN_KEEPALIVE = 5  # Settings.keepalive ge=5


def check_tls(evidence: TlsEvidence) -> Check:
    """The client's TLS setting must match the port, and the certificate must verify."""
    cert = _describe_cert(evidence.cert)
    if evidence.offered and not evidence.configured:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.TLS_EXPECTED,
            f"the port speaks TLS but the client is configured for plain MQTT; {cert}",
            "use mqtts:// in MQTTHUB_BROKER_URL and set MQTTHUB_CA_FILE to the CA that signed "
            "the broker's certificate",
        )
    if evidence.configured and not evidence.offered:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.TLS_NOT_OFFERED,
            "the client is configured for TLS but the port speaks plain MQTT",
            "use mqtt:// in MQTTHUB_BROKER_URL for this port, or the broker's TLS port (8883)",
        )
    if not evidence.configured:
        return passed("tls", "plain MQTT on both sides (no TLS)")
    if evidence.verify_error is not None:
        return _tls_verify_failure(evidence, cert)
    if evidence.cert is not None and evidence.cert.days_left < EXPIRY_WARNING_DAYS:
        return Check(
            "tls",
            Outcome.WARN,
            None,
            f"certificate expires in {evidence.cert.days_left:.0f} days; {cert}",
            "renew the broker certificate",
        )
    return passed("tls", f"certificate verified; {cert}")


def _tls_verify_failure(evidence: TlsEvidence, cert: str) -> Check:
    code = evidence.verify_code
    if code in _EXPIRED:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.TLS_CERT_EXPIRED,
            f"the broker's certificate has expired; {cert}",
            "renew the broker's certificate (the client cannot work around an expired one)",
        )
    if code in _HOSTNAME:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.TLS_HOSTNAME_MISMATCH,
            f"the certificate does not name {evidence.host}; {cert}",
            "connect by a name the certificate lists (MQTTHUB_BROKER_URL), or set "
            "MQTTHUB_TLS_INSECURE=true to skip only the hostname check (the chain is still "
            "verified)",
        )
    if code is not None and code not in _UNKNOWN_CA:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.TLS_CERT_EXPIRED if code in _NOT_YET_VALID else None,
            f"the broker's certificate does not verify: {evidence.verify_error} "
            f"(OpenSSL code {code}); {cert}",
            "check this machine's clock against the certificate's validity period"
            if code in _NOT_YET_VALID
            else "see the OpenSSL message above; the broker's certificate must be fixed",
        )
    ca = evidence.ca_file or "the system CA store"
    return Check(
        "tls",
        Outcome.FAIL,
        Cause.TLS_UNKNOWN_CA,
        f"the certificate is not signed by a CA in {ca} ({evidence.verify_error}); {cert}",
        "set MQTTHUB_CA_FILE to the CA certificate that signed the broker's certificate "
        "(its issuer is shown above)",
    )


def _describe_cert(cert: CertInfo | None) -> str:
    if cert is None:
        return "no certificate seen"
    return (
        f"subject {cert.subject}, issuer {cert.issuer}, names {', '.join(cert.names) or '-'}, "
        f"valid until {cert.not_after}"
    )


# ---------------------------------------------------------------- mqtt connect


@dataclass(frozen=True, slots=True)
class Attempt:
    """One CONNECT attempt."""

    protocol: str
    reason: str  # connected | a CONNACK reason name | closed_before_connack | timeout
    code: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectEvidence:
    """How CONNECT went with MQTT 5 and 3.1.1."""

    attempts: tuple[Attempt, ...]
    username: str | None = None
    client_id: str = ""
    requested_keepalive: int = 60
    server_keepalive: int | None = None
    broker_version: str | None = None
    #: The protocol MQTTHUB_MQTT_VERSION forces (``MQTT 5`` / ``MQTT 3.1.1``), else None.
    forced: str | None = None
    #: With a forced version that got no connection: the other version, tried only to
    #: name the cause (serve would not use it).
    unforced: Attempt | None = None

    @property
    def connected(self) -> Attempt | None:
        """The attempt that connected, if any."""
        return next((a for a in self.attempts if a.reason == "connected"), None)


_NO_ANSWER = frozenset({"unsupported_protocol", "closed_before_connack", "timeout"})
_SETTING_VALUES = {"MQTT 5": "5", "MQTT 3.1.1": "3.1.1"}


def _forced_version(evidence: ConnectEvidence, tried: str) -> Check | None:
    """MQTTHUB_MQTT_VERSION forces a version the broker does not answer, and it accepts
    the other one."""
    other = evidence.unforced
    if evidence.forced is None or other is None or other.reason != "connected":
        return None
    if not all(a.reason in _NO_ANSWER for a in evidence.attempts):
        return None
    forced, setting = evidence.forced, _SETTING_VALUES[evidence.forced]
    return Check(
        "mqtt_connect",
        Outcome.FAIL,
        Cause.MQTT_VERSION_UNSUPPORTED,
        f"the broker does not accept {forced}, which MQTTHUB_MQTT_VERSION={setting} forces; "
        f"it accepts {other.protocol}: {tried}",
        f"set MQTTHUB_MQTT_VERSION=auto (mqtthub then uses the version the broker speaks) or "
        f"MQTTHUB_MQTT_VERSION={_SETTING_VALUES[other.protocol]}",
    )


def _credentials_likely(evidence: ConnectEvidence, tried: str) -> Check | None:
    """Credentials sent and the connection closed before CONNACK on MQTT 3.1.1, which
    every broker speaks: rumqttd answers a wrong password this way."""
    attempts = [*evidence.attempts, *([evidence.unforced] if evidence.unforced else [])]
    v311 = next((a for a in attempts if a.protocol == "MQTT 3.1.1"), None)
    if not evidence.username or v311 is None or v311.reason != "closed_before_connack":
        return None
    if not all(a.reason in _NO_ANSWER for a in attempts):
        return None
    return Check(
        "mqtt_connect",
        Outcome.FAIL,
        Cause.BAD_CREDENTIALS,
        f"likely a wrong username or password: the broker closed the connection before "
        f"answering CONNECT ({tried}) although credentials were sent as user "
        f"{evidence.username} (rumqttd refuses credentials this way, without a CONNACK)",
        "check the username and password (MQTTHUB_BROKER_URL user:password, or "
        "MQTT_USERNAME / MQTT_PASSWORD) against the broker's configuration",
    )


_CONNACK_CAUSES = {
    "bad_credentials": (
        Cause.BAD_CREDENTIALS,
        "set the right username and password (MQTTHUB_BROKER_URL user:password, or "
        "MQTT_USERNAME / MQTT_PASSWORD)",
    ),
    "not_authorized": (
        Cause.NOT_AUTHORIZED,
        "check the username and password (Mosquitto answers a wrong password with 'not "
        "authorized'), and that the broker allows this user (MQTT_USERNAME/MQTT_PASSWORD or "
        "user:password in MQTTHUB_BROKER_URL)",
    ),
    "client_id_rejected": (
        Cause.CLIENT_ID_REJECTED,
        "set MQTTHUB_CLIENT_ID to an id the broker accepts (some brokers require a prefix "
        "or a shorter id)",
    ),
    "server_unavailable": (
        Cause.SERVER_UNAVAILABLE,
        "the broker is up but cannot take clients now; check its log and load",
    ),
    "server_busy": (
        Cause.SERVER_UNAVAILABLE,
        "the broker is up but cannot take clients now; check its log and load",
    ),
    "banned": (Cause.NOT_AUTHORIZED, "the broker banned this client; ask its administrator"),
}


def check_connect(evidence: ConnectEvidence) -> Check:
    """CONNACK must accept us with MQTT 5 or 3.1.1."""
    tried = "; ".join(
        f"{a.protocol}: {a.reason}" + (f" (code {a.code:#x})" if a.code is not None else "")
        for a in evidence.attempts
    )
    if evidence.unforced is not None:
        other = evidence.unforced
        tried += f"; {other.protocol} (tried only to name the cause): {other.reason}"
    connected = evidence.connected
    if connected is None:
        found = _forced_version(evidence, tried) or _credentials_likely(evidence, tried)
        if found is not None:
            return found
        refusal = next((a for a in evidence.attempts if a.reason in _CONNACK_CAUSES), None)
        if refusal is not None:
            cause, fix = _CONNACK_CAUSES[refusal.reason]
            who = f"user {evidence.username}" if evidence.username else "anonymous clients"
            return Check("mqtt_connect", Outcome.FAIL, cause, f"{tried}; as {who}", fix)
        if all(
            a.reason in {"unsupported_protocol", "closed_before_connack"} for a in evidence.attempts
        ):
            versions = (
                f"{evidence.forced} (which MQTTHUB_MQTT_VERSION forces)"
                if evidence.forced and evidence.unforced is None
                else "MQTT 5 nor 3.1.1"
            )
            neither = "" if evidence.forced and evidence.unforced is None else "neither "
            return Check(
                "mqtt_connect",
                Outcome.FAIL,
                Cause.PROTOCOL_UNSUPPORTED,
                f"the broker accepts {neither}{versions}: {tried}",
                "check that this port is an MQTT listener (not websockets or another "
                "service) and that the broker speaks MQTT 3.1.1 or 5",
            )
        if any(a.code is not None for a in evidence.attempts):
            return Check(
                "mqtt_connect",
                Outcome.FAIL,
                Cause.SERVER_UNAVAILABLE,
                f"the broker refused CONNECT: {tried}",
                "check the broker's log for why it refused this client",
            )
        return Check(
            "mqtt_connect",
            Outcome.FAIL,
            Cause.SERVER_UNAVAILABLE,
            f"no CONNACK: {tried}",
            "check the broker's log; it accepted TCP but did not answer CONNECT",
        )
    broker = f", broker {evidence.broker_version}" if evidence.broker_version else ""
    detail = f"connected with {connected.protocol} as {evidence.client_id}{broker}; tried {tried}"
    server = evidence.server_keepalive
    if server is not None and server < evidence.requested_keepalive:
        return Check(
            "mqtt_connect",
            Outcome.WARN,
            Cause.KEEPALIVE_REJECTED,
            f"{detail}; the broker caps keepalive at {server} s (we asked for "
            f"{evidence.requested_keepalive} s: its max_keepalive is lower)",
            f"set MQTTHUB_KEEPALIVE={server} or less (or raise max_keepalive on the broker)"
            if server >= MIN_KEEPALIVE
            else f"raise max_keepalive on the broker to at least {MIN_KEEPALIVE} (mqtthub's "
            "lowest MQTTHUB_KEEPALIVE)",
        )
    return passed("mqtt_connect", detail)


# ---------------------------------------------------------------- subscribe and publish


@dataclass(frozen=True, slots=True)
class DeliveryEvidence:
    """The subscriptions serve (or a recipient's task app) would make, and a probe
    message through them."""

    granted: dict[str, int]
    probe_topic: str
    publish_code: int | None  # MQTT 5 PUBACK reason; None on 3.1.1 or without a PUBACK
    delivered: bool
    protocol: str
    username: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Checked as the task app of this recipient (``--recipient``), not as serve: the
    #: filters are the app's, the probe is a receipt on ``<app>/tasks/<recipient>/<id>/ack``.
    recipient: str | None = None

    @property
    def subject(self) -> str:
        """What was checked, for the texts."""
        if self.recipient is None:
            return "the device topics"
        return f"the task topics of {self.recipient}"


def check_subscribe(evidence: DeliveryEvidence) -> Check:
    """Each filter must be granted and must actually deliver device messages (or, for a
    task app, its tasks and receipts)."""
    who = evidence.username or "anonymous clients"
    subject = evidence.subject
    if evidence.extra.get("no_suback"):
        closed = " and closed the connection" if evidence.extra.get("connection_lost") else ""
        mosquitto = (
            f" (Mosquitto: {_acl_line('read', _task_filter(evidence), evidence)})"
            if evidence.recipient is not None
            else ""
        )
        return Check(
            "subscribe",
            Outcome.FAIL,
            Cause.ACL_DENIED_SUBSCRIBE,
            f"the broker did not answer SUBSCRIBE for {subject}{closed} (no SUBACK): "
            "some brokers (rumqttd) drop a client whose filter they refuse",
            f"allow {who} to read {subject} in the broker's ACL{mosquitto}, and see the "
            "broker's log for why it dropped the subscription",
        )
    refused = [topic for topic, code in evidence.granted.items() if code >= 0x80]
    if refused:
        return Check(
            "subscribe",
            Outcome.FAIL,
            Cause.ACL_DENIED_SUBSCRIBE,
            f"the broker refused the subscription to {', '.join(refused)} "
            f"(SUBACK {', '.join(hex(evidence.granted[t]) for t in refused)})",
            f"allow {who} to read {', '.join(refused)} in the broker's ACL "
            f"(Mosquitto: {_acl_line('read', refused, evidence)})",
        )
    granted = ", ".join(f"{t} (QoS {c})" for t, c in evidence.granted.items())
    if evidence.delivered:
        return passed("subscribe", f"granted {granted}; probe on {evidence.probe_topic} delivered")
    if evidence.publish_code is not None and evidence.publish_code >= 0x80:
        return Check(
            "subscribe",
            Outcome.WARN,
            None,
            f"granted {granted}; delivery not confirmed: the probe publish was refused",
            "see the publish check",
        )
    ambiguity = (
        " (on MQTT 3.1.1 a refused probe publish looks the same)"
        if evidence.protocol == "MQTT 3.1.1"
        else ""
    )
    # serve: its one device filter; a task app: both of its filters (the probe, a
    # receipt, comes through the ``+/ack`` one).
    readable = (
        list(evidence.granted) if evidence.recipient is not None else list(evidence.granted)[:1]
    )
    return Check(
        "subscribe",
        Outcome.FAIL,
        Cause.ACL_DENIED_SUBSCRIBE,
        f"granted {granted}, but a probe published on {evidence.probe_topic} never arrived: "
        f"the broker drops what its ACL forbids {who} to read{ambiguity}",
        f"allow {who} to read {subject} in the broker's ACL (Mosquitto: "
        f"{_acl_line('read', readable or ['devices/#'], evidence)})",
    )


def _acl_line(access: str, topics: str | Sequence[str], evidence: DeliveryEvidence) -> str:
    """Mosquitto acl_file lines giving ``access`` to ``topics`` for the probe's user."""
    lines = " and ".join(
        f"`topic {access} {topic}`" for topic in ([topics] if isinstance(topics, str) else topics)
    )
    if evidence.username:
        return f"{lines} under `user {evidence.username}`"
    return f"{lines} before the first `user` line, for anonymous clients"


def _prefix_filter(evidence: DeliveryEvidence) -> str:
    """``<topic prefix>/#`` from the probe topic ``<prefix>/<device>/<type>``."""
    return f"{evidence.probe_topic.rsplit('/', 2)[0]}/#"


def _task_filter(evidence: DeliveryEvidence, level: str = "#") -> str:
    """``<app prefix>/tasks/<recipient>/<level>`` from the probe topic
    ``<app prefix>/tasks/<recipient>/<id>/ack``."""
    return f"{evidence.probe_topic.rsplit('/', 2)[0]}/{level}"


def check_publish(evidence: DeliveryEvidence) -> Check:
    """The backend's own publishes (commands, probes) should be allowed; a warning if not.
    A task app's receipts must be allowed: a failure if not."""
    who = evidence.username or "anonymous clients"
    if evidence.extra.get("no_suback"):
        return skipped("publish", "skipped: subscribe got no SUBACK")
    refused = evidence.publish_code is not None and evidence.publish_code >= 0x80
    if refused and evidence.recipient is not None:
        return Check(
            "publish",
            Outcome.FAIL,
            Cause.ACL_DENIED_PUBLISH,
            f"the broker refused a publish to {evidence.probe_topic} "
            f"(PUBACK {evidence.publish_code:#x}): the app's receipts (delivered, seen, "
            f"done) for {evidence.subject} would never reach the server, which keeps "
            "re-sending the tasks and never shows them seen or done",
            f"allow {who} to write the receipts of {evidence.recipient} in the broker's ACL "
            f"(Mosquitto: {_acl_line('write', _task_filter(evidence, '+/ack'), evidence)})",
        )
    if refused:
        return Check(
            "publish",
            Outcome.WARN,
            Cause.ACL_DENIED_PUBLISH,
            f"the broker refused a publish to {evidence.probe_topic} "
            f"(PUBACK {evidence.publish_code:#x}): ingestion works, but the backend cannot "
            "publish commands or doctor probes",
            f"allow {who} to write {evidence.subject} in the broker's ACL if the backend "
            f"should publish (Mosquitto: {_acl_line('write', _prefix_filter(evidence), evidence)})",
        )
    return passed("publish", f"published to {evidence.probe_topic}")


# ---------------------------------------------------------------- stability


@dataclass(frozen=True, slots=True)
class StabilityEvidence:
    """What happened while staying connected for ``seconds``."""

    seconds: float
    client_id: str
    borrowed_id: bool
    drops: tuple[dict[str, Any], ...]
    diagnosis: str | None
    diagnosis_message: str | None = None
    #: Reconnects that found no session although the probe asked the broker to keep one.
    sessions_lost: tuple[dict[str, Any], ...] = ()


def check_stability(evidence: StabilityEvidence) -> Check:
    """A stable connection, or the named reason it keeps dropping."""
    caveat = (
        f" (the probe used the live client id {evidence.client_id} and so competed with the "
        "live client itself)"
        if evidence.borrowed_id
        else ""
    )
    reasons = [str(d.get("reason")) for d in evidence.drops]
    conflict = evidence.diagnosis in {"client_id_conflict", "probable_client_id_conflict"}
    if conflict or "client_id_conflict" in reasons:
        message = (
            evidence.diagnosis_message
            if conflict
            else (
                f"another client connected with client id {evidence.client_id} "
                "(MQTT 5 DISCONNECT 0x8E, session taken over)"
            )
        )
        return Check(
            "stability",
            Outcome.FAIL,
            Cause.CLIENT_ID_CONFLICT,
            f"{message}{caveat}",
            "give every running instance its own client id: unset MQTTHUB_CLIENT_ID (mqtthub "
            "then makes a unique one) or make it unique per instance; in desktop apps, add a "
            "per-process suffix to the id",
        )
    if "keepalive_timeout" in reasons:
        return Check(
            "stability",
            Outcome.FAIL,
            Cause.KEEPALIVE_TIMEOUT,
            f"the broker dropped us for keepalive timeout (0x8D) during {evidence.seconds:.0f} s"
            f"{caveat}",
            "lower MQTTHUB_KEEPALIVE, and check that nothing blocks the client's event loop",
        )
    if evidence.sessions_lost:
        drops = f" after {len(reasons)} drops ({', '.join(reasons)})" if reasons else ""
        return Check(
            "stability",
            Outcome.FAIL,
            Cause.SESSION_LOST,
            f"the broker kept no session{drops} during {evidence.seconds:.0f} s although the "
            f"probe asked it to (clean start off; CONNACK session present = 0) "
            f"{len(evidence.sessions_lost)} time(s): QoS 1 messages published for serve while "
            f"it is disconnected would be lost{caveat}",
            "make the broker keep sessions and their messages: enable persistence (Mosquitto: "
            "`persistence true`), keep sessions long enough (MQTTHUB_SESSION_EXPIRY within the "
            "broker's limit) and use a broker with an offline queue (amqtt keeps none)",
        )
    if reasons:
        return Check(
            "stability",
            Outcome.FAIL,
            None,
            f"{len(reasons)} drops in {evidence.seconds:.0f} s: {', '.join(reasons)}{caveat}",
            "see the broker's log for these disconnects",
        )
    return passed("stability", f"connected for {evidence.seconds:.0f} s without a drop{caveat}")


# ---------------------------------------------------------------- traffic and pipeline


@dataclass(frozen=True, slots=True)
class ProfileTraffic:
    """What one active profile read while the doctor listened.

    Attributes:
        profile: its name (``mapping`` for the mapping file).
        messages: messages it read (stored or dead-lettered by ``serve``).
        topics: distinct topics of those messages.
        retained: how many of them were retained messages replayed by the broker.
        devices: distinct devices they came from.
        dead_letters: (reason, count) of the messages ``serve`` would dead-letter.
        ignored_messages: messages of this firmware on topics the profile does not store
            (Tasmota's ``stat/...``, ESPHome's ``<node>/debug``, ...).
        ignored_topics: distinct topics of those.
    """

    profile: str
    messages: int
    topics: int
    retained: int = 0
    devices: int = 0
    dead_letters: tuple[tuple[str, int], ...] = ()
    ignored_messages: int = 0
    ignored_topics: int = 0


@dataclass(frozen=True, slots=True)
class UnmatchedTopic:
    """A topic that arrived but that no active profile or mapping reads.

    Attributes:
        topic: the topic.
        messages: messages heard on it.
        retained: every one of them was a retained message (possibly old).
        looks_like: the known profile that reads it (or whose firmware publishes there).
        topic_prefix: set when it is mqtthub's own convention under this other prefix.
        numbers: its payload holds numbers (JSON, or a bare number): a mapping could
            store them.
    """

    topic: str
    messages: int
    retained: bool = False
    looks_like: str | None = None
    topic_prefix: str | None = None
    numbers: bool = False


@dataclass(frozen=True, slots=True)
class TrafficEvidence:
    """Device messages seen on the configured broker in ``seconds``.

    ``messages`` and ``devices`` count what the active profiles read; ``by_profile``
    breaks that down; ``unmatched`` lists the busiest topics no active profile reads
    (``unmatched_topics`` / ``unmatched_messages``: all of them). ``listened`` says what
    the doctor subscribed to; ``limits`` notes a bound that cut the census short.
    """

    seconds: float
    messages: int
    devices: int
    registered: int
    endpoint: str
    provisioned_endpoints: tuple[str, ...] = ()
    listened: str = ""
    profiles: tuple[str, ...] = ("mqtthub",)
    by_profile: tuple[ProfileTraffic, ...] = ()
    unmatched: tuple[UnmatchedTopic, ...] = ()
    unmatched_topics: int = 0
    unmatched_messages: int = 0
    limits: str | None = None


SHOWN_TOPICS = 5


def check_traffic(evidence: TrafficEvidence) -> Check:
    """Devices that exist should be heard, on topics an active profile reads; devices
    provisioned elsewhere explain silence; topics no profile reads explain "devices
    publish but nothing is stored"."""
    seen = (
        f"{evidence.messages} messages from {evidence.devices} devices in {evidence.seconds:.0f} s"
    )
    seen += "".join(f"; {_profile_line(p)}" for p in evidence.by_profile if _heard(p))
    if evidence.listened:
        seen += f" (listened to {evidence.listened})"
    if evidence.limits:
        seen += f"; {evidence.limits}"
    if evidence.unmatched:
        return _unmatched_check(evidence, seen)
    if evidence.messages:
        return passed("traffic", seen)
    others = sorted({e for e in evidence.provisioned_endpoints if e != evidence.endpoint})
    if others:
        return Check(
            "traffic",
            Outcome.FAIL,
            Cause.ENDPOINT_MISMATCH,
            f"{seen}; the devices were provisioned with {', '.join(others)} but this "
            f"configuration uses {evidence.endpoint}",
            f"point MQTTHUB_BROKER_URL at {others[0]} (the endpoint the devices use), with "
            "mqtts:// and MQTTHUB_CA_FILE if it is a TLS port",
        )
    if evidence.registered:
        return Check(
            "traffic",
            Outcome.FAIL,
            Cause.NO_DEVICE_TRAFFIC,
            f"{seen}, while {evidence.registered} devices are registered",
            "check that the devices publish to this broker (their MQTT host/port) under the "
            "topic prefix MQTTHUB_TOPIC_PREFIX",
        )
    return Check("traffic", Outcome.WARN, None, f"{seen}; no devices registered yet", None)


def _heard(profile: ProfileTraffic) -> bool:
    return bool(profile.messages or profile.ignored_messages)


def _profile_line(p: ProfileTraffic) -> str:
    """``tasmota: 12 messages on 3 topics (2 retained, 1 dead letter: invalid_json)``."""
    notes = []
    if p.retained:
        notes.append(f"{p.retained} retained")
    if p.dead_letters:
        letters = sum(count for _reason, count in p.dead_letters)
        reasons = ", ".join(f"{reason} {count}" for reason, count in p.dead_letters)
        notes.append(f"{letters} would be dead letters: {reasons}")
    if p.ignored_messages:
        notes.append(f"{p.ignored_messages} more on {p.ignored_topics} topics it does not store")
    extra = f" ({'; '.join(notes)})" if notes else ""
    return f"{p.profile}: {p.messages} messages on {p.topics} topics{extra}"


def _unmatched_check(evidence: TrafficEvidence, seen: str) -> Check:
    """Topics no active profile reads: enable the profile they look like, fix the topic
    prefix, or map them; a failure when nothing else is heard."""
    unmatched = evidence.unmatched
    profiles = Counter(u.looks_like for u in unmatched if u.looks_like and not u.topic_prefix)
    prefixes = Counter(u.topic_prefix for u in unmatched if u.topic_prefix)
    unknown = [u for u in unmatched if u.looks_like is None]
    detail = (
        f"{seen}; {evidence.unmatched_topics} topics ({evidence.unmatched_messages} messages) "
        f"match no active profile or mapping (MQTTHUB_PROFILES={','.join(evidence.profiles)}), "
        "so serve stores nothing from them: "
        + ", ".join(_topic_note(u) for u in unmatched[:SHOWN_TOPICS])
        + (", ..." if evidence.unmatched_topics > SHOWN_TOPICS else "")
    )
    fixes = []
    if profiles:
        add = [name for name in PROFILE_NAMES if name in profiles]
        fixes.append(
            f"set MQTTHUB_PROFILES={profile_list(evidence.profiles, add)} (the topics "
            f"{', '.join(_examples(unmatched, lambda u: u.looks_like in add))} are "
            f"{' and '.join(add)} topics)"
        )
    if prefixes:
        prefix = prefixes.most_common(1)[0][0]
        enable = (
            f" and MQTTHUB_PROFILES={profile_list(evidence.profiles, ['mqtthub'])}"
            if "mqtthub" not in evidence.profiles
            else ""
        )
        fixes.append(
            f"set MQTTHUB_TOPIC_PREFIX={prefix}{enable} (the devices publish "
            f"{prefix}/<id>/status|sensor|heartbeat, mqtthub's convention under that prefix)"
        )
    if unknown:
        kind = "sensor" if any(u.numbers for u in unknown) else "status"
        pattern = mapping_pattern([u.topic for u in unknown])
        how = "flatten = true" if kind == "sensor" else 'online = ["online"]'
        fixes.append(
            "add a [[mapping]] entry for "
            f"{', '.join(_examples(unknown, lambda _u: True))} to the MQTTHUB_MAPPINGS file, "
            f'e.g. topic = "{pattern}", kind = "{kind}", {how}'
        )
    if profiles:
        cause = Cause.PROFILE_NOT_ENABLED
    elif prefixes:
        cause = Cause.TOPIC_PREFIX_MISMATCH
    else:
        cause = Cause.UNMATCHED_TOPICS
    hinted = bool(profiles or prefixes)
    failing = not evidence.messages and (hinted or evidence.registered)
    return Check(
        "traffic", Outcome.FAIL if failing else Outcome.WARN, cause, detail, "; ".join(fixes)
    )


def _topic_note(u: UnmatchedTopic) -> str:
    notes = [f"{u.messages} messages" + (", retained" if u.retained else "")]
    if u.topic_prefix:
        notes.append(f"mqtthub's convention under prefix {u.topic_prefix}")
    elif u.looks_like:
        notes.append(f"looks like {u.looks_like}")
    return f"{u.topic} ({'; '.join(notes)})"


def _examples(unmatched: Iterable[UnmatchedTopic], keep: Any, limit: int = 3) -> list[str]:
    return [u.topic for u in unmatched if keep(u)][:limit]


def mapping_pattern(topics: Sequence[str]) -> str:
    """A mapping ``topic`` pattern for ``topics``: the one level that differs between
    them becomes ``{device}`` (otherwise: the first level with a digit, else the second
    level; a mapping needs a ``{device}``)."""
    if not topics:
        return "vendor/{device}/telemetry"
    first = topics[0].split("/")
    same_shape = [t.split("/") for t in topics if t.count("/") == len(first) - 1]
    varying = [i for i in range(len(first)) if len({levels[i] for levels in same_shape}) > 1]
    if len(varying) == 1:
        index = varying[0]
    else:
        digits = [i for i, level in enumerate(first) if any(ch.isdigit() for ch in level)]
        index = digits[0] if digits else min(1, len(first) - 1)
    return "/".join("{device}" if i == index else level for i, level in enumerate(first))


def profile_list(active: Iterable[str], add: Iterable[str]) -> str:
    """``MQTTHUB_PROFILES``: the active profiles (the mapping file is not one) plus ``add``."""
    names = [name for name in active if name in PROFILE_NAMES]
    return ",".join(dict.fromkeys([*names, *add]))


@dataclass(frozen=True, slots=True)
class PipelineEvidence:
    """Whether a synthetic reading published now shows up in the running service's API."""

    api: str
    device_id: str
    stored: bool
    error: str | None = None


def check_pipeline(evidence: PipelineEvidence) -> Check:
    """A reading published on the broker must reach the running service's store."""
    if evidence.stored:
        return passed(
            "pipeline", f"{evidence.api} stored the probe reading of {evidence.device_id}"
        )
    problem = f": {evidence.error}" if evidence.error else ""
    return Check(
        "pipeline",
        Outcome.FAIL,
        Cause.PIPELINE_NOT_STORING,
        f"a probe reading published for {evidence.device_id} did not appear at "
        f"{evidence.api} within the wait{problem}",
        "check that the running service uses the same MQTTHUB_BROKER_URL and "
        "MQTTHUB_TOPIC_PREFIX as this doctor run, and its /healthz",
    )


def evidence_dict(evidence: Any) -> dict[str, Any]:
    """Evidence as JSON-ready data (for --json)."""
    return asdict(evidence)
