"""The doctor's rules for the MQTT session with the broker (pure, no I/O).

They decide whether CONNECT is accepted, with which protocol version and keepalive
(``mqtt_connect``), whether the broker's ACL lets serve (or a recipient's task app)
subscribe and publish and actually delivers (``subscribe``, ``publish``), and whether a
connection stays up and keeps its session (``stability``). The evidence comes from
:mod:`mqtthub.doctor.probes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mqtthub.doctor.checks import Cause, Check, Outcome, passed, skipped

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


MIN_KEEPALIVE = 5  # Settings.keepalive ge=5
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
