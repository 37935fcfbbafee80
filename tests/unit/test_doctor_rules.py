"""Unit tests for the doctor's pure rules: what the doctor tells a user for each symptom.

The rules are pure: each test builds the evidence a probe would have collected on a real
machine (OpenSSL verify codes, CONNACK reason names, disconnect events as the transport
records them) and reads the verdict, the cause code and the fix as a user would.
``CAUSE_CASES`` reaches every cause code; the meta-test at the end checks that it does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trustme

from mqtthub.config import load_settings
from mqtthub.doctor import limits, mtls
from mqtthub.doctor.checks import Cause, Check, Outcome, evidence_dict, passed
from mqtthub.doctor.mqtt_rules import (
    Attempt,
    ConnectEvidence,
    StabilityEvidence,
    check_connect,
    check_publish,
    check_stability,
    check_subscribe,
)
from mqtthub.doctor.mtls import ClientCertEvidence
from mqtthub.doctor.network_rules import (
    EXPIRY_WARNING_DAYS,
    CertInfo,
    ConfigEvidence,
    NetworkEvidence,
    TlsEvidence,
    check_config,
    check_dns,
    check_tcp,
    check_tls,
)
from mqtthub.doctor.run import load_config
from mqtthub.doctor.traffic_rules import (
    PipelineEvidence,
    TrafficEvidence,
    UnmatchedTopic,
    check_pipeline,
    check_traffic,
)
from mqtthub.doctor.websocket_rules import (
    UpgradeAnswer,
    WebSocketEvidence,
    check_websocket,
    websocket_tls,
)
from mqtthub.errors import ConfigError
from support.doctor import PROBE_TOPIC, delivery

V5 = "MQTT 5"
V311 = "MQTT 3.1.1"
API = "http://127.0.0.1:8000"
CERT = CertInfo(
    subject="CN=broker.example",
    issuer="CN=Example Test CA",
    names=("broker.example", "10.0.0.5"),
    not_after="2027-03-01T00:00:00+00:00",
    days_left=400.0,
)


pytestmark = pytest.mark.usefixtures("clean_environment")


# --- evidence as the probes record it -------------------------------------------------


def network(
    host: str = "broker.example",
    port: int = 1883,
    *,
    tcp: str = "open",
    local: bool = False,
    processes: tuple[str, ...] = (),
    tcp_error: str | None = None,
) -> NetworkEvidence:
    addresses = ("127.0.0.1",) if local else ("10.0.0.5",)
    return NetworkEvidence(host, port, addresses, None, tcp, tcp_error, local, processes)


def tls(
    *,
    configured: bool = True,
    offered: bool = True,
    cert: CertInfo | None = CERT,
    code: int | None = None,
    error: str | None = None,
    host: str = "broker.example",
    ca_file: str | None = "/etc/mqtthub/ca.pem",
) -> TlsEvidence:
    return TlsEvidence(configured, offered, cert, error, code, host, ca_file)


def connect(*attempts: Attempt, username: str | None = "hub", **fields: Any) -> ConnectEvidence:
    return ConnectEvidence(tuple(attempts), username, "mqtthub-doctor-1a2b3c4d", **fields)


def drop(reason: str, code: int | None, lasted: float) -> dict[str, Any]:
    """A ``disconnected`` event as ``ConnectionEvent.as_dict()`` records it."""
    return {
        "at": 1_700_000_000.0,
        "event": "disconnected",
        "reason": reason,
        "protocol": V5,
        "reason_code": code,
        "lasted": lasted,
        "detail": "",
    }


def stability(
    *drops: dict[str, Any],
    diagnosis: str | None = None,
    message: str | None = None,
    borrowed: bool = False,
    client_id: str = "mqtthub-doctor-1a2b3c4d",
) -> StabilityEvidence:
    return StabilityEvidence(60.0, client_id, borrowed, tuple(drops), diagnosis, message)


def traffic(
    messages: int = 0,
    *,
    registered: int = 0,
    provisioned: tuple[str, ...] = (),
    endpoint: str = "mqtt://broker.example:1883",
) -> TrafficEvidence:
    devices = min(messages, 3)
    return TrafficEvidence(30.0, messages, devices, registered, endpoint, provisioned)


def unmatched(*topics: UnmatchedTopic, registered: int = 0) -> TrafficEvidence:
    """Nothing an active profile reads, only ``topics``."""
    return TrafficEvidence(
        30.0,
        0,
        0,
        registered,
        "mqtt://broker.example:1883",
        unmatched=topics,
        unmatched_topics=len(topics),
        unmatched_messages=sum(t.messages for t in topics),
    )


CONFLICT_MESSAGE = (
    "another client connected with client id mqtthub-prod "
    "(MQTT 5 DISCONNECT 0x8E, session taken over)"
)
PROBABLE_MESSAGE = (
    "the broker dropped the connection 3 times shortly after accepting it (connections "
    "lasted 2.0 s, 2.1 s, 1.9 s) and accepted each reconnect at once: probably another "
    "client uses client id mqtthub-prod"
)

# --- every cause code, reached through its rule -----------------------------------------

TLS_OK = passed("tls", "certificate verified")
CLIENT_CERT = ClientCertEvidence(
    "/etc/mqtthub/client.crt",
    "/etc/mqtthub/client.key",
    "CN=dev1",
    "CN=Device CA",
    "2026-01-01T00:00:00+00:00",
    "2027-01-01T00:00:00+00:00",
    starts_in_days=-10.0,
    days_left=100.0,
    key_matches=True,
    probed=True,
)


def _ws(answer: UpgradeAnswer, *others: UpgradeAnswer) -> WebSocketEvidence:
    return WebSocketEvidence("ws://broker.example:8083/wrong", answer, others)


def _ws_tls(evidence: TlsEvidence) -> Check:
    return websocket_tls(check_tls(evidence))


_MQTT_PATH = UpgradeAnswer("/mqtt", "upgraded", 101, subprotocol="mqtt")
WEBSOCKET_CASES = [
    pytest.param(
        _ws_tls,
        TlsEvidence(configured=False, offered=True),
        Outcome.FAIL,
        Cause.WS_TLS_EXPECTED,
        "wss://",
        id="ws_tls_expected",
    ),
    pytest.param(
        _ws_tls,
        TlsEvidence(configured=True, offered=False),
        Outcome.FAIL,
        Cause.WS_TLS_NOT_OFFERED,
        "ws://",
        id="ws_tls_not_offered",
    ),
    pytest.param(
        check_websocket,
        _ws(UpgradeAnswer("/mqtt", "not_http", detail="closed")),
        Outcome.FAIL,
        Cause.WS_NOT_HTTP,
        "mqtt://",
        id="ws_not_http",
    ),
    pytest.param(
        check_websocket,
        _ws(UpgradeAnswer("/wrong", "status", 404), _MQTT_PATH),
        Outcome.FAIL,
        Cause.WS_PATH_NOT_FOUND,
        "ws://broker.example:8083/mqtt",
        id="ws_path_not_found",
    ),
    pytest.param(
        check_websocket,
        _ws(UpgradeAnswer("/mqtt", "no_subprotocol", 101)),
        Outcome.FAIL,
        Cause.WS_NO_MQTT_SUBPROTOCOL,
        "Sec-WebSocket-Protocol",
        id="ws_no_mqtt_subprotocol",
    ),
    pytest.param(
        check_websocket,
        _ws(UpgradeAnswer("/mqtt", "status", 200, "nginx")),
        Outcome.FAIL,
        Cause.WS_NOT_WEBSOCKET_SERVER,
        "8083",
        id="ws_not_websocket_server",
    ),
    pytest.param(
        check_websocket,
        _ws(UpgradeAnswer("/mqtt", "status", 403, "nginx")),
        Outcome.FAIL,
        Cause.WS_UPGRADE_REFUSED,
        "proxy",
        id="ws_upgrade_refused",
    ),
]
MTLS_CASES = [
    pytest.param(
        partial(mtls.check_client_cert, TLS_OK),
        ClientCertEvidence(alert="TLSV13_ALERT_CERTIFICATE_REQUIRED", probed=True),
        Outcome.FAIL,
        Cause.CLIENT_CERT_REQUIRED,
        "MQTTHUB_CLIENT_CERT",
        id="client_cert_required",
    ),
    pytest.param(
        partial(mtls.check_client_cert, TLS_OK),
        replace(CLIENT_CERT, alert="TLSV1_ALERT_UNKNOWN_CA"),
        Outcome.FAIL,
        Cause.CLIENT_CERT_REJECTED,
        "cafile",
        id="client_cert_rejected",
    ),
    pytest.param(
        mtls.check_client_cert_files,
        replace(CLIENT_CERT, key_matches=False),
        Outcome.FAIL,
        Cause.CLIENT_CERT_KEY_MISMATCH,
        "MQTTHUB_CLIENT_KEY",
        id="client_cert_key_mismatch",
    ),
    pytest.param(
        partial(mtls.check_client_cert, TLS_OK),
        replace(CLIENT_CERT, days_left=-1.0, alert="SSLV3_ALERT_CERTIFICATE_EXPIRED"),
        Outcome.FAIL,
        Cause.CLIENT_CERT_EXPIRED,
        "MQTTHUB_CLIENT_CERT",
        id="client_cert_expired",
    ),
    pytest.param(
        partial(limits.check_accept, passed("tcp", "open")),
        limits.AcceptEvidence("mqtt://broker.example:1883", closed_on_accept=True),
        Outcome.FAIL,
        Cause.TOO_MANY_CONNECTIONS,
        "max_connections",
        id="too_many_connections",
    ),
    pytest.param(
        partial(limits.check_payload, passed("publish", "published")),
        limits.PayloadEvidence(65536, False, "MQTT 5", 0x95, delivered=False),
        Outcome.WARN,
        Cause.PACKET_TOO_LARGE,
        "message_size_limit",
        id="packet_too_large",
    ),
]

Rule = Callable[[Any], Check]

CAUSE_CASES = [
    pytest.param(
        check_config,
        ConfigEvidence({}, error="MQTTHUB_KEEPALIVE: Input should be greater than or equal to 5"),
        Outcome.FAIL,
        Cause.CONFIG_INVALID,
        "MQTTHUB_KEEPALIVE",
        id="config_invalid",
    ),
    pytest.param(
        check_config,
        ConfigEvidence(
            {"broker": "mqtt://broker.example:8883"},
            contradictions=("MQTTHUB_BROKER_URL says mqtt:// but port 8883 is a TLS port",),
        ),
        Outcome.WARN,
        Cause.CONFIG_INVALID,
        "MQTTHUB_BROKER_URL",
        id="config_contradiction",
    ),
    pytest.param(
        check_dns,
        NetworkEvidence("brokr.example", 1883, dns_error="[Errno -2] Name or service not known"),
        Outcome.FAIL,
        Cause.DNS_FAILURE,
        "MQTTHUB_BROKER_URL",
        id="dns_failure",
    ),
    pytest.param(
        check_tcp,
        network("127.0.0.1", tcp="refused", local=True),
        Outcome.FAIL,
        Cause.BROKER_NOT_RUNNING,
        "start the broker",
        id="broker_not_running",
    ),
    pytest.param(
        check_tcp,
        network("127.0.0.1", 1884, tcp="refused", local=True, processes=("mosquitto (pid 812)",)),
        Outcome.FAIL,
        Cause.CONNECTION_REFUSED,
        "MQTTHUB_BROKER_URL",
        id="connection_refused",
    ),
    pytest.param(
        check_tcp,
        network(tcp="timeout"),
        Outcome.FAIL,
        Cause.CONNECTION_TIMEOUT,
        "firewall",
        id="connection_timeout",
    ),
    pytest.param(
        check_tls,
        tls(configured=False, ca_file=None),
        Outcome.FAIL,
        Cause.TLS_EXPECTED,
        "mqtts://",
        id="tls_expected",
    ),
    pytest.param(
        check_tls,
        tls(offered=False, cert=None),
        Outcome.FAIL,
        Cause.TLS_NOT_OFFERED,
        "mqtt://",
        id="tls_not_offered",
    ),
    pytest.param(
        check_tls,
        tls(code=20, error="unable to get local issuer certificate"),
        Outcome.FAIL,
        Cause.TLS_UNKNOWN_CA,
        "MQTTHUB_CA_FILE",
        id="tls_unknown_ca",
    ),
    pytest.param(
        check_tls,
        tls(code=62, error="Hostname mismatch, certificate is not valid for 'mqtt.local'."),
        Outcome.FAIL,
        Cause.TLS_HOSTNAME_MISMATCH,
        "MQTTHUB_TLS_INSECURE",
        id="tls_hostname_mismatch",
    ),
    pytest.param(
        check_tls,
        tls(code=10, error="certificate has expired"),
        Outcome.FAIL,
        Cause.TLS_CERT_EXPIRED,
        "renew",
        id="tls_cert_expired",
    ),
    pytest.param(
        check_connect,
        connect(
            Attempt(V5, "closed_before_connack"),
            Attempt(V311, "closed_before_connack"),
            username=None,
        ),
        Outcome.FAIL,
        Cause.PROTOCOL_UNSUPPORTED,
        "MQTT listener",
        id="protocol_unsupported",
    ),
    pytest.param(
        check_connect,
        connect(Attempt(V5, "timeout"), forced=V5, unforced=Attempt(V311, "connected")),
        Outcome.FAIL,
        Cause.MQTT_VERSION_UNSUPPORTED,
        "MQTTHUB_MQTT_VERSION=auto",
        id="mqtt_version_unsupported",
    ),
    pytest.param(
        check_connect,
        connect(Attempt(V5, "closed_before_connack"), Attempt(V311, "closed_before_connack")),
        Outcome.FAIL,
        Cause.BAD_CREDENTIALS,
        "MQTTHUB_BROKER_URL",
        id="bad_credentials_without_connack",
    ),
    pytest.param(
        check_connect,
        connect(Attempt(V5, "bad_credentials", 0x86)),
        Outcome.FAIL,
        Cause.BAD_CREDENTIALS,
        "MQTT_PASSWORD",
        id="bad_credentials",
    ),
    pytest.param(
        check_connect,
        connect(Attempt(V5, "not_authorized", 0x87)),
        Outcome.FAIL,
        Cause.NOT_AUTHORIZED,
        "MQTT_PASSWORD",
        id="not_authorized",
    ),
    pytest.param(
        check_connect,
        connect(Attempt(V5, "client_id_rejected", 0x85)),
        Outcome.FAIL,
        Cause.CLIENT_ID_REJECTED,
        "MQTTHUB_CLIENT_ID",
        id="client_id_rejected",
    ),
    pytest.param(
        check_connect,
        connect(Attempt(V5, "connected"), requested_keepalive=120, server_keepalive=60),
        Outcome.WARN,
        Cause.KEEPALIVE_REJECTED,
        "MQTTHUB_KEEPALIVE=60",
        id="keepalive_rejected",
    ),
    pytest.param(
        check_connect,
        connect(Attempt(V5, "server_unavailable", 0x88)),
        Outcome.FAIL,
        Cause.SERVER_UNAVAILABLE,
        "broker",
        id="server_unavailable",
    ),
    pytest.param(
        check_subscribe,
        delivery(granted={"devices/+/+": 0x87}, delivered=False),
        Outcome.FAIL,
        Cause.ACL_DENIED_SUBSCRIBE,
        "topic read devices/+/+",
        id="acl_denied_subscribe",
    ),
    pytest.param(
        check_publish,
        delivery(publish_code=0x87, delivered=False),
        Outcome.WARN,
        Cause.ACL_DENIED_PUBLISH,
        "topic write",
        id="acl_denied_publish",
    ),
    pytest.param(
        check_stability,
        stability(
            drop("client_id_conflict", 0x8E, 4.0),
            diagnosis="client_id_conflict",
            message=CONFLICT_MESSAGE,
        ),
        Outcome.FAIL,
        Cause.CLIENT_ID_CONFLICT,
        "MQTTHUB_CLIENT_ID",
        id="client_id_conflict",
    ),
    pytest.param(
        check_stability,
        stability(drop("keepalive_timeout", 0x8D, 95.0)),
        Outcome.FAIL,
        Cause.KEEPALIVE_TIMEOUT,
        "MQTTHUB_KEEPALIVE",
        id="keepalive_timeout",
    ),
    pytest.param(
        check_traffic,
        traffic(registered=12),
        Outcome.FAIL,
        Cause.NO_DEVICE_TRAFFIC,
        "MQTTHUB_TOPIC_PREFIX",
        id="no_device_traffic",
    ),
    pytest.param(
        check_traffic,
        traffic(registered=12, provisioned=("mqtts://broker.example:8883",)),
        Outcome.FAIL,
        Cause.ENDPOINT_MISMATCH,
        "MQTTHUB_BROKER_URL",
        id="endpoint_mismatch",
    ),
    pytest.param(
        check_traffic,
        unmatched(UnmatchedTopic("tele/plug1/SENSOR", 4, looks_like="tasmota")),
        Outcome.FAIL,
        Cause.PROFILE_NOT_ENABLED,
        "MQTTHUB_PROFILES=mqtthub,tasmota",
        id="profile_not_enabled",
    ),
    pytest.param(
        check_traffic,
        unmatched(
            UnmatchedTopic("sensors/esp1/sensor", 4, looks_like="mqtthub", topic_prefix="sensors")
        ),
        Outcome.FAIL,
        Cause.TOPIC_PREFIX_MISMATCH,
        "MQTTHUB_TOPIC_PREFIX=sensors",
        id="topic_prefix_mismatch",
    ),
    pytest.param(
        check_traffic,
        unmatched(UnmatchedTopic("acme/pump-7/telemetry", 4, numbers=True), registered=2),
        Outcome.FAIL,
        Cause.UNMATCHED_TOPICS,
        "MQTTHUB_MAPPINGS",
        id="unmatched_topics",
    ),
    pytest.param(
        check_pipeline,
        PipelineEvidence(API, "mqtthub-doctor", stored=False),
        Outcome.FAIL,
        Cause.PIPELINE_NOT_STORING,
        "MQTTHUB_TOPIC_PREFIX",
        id="pipeline_not_storing",
    ),
    pytest.param(
        check_stability,
        StabilityEvidence(
            30.0,
            "mqtthub-doctor-1",
            False,
            ({"reason": "connection_lost"},),
            None,
            sessions_lost=({"reason": "session_lost"},),
        ),
        Outcome.FAIL,
        Cause.SESSION_LOST,
        "persistence",
        id="session_lost",
    ),
    *MTLS_CASES,
    *WEBSOCKET_CASES,
]


@pytest.mark.parametrize(("rule", "evidence", "status", "cause", "fix_mentions"), CAUSE_CASES)
def test_every_cause_names_the_setting_to_change(
    rule: Rule, evidence: Any, status: Outcome, cause: Cause, fix_mentions: str
) -> None:
    """Each symptom gets its cause code and a fix that names what to change."""
    check = rule(evidence)
    assert (check.status, check.cause) == (status, cause), check
    assert check.fix is not None
    assert fix_mentions in check.fix, check.fix


def test_every_cause_code_is_produced_by_some_rule() -> None:
    """No cause code is dead: users can meet every one the docs list."""
    produced = set()
    for case in CAUSE_CASES:
        rule, evidence, _status, _cause, _fix = case.values
        produced.add(rule(evidence).cause)
    assert produced - {None} == set(Cause)


def test_cause_codes_are_stable_strings() -> None:
    """The codes in --json output are the snake_case names users and scripts match on."""
    for cause in Cause:
        assert str(cause) == cause.value == cause.name.lower()


# --- config ---------------------------------------------------------------------------


def test_valid_configuration_passes_and_shows_the_effective_settings() -> None:
    """The config line shows what the doctor is about to test."""
    _settings, evidence = load_config({})
    check = check_config(evidence)
    assert check.status is Outcome.PASS
    assert "broker=mqtt://127.0.0.1:1883" in check.detail
    assert "client_id=unique per instance" in check.detail
    assert "keepalive=60" in check.detail


def test_invalid_configuration_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value fails before anything is tried, and the fix names its variable."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", "http://broker.example")
    settings, evidence = load_config({})
    check = check_config(evidence)
    assert settings is None
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CONFIG_INVALID)
    assert "must start with mqtt://" in check.detail
    assert check.fix == "correct MQTTHUB_BROKER_URL (see the message above)"


def test_secrets_never_appear_in_the_config_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broker and database passwords are masked in what the doctor prints."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", "mqtt://hub:br0ker-pw@broker.example:1883")
    monkeypatch.setenv("MQTTHUB_DATABASE_URL", "postgresql://mqtthub:db-pw@db.example:5432/hub")
    monkeypatch.setenv("MQTTHUB_API_TOKEN", "api-t0ken")
    _settings, evidence = load_config({})
    check = check_config(evidence)
    assert "broker=mqtt://hub:***@broker.example:1883" in check.detail
    assert "db.example:5432/hub" in check.detail
    for secret in ("br0ker-pw", "db-pw", "api-t0ken"):
        assert secret not in check.detail


def test_url_and_legacy_host_naming_different_brokers_warn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MQTTHUB_BROKER_URL and MQTT_BROKER_HOST disagreeing is a warning naming both."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", "mqtt://broker.example:1883")
    monkeypatch.setenv("MQTT_BROKER_HOST", "old-broker.example")
    settings, evidence = load_config({})
    assert settings is not None
    (contradiction,) = evidence.contradictions
    assert "mqtt://broker.example:1883" in contradiction
    assert "old-broker.example:1883" in contradiction
    assert "MQTTHUB_BROKER_URL wins" in contradiction
    check = check_config(evidence)
    assert (check.status, check.cause) == (Outcome.WARN, Cause.CONFIG_INVALID)
    assert contradiction in check.detail


def test_url_and_legacy_host_naming_the_same_broker_agree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Setting both old and new variables to the same broker is not a contradiction."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", "mqtt://broker.example:1883")
    monkeypatch.setenv("MQTT_BROKER_HOST", "broker.example")
    _settings, evidence = load_config({})
    assert evidence.contradictions == ()
    assert check_config(evidence).status is Outcome.PASS


def test_legacy_host_alone_is_not_a_contradiction(monkeypatch: pytest.MonkeyPatch) -> None:
    """MQTT_BROKER_HOST without MQTTHUB_BROKER_URL simply chooses the broker."""
    monkeypatch.setenv("MQTT_BROKER_HOST", "old-broker.example")
    _settings, evidence = load_config({})
    assert evidence.contradictions == ()
    assert evidence.summary["broker"] == "mqtt://old-broker.example:1883"


def test_plain_scheme_on_a_tls_port_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """mqtt:// with port 8883 still uses TLS; the doctor says so instead of failing later."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", "mqtt://broker.example:8883")
    _settings, evidence = load_config({})
    assert evidence.summary["tls"] == "yes"
    assert any("port 8883 is a TLS port" in c for c in evidence.contradictions)
    assert "mqtts://" in (check_config(evidence).fix or "")


def test_ca_file_for_a_plain_connection_warns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A CA file with mqtt:// on port 1883 is never used: probably the wrong port or scheme."""
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("MQTTHUB_CA_FILE", str(ca_file))
    _settings, evidence = load_config({})
    assert evidence.contradictions == ("MQTTHUB_CA_FILE is set but the connection is plain MQTT",)


def test_cli_flags_count_like_the_environment() -> None:
    """A --broker-url flag that disagrees with nothing produces no contradiction."""
    _settings, evidence = load_config({"broker_url": "mqtts://broker.example"})
    assert evidence.summary["broker"] == "mqtts://broker.example:8883"
    assert evidence.contradictions == ()


def test_key_without_certificate_gets_a_readable_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A client key without a certificate is a config failure with a sentence for a fix."""
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    monkeypatch.setenv("MQTTHUB_CLIENT_KEY", str(key))
    _settings, evidence = load_config({})
    check = check_config(evidence)
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CONFIG_INVALID)
    assert "is set but" not in (check.fix or "")


# --- dns and tcp ----------------------------------------------------------------------


def test_resolving_host_passes_listing_its_addresses() -> None:
    """The dns line shows what the name resolved to."""
    check = check_dns(NetworkEvidence("broker.example", 1883, ("10.0.0.5", "fd00::5")))
    assert check.status is Outcome.PASS
    assert check.detail == "broker.example -> 10.0.0.5, fd00::5"


def test_dns_failure_quotes_the_resolver() -> None:
    """The resolver's own message is kept, and the legacy variable is named too."""
    check = check_dns(
        NetworkEvidence("brokr.example", 1883, dns_error="[Errno -2] Name or service not known")
    )
    assert "brokr.example does not resolve: [Errno -2] Name or service not known" in check.detail
    assert "MQTT_BROKER_HOST" in (check.fix or "")


def test_open_port_passes() -> None:
    """Something accepting TCP at the address is a pass."""
    check = check_tcp(network())
    assert (check.status, check.detail) == (Outcome.PASS, "broker.example:1883 accepts connections")


def test_no_broker_process_on_this_machine_says_start_it() -> None:
    """Refused on localhost with no broker running: start one (or the embedded one)."""
    check = check_tcp(network("localhost", tcp="refused", local=True))
    assert check.cause is Cause.BROKER_NOT_RUNNING
    assert "no broker process runs on this machine" in check.detail
    assert "mosquitto" in (check.fix or "")
    assert "MQTTHUB_EMBEDDED_BROKER=auto" in (check.fix or "")


def test_refused_while_a_local_broker_runs_lists_it() -> None:
    """A broker runs here but not on this port: the wrong port, not a stopped broker."""
    check = check_tcp(
        network(
            "127.0.0.1",
            1884,
            tcp="refused",
            local=True,
            processes=("mosquitto (pid 812)", "emqx (pid 990)"),
        )
    )
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CONNECTION_REFUSED)
    assert "nothing listens on port 1884" in check.detail
    assert "broker processes here: mosquitto (pid 812), emqx (pid 990)" in check.detail
    assert "1883 plain, 8883 TLS" in (check.fix or "")


def test_refused_by_a_remote_host_is_not_blamed_on_a_local_broker() -> None:
    """Processes on this machine say nothing about a remote broker."""
    check = check_tcp(network("broker.example", tcp="refused", local=False))
    assert check.cause is Cause.CONNECTION_REFUSED
    assert "broker processes" not in check.detail


def test_timeout_names_the_port_to_open_in_the_firewall() -> None:
    """Dropped packets point at the firewall and the address, naming the port."""
    check = check_tcp(network(port=8883, tcp="timeout"))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CONNECTION_TIMEOUT)
    assert "no answer from broker.example:8883" in check.detail
    assert "port 8883" in (check.fix or "")


def test_other_socket_errors_are_quoted() -> None:
    """An unreachable network is reported with the OS's own message."""
    check = check_tcp(network(tcp="error", tcp_error="[Errno 101] Network is unreachable"))
    assert check.status is Outcome.FAIL
    assert "[Errno 101] Network is unreachable" in check.detail
    assert "MQTTHUB_BROKER_URL" in (check.fix or "")


# --- tls ------------------------------------------------------------------------------


def test_plain_on_both_sides_passes() -> None:
    """No TLS configured and none offered is fine."""
    check = check_tls(tls(configured=False, offered=False, cert=None, ca_file=None))
    assert (check.status, check.cause) == (Outcome.PASS, None)


def test_verified_certificate_passes_and_is_described() -> None:
    """A verified certificate shows its subject, issuer, names and expiry."""
    check = check_tls(tls())
    assert check.status is Outcome.PASS
    assert "certificate verified" in check.detail
    assert "issuer CN=Example Test CA" in check.detail
    assert "names broker.example, 10.0.0.5" in check.detail
    assert "valid until 2027-03-01" in check.detail


def test_tls_expected_shows_the_certificate_and_the_ca_setting() -> None:
    """A plain client on a TLS port: switch to mqtts:// and say which CA to trust."""
    check = check_tls(tls(configured=False))
    assert "the port speaks TLS" in check.detail
    assert "issuer CN=Example Test CA" in check.detail
    assert "MQTTHUB_CA_FILE" in (check.fix or "")


def test_tls_not_offered_suggests_the_tls_port() -> None:
    """A TLS client on a plain port: mqtt:// for this port, or port 8883."""
    check = check_tls(tls(offered=False, cert=None))
    assert "8883" in (check.fix or "")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (19, "self-signed certificate in certificate chain"),
        (20, "unable to get local issuer certificate"),
        (21, "unable to verify the first certificate"),
    ],
)
def test_unknown_ca_names_the_ca_file_tried(code: int, message: str) -> None:
    """OpenSSL 19/20/21: the CA file does not hold the issuer; the issuer is shown."""
    check = check_tls(tls(code=code, error=message))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.TLS_UNKNOWN_CA)
    assert "not signed by a CA in /etc/mqtthub/ca.pem" in check.detail
    assert message in check.detail
    assert "issuer CN=Example Test CA" in check.detail
    assert "MQTTHUB_CA_FILE" in (check.fix or "")


def test_unknown_ca_without_a_ca_file_blames_the_system_store() -> None:
    """Without MQTTHUB_CA_FILE the system CA store was used, and the detail says so."""
    check = check_tls(tls(code=20, error="unable to get local issuer certificate", ca_file=None))
    assert "not signed by a CA in the system CA store" in check.detail


@pytest.mark.parametrize(
    ("code", "host", "message"),
    [
        (62, "mqtt.local", "Hostname mismatch, certificate is not valid for 'mqtt.local'."),
        (64, "10.0.0.9", "IP address mismatch, certificate is not valid for '10.0.0.9'."),
    ],
)
def test_hostname_mismatch_names_the_host_and_the_certificate_names(
    code: int, host: str, message: str
) -> None:
    """OpenSSL 62/64: the certificate lists other names; which ones is shown."""
    check = check_tls(tls(code=code, error=message, host=host))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.TLS_HOSTNAME_MISMATCH)
    assert f"does not name {host}" in check.detail
    assert "names broker.example, 10.0.0.5" in check.detail
    assert "MQTTHUB_BROKER_URL" in (check.fix or "")
    assert "chain is still verified" in (check.fix or "")


def test_expired_certificate_cannot_be_worked_around() -> None:
    """OpenSSL 10: renew it; no client setting is offered as a workaround."""
    expired = CertInfo(CERT.subject, CERT.issuer, CERT.names, "2024-01-01T00:00:00+00:00", -30.0)
    check = check_tls(tls(cert=expired, code=10, error="certificate has expired"))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.TLS_CERT_EXPIRED)
    assert "valid until 2024-01-01" in check.detail
    assert "MQTTHUB_" not in (check.fix or "")


@pytest.mark.parametrize("days_left", [29.4, 5.0, 0.5])
def test_certificate_close_to_expiry_warns(days_left: float) -> None:
    """Fewer than 30 days left: a warning to renew, not a failure."""
    soon = CertInfo(CERT.subject, CERT.issuer, CERT.names, CERT.not_after, days_left)
    check = check_tls(tls(cert=soon))
    assert (check.status, check.cause) == (Outcome.WARN, None)
    assert f"certificate expires in {days_left:.0f} days" in check.detail
    assert "renew" in (check.fix or "")


def test_certificate_with_thirty_days_left_passes() -> None:
    """Exactly the warning threshold is still a pass."""
    ok = CertInfo(CERT.subject, CERT.issuer, CERT.names, CERT.not_after, EXPIRY_WARNING_DAYS)
    assert check_tls(tls(cert=ok)).status is Outcome.PASS


def test_certificate_not_yet_valid_is_not_blamed_on_the_ca() -> None:
    """A clock behind the certificate's start date is not a CA problem."""
    check = check_tls(tls(code=9, error="certificate is not yet valid"))
    assert check.status is Outcome.FAIL
    assert check.cause is not Cause.TLS_UNKNOWN_CA
    assert "not signed by a CA" not in check.detail


# --- mqtt connect ---------------------------------------------------------------------

# What a broker that does not speak MQTT 5 answers before the 3.1.1 attempt.
V5_REFUSED = Attempt(V5, "unsupported_protocol", 0x84)
V5_CLOSED = Attempt(V5, "closed_before_connack")


@pytest.mark.parametrize(
    ("attempts", "cause"),
    [
        ((Attempt(V5, "bad_credentials", 0x86),), Cause.BAD_CREDENTIALS),
        ((V5_REFUSED, Attempt(V311, "bad_credentials", 4)), Cause.BAD_CREDENTIALS),
        ((Attempt(V5, "not_authorized", 0x87),), Cause.NOT_AUTHORIZED),
        ((V5_REFUSED, Attempt(V311, "not_authorized", 5)), Cause.NOT_AUTHORIZED),
        ((Attempt(V5, "banned", 0x8A),), Cause.NOT_AUTHORIZED),
        ((Attempt(V5, "client_id_rejected", 0x85),), Cause.CLIENT_ID_REJECTED),
        ((V5_REFUSED, Attempt(V311, "client_id_rejected", 2)), Cause.CLIENT_ID_REJECTED),
        ((Attempt(V5, "server_unavailable", 0x88),), Cause.SERVER_UNAVAILABLE),
        ((Attempt(V5, "server_busy", 0x89),), Cause.SERVER_UNAVAILABLE),
        ((V5_REFUSED, Attempt(V311, "server_unavailable", 3)), Cause.SERVER_UNAVAILABLE),
        ((V5_REFUSED, Attempt(V311, "unsupported_protocol", 1)), Cause.PROTOCOL_UNSUPPORTED),
        ((V5_CLOSED, Attempt(V311, "unsupported_protocol", 1)), Cause.PROTOCOL_UNSUPPORTED),
        ((V5_CLOSED, Attempt(V311, "closed_before_connack")), Cause.BAD_CREDENTIALS),
    ],
)
def test_connack_refusal_maps_to_its_cause(attempts: tuple[Attempt, ...], cause: Cause) -> None:
    """Each CONNACK refusal, on MQTT 5 or after falling back to 3.1.1, has its cause; a
    close before CONNACK on 3.1.1 with credentials set is taken as their refusal."""
    check = check_connect(connect(*attempts))
    assert (check.status, check.cause) == (Outcome.FAIL, cause)
    for attempt in attempts:
        assert f"{attempt.protocol}: {attempt.reason}" in check.detail


def test_refusal_detail_shows_the_code_and_the_user() -> None:
    """The detail shows each attempt with its reason code and who we connected as."""
    check = check_connect(
        connect(Attempt(V5, "unsupported_protocol", 0x84), Attempt(V311, "not_authorized", 5))
    )
    assert check.detail == (
        "MQTT 5: unsupported_protocol (code 0x84); MQTT 3.1.1: not_authorized (code 0x5); "
        "as user hub"
    )


def test_anonymous_refusal_says_anonymous() -> None:
    """Without a username the detail says the broker refused anonymous clients."""
    check = check_connect(connect(Attempt(V5, "not_authorized", 0x87), username=None))
    assert check.detail.endswith("as anonymous clients")


def test_not_authorized_mentions_mosquittos_answer_to_a_wrong_password() -> None:
    """Mosquitto says 'not authorized' for a wrong password; the fix says to check it."""
    check = check_connect(connect(Attempt(V5, "not_authorized", 0x87)))
    assert "wrong password" in (check.fix or "")


def test_banned_client_is_sent_to_the_administrator() -> None:
    """A ban is not a credentials typo: the fix says who can lift it."""
    check = check_connect(connect(Attempt(V5, "banned", 0x8A)))
    assert "banned" in (check.fix or "")


def test_no_connack_at_all_is_server_unavailable() -> None:
    """TCP accepted but CONNECT never answered: look at the broker's log."""
    check = check_connect(connect(Attempt(V5, "timeout"), Attempt(V311, "timeout")))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.SERVER_UNAVAILABLE)
    assert check.detail == "no CONNACK: MQTT 5: timeout; MQTT 3.1.1: timeout"
    assert "broker's log" in (check.fix or "")


@pytest.mark.parametrize(
    "attempt",
    [
        Attempt(V5, "bad_authentication_method", 0x8C),
        Attempt(V5, "quota_exceeded", 0x97),
        Attempt(V5, "connection_rate_exceeded", 0x9F),
    ],
)
def test_other_connack_refusals_do_not_claim_the_broker_did_not_answer(attempt: Attempt) -> None:
    """A broker that answered CONNECT with a refusal is not one that stayed silent."""
    check = check_connect(connect(attempt))
    assert check.status is Outcome.FAIL
    assert not check.detail.startswith("no CONNACK")
    assert "did not answer CONNECT" not in (check.fix or "")


def test_connected_passes_naming_protocol_client_id_and_broker() -> None:
    """A connection shows the protocol, the probe's client id and the broker version."""
    check = check_connect(
        connect(Attempt(V5, "connected"), broker_version="mosquitto version 2.0.18")
    )
    assert check.status is Outcome.PASS
    assert check.detail.startswith(
        "connected with MQTT 5 as mqtthub-doctor-1a2b3c4d, broker mosquitto version 2.0.18"
    )


def test_fallback_to_mqtt_311_still_passes() -> None:
    """A broker that only speaks 3.1.1 is fine; the detail shows the fallback."""
    check = check_connect(connect(Attempt(V5, "closed_before_connack"), Attempt(V311, "connected")))
    assert check.status is Outcome.PASS
    assert "connected with MQTT 3.1.1" in check.detail
    assert "MQTT 5: closed_before_connack" in check.detail


def test_keepalive_capped_by_the_broker_warns() -> None:
    """The broker lowering our keepalive works, but serve's setting is then fiction."""
    check = check_connect(
        connect(Attempt(V5, "connected"), requested_keepalive=300, server_keepalive=120)
    )
    assert (check.status, check.cause) == (Outcome.WARN, Cause.KEEPALIVE_REJECTED)
    assert "caps keepalive at 120 s (we asked for 300 s" in check.detail
    assert "max_keepalive" in (check.fix or "")


@pytest.mark.parametrize("server_keepalive", [60, 600, None])
def test_keepalive_granted_or_not_reported_passes(server_keepalive: int | None) -> None:
    """Equal, higher or no server keepalive (MQTT 3.1.1) is no warning."""
    check = check_connect(
        connect(Attempt(V5, "connected"), requested_keepalive=60, server_keepalive=server_keepalive)
    )
    assert (check.status, check.cause) == (Outcome.PASS, None)


def test_keepalive_fix_suggests_a_value_the_configuration_accepts() -> None:
    """Following the keepalive fix must not produce a config_invalid failure."""
    check = check_connect(
        connect(Attempt(V5, "connected"), requested_keepalive=60, server_keepalive=3)
    )
    suggested = re.search(r"MQTTHUB_KEEPALIVE=(\d+)", check.fix or "")
    if suggested is not None:
        try:
            load_settings(keepalive=int(suggested.group(1)))
        except ConfigError as exc:
            pytest.fail(f"the fix {check.fix!r} leads to: {exc}")


# --- subscribe and publish ------------------------------------------------------------


def test_granted_and_delivered_passes() -> None:
    """Granted filters and a probe that came back: subscribe and publish both pass."""
    evidence = delivery()
    subscribe = check_subscribe(evidence)
    assert subscribe.status is Outcome.PASS
    assert subscribe.detail == f"granted devices/+/+ (QoS 1); probe on {PROBE_TOPIC} delivered"
    assert check_publish(evidence).status is Outcome.PASS


def test_refused_subscription_names_filter_code_and_acl_line() -> None:
    """SUBACK >= 0x80: the filter, the code and the Mosquitto ACL line for the user."""
    check = check_subscribe(delivery(granted={"devices/+/+": 0x87}, delivered=False))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.ACL_DENIED_SUBSCRIBE)
    assert "refused the subscription to devices/+/+ (SUBACK 0x87)" in check.detail
    assert check.fix == (
        "allow hub to read devices/+/+ in the broker's ACL "
        "(Mosquitto: `topic read devices/+/+` under `user hub`)"
    )


def test_suback_unspecified_error_is_a_refusal_too() -> None:
    """MQTT 3.1.1's only failure code, 0x80, counts as a refusal."""
    check = check_subscribe(
        delivery(granted={"devices/+/+": 0x80}, delivered=False, protocol=V311, publish_code=None)
    )
    assert check.cause is Cause.ACL_DENIED_SUBSCRIBE
    assert "SUBACK 0x80" in check.detail


def test_granted_but_silently_dropped_is_an_acl_denial() -> None:
    """Mosquitto grants a forbidden subscription and then drops what it may not read."""
    check = check_subscribe(delivery(delivered=False))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.ACL_DENIED_SUBSCRIBE)
    assert f"a probe published on {PROBE_TOPIC} never arrived" in check.detail
    assert "3.1.1" not in check.detail
    assert "`topic read devices/+/+` under `user hub`" in (check.fix or "")


def test_granted_but_not_delivered_on_311_admits_the_ambiguity() -> None:
    """On MQTT 3.1.1 a refused publish is silent too; the detail says so."""
    check = check_subscribe(delivery(delivered=False, protocol=V311, publish_code=None))
    assert check.cause is Cause.ACL_DENIED_SUBSCRIBE
    assert "(on MQTT 3.1.1 a refused probe publish looks the same)" in check.detail


def test_refused_publish_warns_on_both_checks() -> None:
    """PUBACK 0x87: publishing is denied (warn); delivery could not be tested (warn)."""
    evidence = delivery(publish_code=0x87, delivered=False)
    publish = check_publish(evidence)
    assert (publish.status, publish.cause) == (Outcome.WARN, Cause.ACL_DENIED_PUBLISH)
    assert f"refused a publish to {PROBE_TOPIC} (PUBACK 0x87)" in publish.detail
    assert "ingestion works" in publish.detail
    subscribe = check_subscribe(evidence)
    assert (subscribe.status, subscribe.cause) == (Outcome.WARN, None)
    assert "the probe publish was refused" in subscribe.detail
    assert subscribe.fix == "see the publish check"


def test_publish_without_a_puback_code_passes() -> None:
    """MQTT 3.1.1 has no PUBACK reason: nothing says the publish was refused."""
    check = check_publish(delivery(protocol=V311, publish_code=None))
    assert (check.status, check.detail) == (Outcome.PASS, f"published to {PROBE_TOPIC}")


def test_publish_fix_uses_the_configured_topic_prefix() -> None:
    """With MQTTHUB_TOPIC_PREFIX=plant7 the ACL line to add is for plant7, not devices."""
    check = check_publish(
        delivery(
            granted={"plant7/+/+": 1},
            probe_topic="plant7/mqtthub-doctor/heartbeat",
            publish_code=0x87,
            delivered=False,
        )
    )
    assert "topic write plant7/" in (check.fix or "")


def test_acl_fix_for_anonymous_clients_is_a_real_mosquitto_line() -> None:
    """Copying the fix into a Mosquitto acl_file must work for anonymous clients too."""
    check = check_subscribe(delivery(delivered=False, username=None))
    assert "user anonymous clients" not in (check.fix or "")


# --- stability ------------------------------------------------------------------------


def test_stable_connection_passes() -> None:
    """No drop during the soak."""
    check = check_stability(stability())
    assert (check.status, check.detail) == (
        Outcome.PASS,
        "connected for 60 s without a drop",
    )


@pytest.mark.parametrize(
    ("diagnosis", "message"),
    [("client_id_conflict", CONFLICT_MESSAGE), ("probable_client_id_conflict", PROBABLE_MESSAGE)],
)
def test_client_id_conflict_is_named_from_the_diagnosis(diagnosis: str, message: str) -> None:
    """Both the MQTT 5 0x8E and the 3.1.1 drop pattern say: another client has our id."""
    drops = (
        (drop("client_id_conflict", 0x8E, 4.0),)
        if diagnosis == "client_id_conflict"
        else tuple(drop("connection_lost", None, lasted) for lasted in (2.0, 2.1, 1.9))
    )
    check = check_stability(stability(*drops, diagnosis=diagnosis, message=message))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CLIENT_ID_CONFLICT)
    assert check.detail == message
    assert "unset MQTTHUB_CLIENT_ID" in (check.fix or "")


def test_borrowed_client_id_admits_the_probe_caused_the_conflict() -> None:
    """Soaking with --client-id of the live service kicks it: the detail says so."""
    check = check_stability(
        stability(
            drop("client_id_conflict", 0x8E, 4.0),
            diagnosis="client_id_conflict",
            message=CONFLICT_MESSAGE,
            borrowed=True,
            client_id="mqtthub-prod",
        )
    )
    assert check.cause is Cause.CLIENT_ID_CONFLICT
    assert check.detail.endswith(
        "(the probe used the live client id mqtthub-prod and so competed with the live "
        "client itself)"
    )


def test_borrowed_client_id_caveat_also_on_a_stable_soak() -> None:
    """The caveat is shown whenever the live id was borrowed, even without a drop."""
    check = check_stability(stability(borrowed=True, client_id="mqtthub-prod"))
    assert check.status is Outcome.PASS
    assert "competed with the live client itself" in check.detail


def test_keepalive_timeout_drop_is_named() -> None:
    """DISCONNECT 0x8D: the broker heard nothing for 1.5 x keepalive."""
    check = check_stability(
        stability(drop("connection_lost", None, 40.0), drop("keepalive_timeout", 0x8D, 95.0))
    )
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.KEEPALIVE_TIMEOUT)
    assert "keepalive timeout (0x8D) during 60 s" in check.detail
    assert "event loop" in (check.fix or "")


def test_diagnosed_conflict_wins_over_keepalive_timeouts() -> None:
    """A client-id conflict explains the drops better than a keepalive timeout among them."""
    check = check_stability(
        stability(
            drop("keepalive_timeout", 0x8D, 95.0),
            drop("client_id_conflict", 0x8E, 3.0),
            diagnosis="client_id_conflict",
            message=CONFLICT_MESSAGE,
        )
    )
    assert check.cause is Cause.CLIENT_ID_CONFLICT


def test_other_drops_fail_listing_their_reasons() -> None:
    """Drops without a known cause are listed for the broker's log."""
    check = check_stability(
        stability(drop("server_shutting_down", 0x8B, 20.0), drop("connection_lost", None, 35.0))
    )
    assert (check.status, check.cause) == (Outcome.FAIL, None)
    assert "2 drops in 60 s: server_shutting_down, connection_lost" in check.detail
    assert "broker's log" in (check.fix or "")


def test_session_taken_over_during_the_soak_is_a_conflict_even_after_a_stable_spell() -> None:
    """The broker said outright that another client took our id; that stays the cause."""
    check = check_stability(
        stability(drop("client_id_conflict", 0x8E, 5.0), drop("connection_lost", None, 40.0))
    )
    assert check.cause is Cause.CLIENT_ID_CONFLICT


# --- traffic and pipeline -------------------------------------------------------------


def test_device_messages_pass() -> None:
    """Messages heard: counts of messages and devices."""
    check = check_traffic(traffic(42, registered=3))
    assert (check.status, check.detail) == (
        Outcome.PASS,
        "42 messages from 3 devices in 30 s",
    )


def test_silence_with_devices_provisioned_elsewhere_names_both_endpoints() -> None:
    """Devices provisioned for another endpoint explain the silence; both are named."""
    check = check_traffic(
        traffic(
            registered=12,
            provisioned=("mqtt://broker.example:1883", "mqtts://broker.example:8883"),
        )
    )
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.ENDPOINT_MISMATCH)
    assert "provisioned with mqtts://broker.example:8883" in check.detail
    assert "this configuration uses mqtt://broker.example:1883" in check.detail
    assert "point MQTTHUB_BROKER_URL at mqtts://broker.example:8883" in (check.fix or "")
    assert "MQTTHUB_CA_FILE" in (check.fix or "")


def test_devices_provisioned_for_this_endpoint_are_not_a_mismatch() -> None:
    """Registered for exactly this endpoint and silent: the devices are not publishing."""
    check = check_traffic(traffic(registered=4, provisioned=("mqtt://broker.example:1883",)))
    assert check.cause is Cause.NO_DEVICE_TRAFFIC
    assert "while 4 devices are registered" in check.detail


def test_traffic_seen_wins_over_a_provisioning_mismatch() -> None:
    """Messages arriving mean the endpoint works, whatever the registry remembers."""
    check = check_traffic(
        traffic(5, registered=12, provisioned=("mqtts://old-broker.example:8883",))
    )
    assert check.status is Outcome.PASS


def test_silence_with_nothing_registered_only_warns() -> None:
    """A fresh install with no devices yet is a warning, without a fix to apply."""
    check = check_traffic(traffic())
    assert (check.status, check.cause, check.fix) == (Outcome.WARN, None, None)
    assert check.detail.endswith("no devices registered yet")


def test_stored_probe_reading_passes() -> None:
    """The service stored the doctor's reading: the whole pipeline works."""
    check = check_pipeline(PipelineEvidence(API, "mqtthub-doctor", stored=True))
    assert (check.status, check.detail) == (
        Outcome.PASS,
        f"{API} stored the probe reading of mqtthub-doctor",
    )


def test_pipeline_not_storing_quotes_the_api_error() -> None:
    """The API's error is kept; the fix points at the settings both sides must share."""
    check = check_pipeline(
        PipelineEvidence(
            API, "mqtthub-doctor", stored=False, error="[Errno 111] Connection refused"
        )
    )
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.PIPELINE_NOT_STORING)
    assert check.detail.endswith("within the wait: [Errno 111] Connection refused")
    assert "MQTTHUB_BROKER_URL" in (check.fix or "")
    assert "/healthz" in (check.fix or "")


def test_evidence_is_json_ready() -> None:
    """--json includes the evidence as plain data."""
    data = evidence_dict(tls(code=20, error="unable to get local issuer certificate"))
    assert data["verify_code"] == 20
    assert data["cert"]["issuer"] == "CN=Example Test CA"


def test_close_before_connack_without_credentials_is_the_protocol() -> None:
    """Anonymous, closed on both versions: not a credentials question."""
    check = check_connect(connect(V5_CLOSED, Attempt(V311, "closed_before_connack"), username=None))
    assert check.cause is Cause.PROTOCOL_UNSUPPORTED
    assert "neither MQTT 5 nor 3.1.1" in check.detail


def test_forced_version_names_the_setting_both_ways() -> None:
    """MQTTHUB_MQTT_VERSION forcing the version the broker does not speak, either way."""
    for forced, other in ((V5, V311), (V311, V5)):
        attempt = Attempt(forced, "closed_before_connack")
        check = check_connect(
            connect(attempt, username=None, forced=forced, unforced=Attempt(other, "connected"))
        )
        assert check.cause is Cause.MQTT_VERSION_UNSUPPORTED, check
        assert f"does not accept {forced}" in check.detail
        assert check.fix is not None
        assert "MQTTHUB_MQTT_VERSION" in check.fix


def test_no_suback_is_a_subscribe_failure_not_a_crash() -> None:
    """A broker that drops us instead of answering SUBSCRIBE (rumqttd on a refused filter)."""
    evidence = delivery(granted={}, delivered=False)
    evidence = replace(evidence, extra={"no_suback": True, "connection_lost": True})
    check = check_subscribe(evidence)
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.ACL_DENIED_SUBSCRIBE)
    assert "no SUBACK" in check.detail
    assert check_publish(evidence).status is Outcome.SKIP
