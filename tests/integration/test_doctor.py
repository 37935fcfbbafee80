"""`mqtthub doctor` against real brokers set up to fail in each way it must name.

A few causes no broker on this machine produces (a broker that speaks no MQTT version we
try, "bad user name or password", "server unavailable", DISCONNECT 0x8E / 0x8D) use the
FAKE broker of tests/support/fake_broker.py; DNS failure and "no broker process at all"
are covered by the pure rules in tests/unit/test_doctor_rules.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gmqtt.mqtt.constants import MQTTv50

from mqtthub.config import load_settings
from mqtthub.doctor.run import DoctorOptions
from mqtthub.store.database import Store
from mqtthub.store.schema import devices
from mqtthub.transport.client import MqttTransport
from support.certs import make_tls_files
from support.doctor import doctor_checks, doctor_cli
from support.fake_broker import FakeBroker
from support.mosquitto import MosquittoBroker, MosquittoFactory, mosquitto_pub
from support.ports import free_port
from support.serve import serve_for

pytestmark = pytest.mark.usefixtures("clean_environment")


def doctor(options: DoctorOptions | None = None, **flags: Any) -> dict[str, dict[str, Any]]:
    """Run the doctor in-process; its checks by id."""
    return doctor_checks(flags, options)


def url(broker: MosquittoBroker | FakeBroker, scheme: str = "mqtt", user: str = "") -> str:
    return f"{scheme}://{user}127.0.0.1:{broker.port}"


def assert_failed(
    checks: dict[str, dict[str, Any]], check_id: str, cause: str, fix_mentions: str
) -> None:
    check = checks[check_id]
    assert (check["status"], check["cause"]) == ("fail", cause), check
    assert fix_mentions in check["fix"], check["fix"]


def test_a_healthy_broker_passes(mosquitto: MosquittoBroker) -> None:
    """Everything passes; the optional checks say how to ask for them."""
    checks = doctor(broker_url=url(mosquitto))
    assert [c["status"] for c in checks.values()][:7] == ["pass"] * 7
    assert "mosquitto version 2.0" in checks["mqtt_connect"]["detail"]
    assert checks["stability"]["detail"] == "not requested (--soak SECONDS)"


def test_config_invalid_names_the_variable() -> None:
    """A missing CA file fails the config check and everything after it is skipped."""
    checks = doctor(ca_file="/nonexistent/ca.crt")
    assert_failed(checks, "config", "config_invalid", "MQTTHUB_CA_FILE")
    assert {c["status"] for k, c in checks.items() if k != "config"} == {"skip"}


def test_contradictory_broker_settings_warn(
    monkeypatch: pytest.MonkeyPatch, mosquitto: MosquittoBroker
) -> None:
    """MQTTHUB_BROKER_URL and MQTT_BROKER_HOST naming different brokers is called out."""
    monkeypatch.setenv("MQTT_BROKER_HOST", "10.42.0.1")
    monkeypatch.setenv("MQTT_BROKER_PORT", "8883")
    checks = doctor(broker_url=url(mosquitto))
    assert (checks["config"]["status"], checks["config"]["cause"]) == ("warn", "config_invalid")
    assert "10.42.0.1:8883" in checks["config"]["detail"]


def test_connection_refused_on_a_closed_port() -> None:
    """Nothing listens on the port (while a broker runs elsewhere): connection_refused."""
    checks = doctor(broker_url=f"mqtt://127.0.0.1:{free_port()}")
    assert_failed(checks, "tcp", "connection_refused", "MQTTHUB_BROKER_URL")
    assert "mosquitto (pid" in checks["tcp"]["detail"]


@pytest.fixture
def unresponsive_port() -> Iterator[int]:
    """A port whose accept queue is full, so new connections are dropped: a time-out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    yield port
    filler.close()
    server.close()


def test_connection_timeout_when_packets_are_dropped(unresponsive_port: int) -> None:
    """SYNs go unanswered: connection_timeout, and the run still ends quickly."""
    started = time.monotonic()
    checks = doctor(broker_url=f"mqtt://127.0.0.1:{unresponsive_port}")
    assert_failed(checks, "tcp", "connection_timeout", "firewall")
    assert time.monotonic() - started < 15


def test_tls_expected_for_a_plain_client_on_a_tls_port(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """A plain client pointed at a TLS listener: tls_expected, with the broker cert shown."""
    broker = mosquitto_factory(tls=make_tls_files(tmp_path / "tls"))
    checks = doctor(broker_url=url(broker))
    assert_failed(checks, "tls", "tls_expected", "mqtts://")
    assert "MQTTHUB_CA_FILE" in checks["tls"]["fix"]
    assert "issuer" in checks["tls"]["detail"]


def test_tls_not_offered_on_a_plain_port(mosquitto: MosquittoBroker) -> None:
    """mqtts:// to a plain listener: tls_not_offered."""
    checks = doctor(broker_url=url(mosquitto, "mqtts"))
    assert_failed(checks, "tls", "tls_not_offered", "mqtt://")


def test_tls_unknown_ca(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> None:
    """A CA file that did not sign the broker's certificate: tls_unknown_ca."""
    tls = make_tls_files(tmp_path / "tls")
    broker = mosquitto_factory(tls=tls)
    checks = doctor(broker_url=url(broker, "mqtts"), ca_file=str(tls.other_ca_file))
    assert_failed(checks, "tls", "tls_unknown_ca", "MQTTHUB_CA_FILE")


def test_tls_hostname_mismatch(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> None:
    """A broker reached by IP whose certificate names only a host: tls_hostname_mismatch."""
    tls = make_tls_files(tmp_path / "tls", hostnames=("broker.example",), ips=())
    broker = mosquitto_factory(tls=tls)
    checks = doctor(broker_url=url(broker, "mqtts"), ca_file=str(tls.ca_file))
    assert_failed(checks, "tls", "tls_hostname_mismatch", "MQTTHUB_TLS_INSECURE")
    assert "broker.example" in checks["tls"]["detail"]


def test_tls_cert_expired(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> None:
    """An expired broker certificate: tls_cert_expired."""
    tls = make_tls_files(tmp_path / "tls", expired=True)
    broker = mosquitto_factory(tls=tls)
    checks = doctor(broker_url=url(broker, "mqtts"), ca_file=str(tls.ca_file))
    assert_failed(checks, "tls", "tls_cert_expired", "renew")


def test_tls_passes_with_the_right_ca(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> None:
    """The right CA and name: TLS passes and the broker is reached."""
    tls = make_tls_files(tmp_path / "tls")
    broker = mosquitto_factory(tls=tls)
    checks = doctor(broker_url=f"mqtts://localhost:{broker.port}", ca_file=str(tls.ca_file))
    assert checks["tls"]["status"] == "pass"
    assert checks["subscribe"]["status"] == "pass"


@pytest.mark.parametrize(
    ("codes", "cause", "fix_mentions"),
    [
        ((0x84, 1), "protocol_unsupported", "MQTT listener"),
        ((0x86, 4), "bad_credentials", "MQTT_USERNAME"),
        ((0x88, 3), "server_unavailable", "broker"),
        ((0x85, 2), "client_id_rejected", "MQTTHUB_CLIENT_ID"),
    ],
)
def test_connack_refusals_of_a_fake_broker(
    codes: tuple[int, int], cause: str, fix_mentions: str
) -> None:
    """CONNACK codes Mosquitto does not send to the doctor, from the FAKE broker.

    (Mosquitto answers a client id its clientid_prefixes forbid with "not authorized".)
    """
    with FakeBroker(behaviour="refuse", refuse_codes=codes) as fake:
        checks = doctor(broker_url=url(fake))
    assert_failed(checks, "mqtt_connect", cause, fix_mentions)
    assert checks["subscribe"]["status"] == "skip"


def test_not_authorized_for_a_wrong_password(mosquitto_factory: MosquittoFactory) -> None:
    """Mosquitto answers a wrong password with 'not authorized' (5 / 0x87)."""
    broker = mosquitto_factory(users={"backend": "right-pass"})
    checks = doctor(broker_url=url(broker, user="backend:wrong-pass@"))
    assert_failed(checks, "mqtt_connect", "not_authorized", "MQTT_USERNAME")
    assert "wrong-pass" not in json.dumps(checks)


def test_keepalive_above_the_brokers_max(mosquitto_factory: MosquittoFactory) -> None:
    """max_keepalive 10 on the broker, 60 s configured: a keepalive_rejected warning."""
    broker = mosquitto_factory(max_keepalive=10)
    checks = doctor(broker_url=url(broker))
    check = checks["mqtt_connect"]
    assert (check["status"], check["cause"]) == ("warn", "keepalive_rejected")
    assert "MQTTHUB_KEEPALIVE=10" in check["fix"]


def test_acl_that_silently_drops_what_it_grants(mosquitto_factory: MosquittoFactory) -> None:
    """Mosquitto grants a subscription its ACL forbids and drops every message."""
    acl = "user backend\ntopic write devices/#\n"
    broker = mosquitto_factory(users={"backend": "pw-backend"}, acl=acl)
    checks = doctor(broker_url=url(broker, user="backend:pw-backend@"))
    assert_failed(checks, "subscribe", "acl_denied_subscribe", "topic read")
    assert "granted devices/+/+" in checks["subscribe"]["detail"]


def test_acl_that_refuses_publishing(mosquitto_factory: MosquittoFactory) -> None:
    """A user who may only read: the publish check warns acl_denied_publish (PUBACK 0x87)."""
    acl = "user backend\ntopic read devices/#\ntopic read $SYS/#\n"
    broker = mosquitto_factory(users={"backend": "pw-backend"}, acl=acl)
    checks = doctor(broker_url=url(broker, user="backend:pw-backend@"))
    publish = checks["publish"]
    assert (publish["status"], publish["cause"]) == ("warn", "acl_denied_publish")
    assert "0x87" in publish["detail"]
    assert checks["subscribe"]["status"] == "warn"


@pytest.fixture
def live_app(mosquitto: MosquittoBroker) -> Iterator[str]:
    """A desktop app that keeps reconnecting with client id ``desk-61016968``."""
    client_id = "desk-61016968"
    stop = threading.Event()

    def keep_connecting() -> None:
        while not stop.is_set():
            subprocess.run(
                [
                    *("mosquitto_sub", "-h", "127.0.0.1", "-p", str(mosquitto.port)),
                    *("-i", client_id, "-t", "mqtt_app/tasks/61016968/#", "-W", "1"),
                ],
                capture_output=True,
                check=False,
            )

    thread = threading.Thread(target=keep_connecting, daemon=True)
    thread.start()
    yield client_id
    stop.set()
    thread.join(5)


def test_soak_with_a_live_client_id_finds_the_conflict(
    mosquitto: MosquittoBroker, live_app: str
) -> None:
    """--soak with --client-id of an app that keeps reconnecting: client_id_conflict."""
    options = DoctorOptions(soak=20, client_id=live_app)
    checks = doctor(options, broker_url=url(mosquitto))
    stability = checks["stability"]
    assert (stability["status"], stability["cause"]) == ("fail", "client_id_conflict")
    assert live_app in stability["detail"]
    assert "competed with the live client" in stability["detail"]
    assert "MQTTHUB_CLIENT_ID" in stability["fix"]


@pytest.mark.parametrize(
    ("behaviour", "cause"),
    [("takeover", "client_id_conflict"), ("keepalive_timeout", "keepalive_timeout")],
)
def test_soak_against_disconnect_reasons_of_a_fake_broker(behaviour: str, cause: str) -> None:
    """DISCONNECT 0x8E and 0x8D (which Mosquitto 2.0 never sends) from the FAKE broker."""
    with FakeBroker(behaviour=behaviour) as fake:
        checks = doctor(DoctorOptions(soak=3), broker_url=url(fake))
    stability = checks["stability"]
    assert (stability["status"], stability["cause"]) == ("fail", cause)


def registered_device(tmp_path: Path, endpoint: str | None) -> str:
    """A SQLite registry with one device; returns its URL."""
    database = f"sqlite:///{tmp_path / 'registry.db'}"
    store = Store.open(database)
    with store.engine.begin() as connection:
        connection.execute(
            devices.insert().values(
                id="esp8266",
                status="online",
                first_seen=0.0,
                last_seen=0.0,
                last_message_type="sensor",
                status_changed_at=0.0,
                broker_endpoint=endpoint,
            )
        )
    store.close()
    return database


def test_no_device_traffic(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """Devices are registered but nothing arrives: no_device_traffic."""
    database = registered_device(tmp_path, None)
    options = DoctorOptions(expect_traffic=2)
    checks = doctor(options, broker_url=url(mosquitto), database_url=database)
    assert_failed(checks, "traffic", "no_device_traffic", "MQTTHUB_TOPIC_PREFIX")


def test_endpoint_mismatch(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """Devices provisioned with 10.42.0.1:8883 over TLS, backend on localhost plain."""
    database = registered_device(tmp_path, "mqtts://10.42.0.1:8883")
    options = DoctorOptions(expect_traffic=2)
    checks = doctor(options, broker_url=url(mosquitto), database_url=database)
    assert_failed(checks, "traffic", "endpoint_mismatch", "mqtts://10.42.0.1:8883")
    assert f"127.0.0.1:{mosquitto.port}" in checks["traffic"]["detail"]


@pytest.fixture
def publishing(mosquitto: MosquittoBroker) -> Iterator[list[tuple[str, str]]]:
    """Devices that keep publishing: append (topic, payload) pairs; each is published
    every 0.2 s until the test ends."""
    messages: list[tuple[str, str]] = []
    stop = threading.Event()

    def keep_publishing() -> None:
        while not stop.wait(0.2):
            for topic, payload in list(messages):
                mosquitto_pub(mosquitto, topic, payload)

    thread = threading.Thread(target=keep_publishing, daemon=True)
    thread.start()
    yield messages
    stop.set()
    thread.join(10)


TASMOTA_SENSOR = json.dumps(
    {"Time": "2026-09-21T10:00:00", "AM2301": {"Temperature": 22.1}, "TempUnit": "C"}
)


def test_expect_traffic_names_the_profile_each_topic_matches(
    monkeypatch: pytest.MonkeyPatch,
    mosquitto: MosquittoBroker,
    publishing: list[tuple[str, str]],
) -> None:
    """With mqtthub and tasmota active: how many messages and topics each profile read,
    Tasmota's own unstored topics counted, a made-up vendor's topic named as unmatched."""
    monkeypatch.setenv("MQTTHUB_PROFILES", "mqtthub,tasmota")
    mosquitto_pub(mosquitto, "tele/plug1/LWT", "Online", retain=True)
    publishing += [
        ("tele/plug1/SENSOR", TASMOTA_SENSOR),
        ("stat/plug1/RESULT", '{"POWER":"ON"}'),
        ("devices/d1/sensor", '{"t": 1.5}'),
        ("acme/pump-7/telemetry", '{"env": {"t": 4.5}}'),
    ]
    started = time.monotonic()
    checks = doctor(DoctorOptions(expect_traffic=3), broker_url=url(mosquitto))
    assert time.monotonic() - started < 15
    traffic = checks["traffic"]
    assert (traffic["status"], traffic["cause"]) == ("warn", "unmatched_topics"), traffic
    detail = traffic["detail"]
    assert re.search(
        r"tasmota: \d+ messages on 2 topics \(1 retained; \d+ more on 1 topics", detail
    )
    assert re.search(r"mqtthub: \d+ messages on 1 topics", detail), detail
    assert "acme/pump-7/telemetry (" in detail
    assert "listened to # " in detail
    assert 'topic = "acme/{device}/telemetry"' in traffic["fix"]


def test_expect_traffic_finds_devices_of_a_profile_not_enabled(
    mosquitto: MosquittoBroker, publishing: list[tuple[str, str]]
) -> None:
    """Tasmota devices publish, serve would read only mqtthub's topics: the doctor says
    so and names the setting."""
    publishing += [("tele/plug1/SENSOR", TASMOTA_SENSOR), ("tele/plug1/STATE", '{"UptimeSec": 5}')]
    checks = doctor(DoctorOptions(expect_traffic=2), broker_url=url(mosquitto))
    assert_failed(checks, "traffic", "profile_not_enabled", "MQTTHUB_PROFILES=mqtthub,tasmota")
    assert "tele/plug1/SENSOR" in checks["traffic"]["detail"]


def test_expect_traffic_sees_what_the_acl_lets_it_read(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """Mosquitto grants # and delivers only what the ACL allows: the allowed topics are
    still classified (here a Tasmota device on a broker that forbids everything else)."""
    acl = "user backend\ntopic readwrite devices/#\ntopic read tele/#\ntopic read $SYS/#\n"
    users = {"backend": "pw-backend", "plug": "pw-plug"}
    acl += "user plug\ntopic write #\n"
    broker = mosquitto_factory(users=users, acl=acl)
    stop = threading.Event()

    def plug() -> None:
        while not stop.wait(0.2):
            for topic in ("tele/plug1/SENSOR", "other/secret/data"):
                mosquitto_pub(broker, topic, TASMOTA_SENSOR, username="plug", password="pw-plug")

    thread = threading.Thread(target=plug, daemon=True)
    thread.start()
    try:
        checks = doctor(
            DoctorOptions(expect_traffic=2), broker_url=url(broker, user="backend:pw-backend@")
        )
    finally:
        stop.set()
        thread.join(10)
    assert_failed(checks, "traffic", "profile_not_enabled", "tasmota")
    assert "other/secret/data" not in checks["traffic"]["detail"]


def test_pipeline_stores_the_probe(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """--api: the running service stores the probe reading, so the pipeline passes."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        checks = doctor(DoctorOptions(api=serve.base_url), broker_url=url(mosquitto))
    assert checks["pipeline"]["status"] == "pass"


def test_pipeline_not_storing(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> None:
    """A service listening to another broker than the doctor: pipeline_not_storing."""
    ours, theirs = mosquitto_factory(), mosquitto_factory()
    with serve_for(theirs.port, tmp_path / "serve") as serve:
        checks = doctor(DoctorOptions(api=serve.base_url), broker_url=url(ours))
    assert_failed(checks, "pipeline", "pipeline_not_storing", "MQTTHUB_BROKER_URL")


def test_cli_json_and_exit_status(mosquitto: MosquittoBroker) -> None:
    """--json prints one object; exit 0 when healthy, 1 when a check fails."""
    healthy = doctor_cli("--json", env={"MQTTHUB_BROKER_URL": url(mosquitto)})
    assert healthy.returncode == 0, healthy.stdout
    report = json.loads(healthy.stdout)
    assert report["ok"] is True
    assert {"id", "status", "cause", "detail", "fix"} <= set(report["checks"][0])
    broken = doctor_cli("--broker-url", f"mqtt://127.0.0.1:{free_port()}")
    assert broken.returncode == 1
    assert "[FAIL] tcp" in broken.stdout
    assert "fix: point MQTTHUB_BROKER_URL" in broken.stdout


def test_cli_usage_errors_exit_2() -> None:
    """A bad option is a usage error: exit status 2."""
    assert doctor_cli("--soak", "soon").returncode == 2


def test_cli_help_explains_each_option() -> None:
    """doctor --help explains every option."""
    text = doctor_cli("--help").stdout
    for option in ("--json", "--soak", "--client-id", "--expect-traffic", "--api"):
        assert option in text
    assert "competes with the live client" in " ".join(text.split())


def test_a_late_puback_never_answers_the_next_publish() -> None:
    """The first publish gets no PUBACK in time and is given up; when the broker finally
    answers both, the second publish gets its own reason code (0x87), not the first
    one's late 0x10."""

    async def scenario() -> int:
        settings = load_settings(broker_url=f"mqtt://127.0.0.1:{fake.port}")
        transport = MqttTransport(
            endpoint=settings.broker,
            ssl_context=None,
            client_id="late-puback",
            topics=(),
            handler=lambda *_message: None,
        )
        session = await transport.open(MQTTv50)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await session.publish("probe/a", b"a")
            return await asyncio.wait_for(session.publish("probe/b", b"b"), timeout=10)
        finally:
            await session.close()

    with FakeBroker(behaviour="late_puback") as fake:
        assert asyncio.run(scenario()) == 0x87
