"""What brokers other than Mosquitto do differently, and mqtthub right on each (issue 16).

The embedded broker (rumqttd, from the installed ``iotcore`` package) is started for real,
as ``serve`` starts it. Behaviours no broker here can be made to show (a broker that never
answers an MQTT 5 CONNECT, like amqtt; one that speaks only one protocol version, like
Aedes; one that closes the connection without a CONNACK on a wrong password, like rumqttd
with authentication) come from the FAKE broker of tests/support/fake_broker.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtthub.config import EmbeddedBroker, MqttVersion, load_settings
from mqtthub.doctor.run import DoctorOptions
from mqtthub.transport.backoff import Backoff
from mqtthub.transport.client import MqttTransport
from mqtthub.transport.embedded import start_if_needed
from mqtthub.transport.history import ConnectionEvent
from support.doctor import doctor_checks, doctor_cli
from support.fake_broker import FakeBroker
from support.mosquitto import MosquittoFactory
from support.ports import free_port
from support.serve import serve_for, wait_until
from support.sessions import assert_session_report

pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def rumqttd() -> Iterator[int]:
    """The embedded broker (rumqttd) on a free port, started the way serve starts it."""
    port = free_port()
    endpoint = load_settings(broker_url=f"mqtt://127.0.0.1:{port}").broker
    broker = start_if_needed(endpoint, EmbeddedBroker.AUTO)
    assert broker is not None
    try:
        yield port
    finally:
        broker.stop()


RUMQTTD_AUTH_TOML = """
id = 0

[router]
id = 0
max_connections = 100
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
    auth = {{ ingest = "right" }}
"""


@pytest.fixture
def rumqttd_with_auth(tmp_path: Path) -> Iterator[int]:
    """rumqttd (iotcore) with one user, ingest:right, on a free port."""
    from iotcore import Broker

    port = free_port()
    config = tmp_path / "rumqttd.toml"
    config.write_text(RUMQTTD_AUTH_TOML.format(port=port))
    broker = Broker(port=port, listen="127.0.0.1", config_path=str(config)).start()
    try:
        yield port
    finally:
        broker.stop()


def doctor(options: DoctorOptions | None = None, **flags: Any) -> dict[str, dict[str, Any]]:
    """Run the doctor in-process; its checks by id."""
    return doctor_checks(flags, options)


# ---------------------------------------------------------------- 1: doctor on rumqttd


def test_doctor_json_reports_on_the_embedded_rumqttd(rumqttd: int) -> None:
    """rumqttd drops a client that subscribes to $SYS/broker/version: the doctor asks for
    it on its own, last, so the delivery probe runs and --json prints a whole report."""
    done = doctor_cli("--json", env={"MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{rumqttd}"})
    assert "TimeoutError" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    checks = {check["id"]: check for check in report["checks"]}
    assert checks["mqtt_connect"]["status"] == "pass", checks["mqtt_connect"]
    assert "MQTT 3.1.1: connected" in checks["mqtt_connect"]["detail"]
    assert checks["subscribe"]["status"] == "pass", checks["subscribe"]
    assert "delivered" in checks["subscribe"]["detail"]


def assert_failed(check: dict[str, Any], cause: str, fix_mentions: str) -> None:
    assert (check["status"], check["cause"]) == ("fail", cause), check
    assert fix_mentions in check["fix"], check["fix"]


# ---------------------------------------------------------------- 2: auto falls back on silence


def test_serve_falls_back_to_311_when_mqtt5_connect_gets_no_answer(tmp_path: Path) -> None:
    """A FAKE broker that never answers an MQTT 5 CONNECT but serves 3.1.1 (amqtt's way):
    serve falls back to 3.1.1 and connects, as the doctor does with the same settings."""
    with FakeBroker(behaviour="silent_v5") as fake:
        checks = doctor(broker_url=f"mqtt://127.0.0.1:{fake.port}")
        assert checks["mqtt_connect"]["status"] == "pass", checks["mqtt_connect"]
        assert "MQTT 3.1.1: connected" in checks["mqtt_connect"]["detail"]
        with serve_for(fake.port, tmp_path / "serve", MQTTHUB_EMBEDDED_BROKER="never") as serve:
            health = wait_until(
                lambda: (body := serve.get("/healthz").json())["mqtt"] == "connected" and body,
                timeout=20,
                what=f"serve connected; log:\n{serve.log_text()}",
            )
            assert health["protocol"] == "MQTT 3.1.1", health
            assert "falling back to MQTT 3.1.1" in serve.log_text()


# ---------------------------------------------------------------- 3: listen and the version


def test_listen_uses_the_mqtt_version_setting(tmp_path: Path) -> None:
    """`mqtthub listen` with MQTTHUB_MQTT_VERSION=3.1.1 connects with 3.1.1 at once (a
    FAKE broker that records each CONNECT's protocol level and never answers MQTT 5)."""
    with FakeBroker(behaviour="silent_v5") as fake:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
        env = {
            **clean,
            "MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{fake.port}",
            "MQTTHUB_MQTT_VERSION": "3.1.1",
        }
        command = [sys.executable, "-m", "mqtthub", "listen", "--recipient", "4711"]
        command += ["--state-dir", str(tmp_path / "state")]
        listener = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(listener.stdout or ()))
        reader.start()
        try:
            wait_until(lambda: fake.levels, what="listen's first CONNECT")
            assert fake.levels[0] == 4, fake.levels
            connected = wait_until(
                lambda: next((line for line in lines if line.startswith("connected")), None),
                what=f"listen connected; output: {lines}",
            )
            assert "(MQTT 3.1.1)" in connected, connected
        finally:
            listener.terminate()
            listener.wait(10)
            reader.join(10)


# ---------------------------------------------------------------- 4: a forced version


@pytest.mark.parametrize(
    ("behaviour", "forced", "speaks"),
    [("only_v311", "5", "MQTT 3.1.1"), ("only_v5", "3.1.1", "MQTT 5")],
)
def test_doctor_names_a_forced_version_the_broker_does_not_speak(
    behaviour: str, forced: str, speaks: str
) -> None:
    """A FAKE broker speaking one version (Aedes: 3.1.1 only) with MQTTHUB_MQTT_VERSION set
    to the other: the cause is that version, the fix names the setting."""
    with FakeBroker(behaviour=behaviour) as fake:
        checks = doctor(broker_url=f"mqtt://127.0.0.1:{fake.port}", mqtt_version=forced)
    check = checks["mqtt_connect"]
    assert_failed(check, "mqtt_version_unsupported", "MQTTHUB_MQTT_VERSION=auto")
    assert f"does not accept MQTT {forced}" in check["detail"], check
    assert f"it accepts {speaks}" in check["detail"], check
    assert checks["subscribe"]["status"] == "skip"


def test_serve_log_names_a_forced_version(caplog: pytest.LogCaptureFixture) -> None:
    """serve, MQTT 5 forced, against a FAKE 3.1.1-only broker: its log says so."""

    async def one_attempt(port: int) -> None:
        transport = make_transport(port, mqtt_version=MqttVersion.V5)
        await transport._one_connection()

    with FakeBroker(behaviour="only_v311") as fake:
        asyncio.run(one_attempt(fake.port))
        assert fake.levels == [5]
    assert "MQTTHUB_MQTT_VERSION=5 forces: set MQTTHUB_MQTT_VERSION=auto" in caplog.text


# ---------------------------------------------------------------- 5: no CONNACK on a password


def make_transport(
    port: int, *, user: str = "", events: list[ConnectionEvent] | None = None, **kwargs: Any
) -> MqttTransport:
    endpoint = load_settings(broker_url=f"mqtt://{user}127.0.0.1:{port}").broker
    return MqttTransport(
        endpoint=endpoint,
        ssl_context=None,
        client_id="quirks",
        topics=("devices/+/+",),
        handler=lambda *_args: None,
        connect_timeout=2.0,
        backoff=Backoff(base=0.5, cap=30.0),
        on_event=(events.append if events is not None else None),
        **kwargs,
    )


def test_doctor_says_credentials_when_the_broker_closes_before_connack() -> None:
    """A FAKE broker that closes the connection on CONNECT (rumqttd on a wrong password),
    credentials set: bad_credentials (likely), not protocol_unsupported."""
    with FakeBroker(behaviour="no_connack") as fake:
        checks = doctor(broker_url=f"mqtt://ingest:wrong@127.0.0.1:{fake.port}")
        anonymous = doctor(broker_url=f"mqtt://127.0.0.1:{fake.port}")
    assert_failed(checks["mqtt_connect"], "bad_credentials", "password")
    assert "likely" in checks["mqtt_connect"]["detail"]
    assert anonymous["mqtt_connect"]["cause"] == "protocol_unsupported"


def test_serve_retries_at_the_cap_when_credentials_are_the_likely_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same FAKE broker: serve tries MQTT 5 and 3.1.1, then waits the backoff cap
    (as for other permanent refusals) and names the credentials."""
    events: list[ConnectionEvent] = []

    async def one_attempt(port: int) -> float:
        transport = make_transport(port, user="ingest:wrong@", events=events)
        return await transport._one_connection()

    with FakeBroker(behaviour="no_connack") as fake:
        delay = asyncio.run(one_attempt(fake.port))
        assert fake.levels == [5, 4]
    assert delay >= 0.9 * 30.0
    assert [(e.event, e.reason) for e in events] == [("failed", "probable_bad_credentials")]
    assert "wrong username or password is the likely cause" in caplog.text


# ---------------------------------------------------------------- 6: a forgotten session


@pytest.mark.parametrize("persistence", [False, True])
def test_serve_reports_a_session_the_broker_forgot(
    mosquitto_factory: MosquittoFactory, tmp_path: Path, persistence: bool
) -> None:
    """serve keeps a persistent session (the default); a Mosquitto without persistence is
    restarted and its sessions vanish: CONNACK session present = 0 on the reconnect gives a
    warning, a session_lost connection event and a /healthz field. With persistence the
    session survives the restart and nothing is reported."""
    broker = mosquitto_factory(persistence=persistence)
    env = {"MQTTHUB_CLIENT_ID": "kept-session-1", "MQTTHUB_RECONNECT_BASE": "0.2"}
    with serve_for(broker.port, tmp_path / "serve", **env) as serve:
        broker.restart()
        events = wait_until(
            lambda: (
                (c := serve.get("/api/connection").json())["state"] == "connected"
                and [e for e in c["events"] if e["event"] == "connected"][1:]
                and c["events"]
            ),
            timeout=20,
            what=f"serve reconnected; log:\n{serve.log_text()}",
        )
        assert_session_report(serve, events, lost=not persistence, detail="kept-session-1")


def test_doctor_soak_reports_a_session_the_broker_forgot(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """--soak keeps a persistent session as serve does; a Mosquitto without persistence is
    restarted mid-soak: the stability check names session_lost."""
    broker = mosquitto_factory(persistence=False)
    result: dict[str, dict[str, Any]] = {}
    options = DoctorOptions(soak=6.0, client_id="soak-session-1")
    soak = threading.Thread(
        target=lambda: result.update(doctor(options, broker_url=f"mqtt://127.0.0.1:{broker.port}"))
    )
    soak.start()
    wait_until(lambda: "as soak-session-1" in broker.log_text(), what="the soak's connection")
    broker.restart()
    soak.join(30)
    check = result["stability"]
    assert (check["status"], check["cause"]) == ("fail", "session_lost"), check
    assert "persistence" in check["fix"]


def test_wrong_password_on_the_real_rumqttd(
    rumqttd_with_auth: int, caplog: pytest.LogCaptureFixture
) -> None:
    """rumqttd with authentication closes the connection without a CONNACK on a wrong
    password: the doctor says bad_credentials (likely), serve waits the backoff cap and
    names the credentials; the right password passes."""
    port = rumqttd_with_auth
    wrong = doctor(broker_url=f"mqtt://ingest:wrong@127.0.0.1:{port}")
    assert_failed(wrong["mqtt_connect"], "bad_credentials", "password")
    right = doctor(
        DoctorOptions(payload_size=100), broker_url=f"mqtt://ingest:right@127.0.0.1:{port}"
    )
    assert right["mqtt_connect"]["status"] == "pass", right["mqtt_connect"]
    events: list[ConnectionEvent] = []

    async def one_attempt() -> float:
        transport = make_transport(port, user="ingest:wrong@", events=events)
        return await transport._one_connection()

    assert asyncio.run(one_attempt()) >= 0.9 * 30.0
    assert [e.reason for e in events] == ["probable_bad_credentials"]
    assert "wrong username or password is the likely cause" in caplog.text
