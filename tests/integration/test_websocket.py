"""MQTT over WebSockets (ws://, wss://) against a real Mosquitto WebSockets listener.

Debian's Mosquitto 2.0.11 serves WebSockets (``protocol websockets``, libwebsockets):
serve, listen, simulate and the doctor connect through it. Mosquitto upgrades every path
and always answers the ``mqtt`` subprotocol, so the doctor's wrong-path and
no-subprotocol causes are shown with a FAKE WebSocket server, and "not a WebSocket
server" with Python's http.server (tests/support/fake_websocket.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtthub.config import load_settings
from mqtthub.simulate import simulate
from mqtthub.transport.client import MqttTransport
from mqtthub.transport.connection import Ack
from support.certs import TlsFiles, make_tls_files
from support.doctor import doctor_checks
from support.fake_websocket import FakeWebSocketServer, PlainHttpServer
from support.mosquitto import mosquitto_pub
from support.mosquitto_ws import MosquittoWsBroker
from support.serve import ServeProcess, device, wait_until

WsFactory = Callable[..., MosquittoWsBroker]
SENSOR = '{"temperature": 21.5, "rssi": -60}'


pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def ws_broker_factory(tmp_path: Path) -> Iterator[WsFactory]:
    """Start Mosquitto brokers with a WebSockets listener; stop them after the test."""
    brokers: list[MosquittoWsBroker] = []

    def create(**options: Any) -> MosquittoWsBroker:
        broker = MosquittoWsBroker(workdir=tmp_path / f"broker-{len(brokers)}", **options)
        brokers.append(broker)
        broker.start()
        return broker

    yield create
    for broker in brokers:
        broker.stop()


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


def broker_env(broker: MosquittoWsBroker) -> dict[str, str]:
    """MQTTHUB_BROKER_URL (and the CA for wss://) of the broker's WebSockets listener."""
    env = {"MQTTHUB_BROKER_URL": broker.ws_url}
    if broker.ws_tls is not None:
        env["MQTTHUB_CA_FILE"] = str(broker.ws_tls.ca_file)
    return env


def doctor(**flags: Any) -> dict[str, dict[str, Any]]:
    return doctor_checks(flags)


def assert_failed(checks: dict[str, dict[str, Any]], check_id: str, cause: str, fix: str) -> None:
    check = checks[check_id]
    assert (check["status"], check["cause"]) == ("fail", cause), check
    assert fix in check["fix"], check["fix"]


# ---------------------------------------------------------------- serve, listen, simulate


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_serve_stores_a_device_message_over_websockets(
    ws_broker_factory: WsFactory, tls: TlsFiles, tmp_path: Path, secure: bool
) -> None:
    """serve connected with ws:// (or wss:// with MQTTHUB_CA_FILE) stores what a device
    publishes, at QoS 1, and acknowledges it to the broker."""
    broker = ws_broker_factory(ws_tls=tls if secure else None)
    env = {**broker_env(broker), "MQTTHUB_CLIENT_ID": "serve-ws"}
    with ServeProcess(workdir=tmp_path / "serve", env=env) as serve:
        mosquitto_pub(broker, "devices/ws-esp/sensor", SENSOR, qos=1)
        found = wait_until(lambda: device(serve, "ws-esp"), what="the device over WebSockets")
        assert found["latest"]["temperature"]["value"] == 21.5
        # The PUBACK leaves only after the commit; the broker logs it from serve's client.
        wait_until(
            lambda: re.search(r"Received PUBACK from serve-ws \(Mid: \d+", broker.log_text()),
            what=f"serve's PUBACK in the broker log:\n{broker.log_text()[-2000:]}",
        )
        log = serve.log_text()
    assert f"over WebSocket /mqtt (TLS: {'yes' if secure else 'no'}, MQTT 5)" in log
    assert "subscribed to devices/+/+ (granted QoS 1)" in log


def test_a_qos1_message_is_redelivered_until_acknowledged_over_websockets(
    ws_broker_factory: WsFactory,
) -> None:
    """Over ws://, a QoS 1 message is acknowledged only when the receiver says so (serve
    says so after the commit): unacknowledged, the broker delivers it again to the
    resumed session; acknowledged, never again."""
    broker = ws_broker_factory()
    endpoint = load_settings(broker_url=broker.ws_url).broker

    async def session(*, publish: bool, acknowledge: bool) -> list[tuple[bytes, bool]]:
        got: list[tuple[bytes, bool]] = []
        arrived = asyncio.Event()

        def handler(
            _topic: str, payload: bytes, _qos: int, _retain: bool, dup: bool, ack: Ack | None
        ) -> None:
            got.append((payload, dup))
            if acknowledge and ack is not None:
                transport.acknowledge([ack])
            arrived.set()

        subscribed = asyncio.Event()

        async def on_subscribed() -> None:
            subscribed.set()

        transport = MqttTransport(
            endpoint=endpoint,
            ssl_context=None,
            client_id="ws-ack-test",
            topics=("devices/+/+",),
            handler=handler,
            clean_start=False,
            session_expiry=300,
            on_subscribed=on_subscribed,
        )
        task = asyncio.create_task(transport.run())
        async with asyncio.timeout(10):
            await subscribed.wait()
            if publish:
                await asyncio.to_thread(
                    mosquitto_pub, broker, "devices/ws-ack/sensor", SENSOR, qos=1
                )
            await arrived.wait()
        if acknowledge:  # the PUBACK is on its way; the broker logs it
            await asyncio.to_thread(
                wait_until,
                lambda: "Received PUBACK from ws-ack-test" in broker.log_text(),
                what="the PUBACK",
            )
        await transport.close()
        await task
        return got

    async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
        first = await session(publish=True, acknowledge=False)
        second = await session(publish=False, acknowledge=True)
        third_got: list[Any] = []
        endpoint_check = MqttTransport(
            endpoint=endpoint,
            ssl_context=None,
            client_id="ws-ack-test",
            topics=(),
            handler=lambda *args: third_got.append(args),
            clean_start=False,
            session_expiry=300,
        )
        connection = await endpoint_check.open(5)
        # A redelivery would arrive right after CONNACK; a probe message marks the end.
        await connection.subscribe(["probe/ws-ack"])
        await connection.publish("probe/ws-ack", b"end")
        await asyncio.to_thread(
            wait_until, lambda: any(a[0] == "probe/ws-ack" for a in third_got), what="the probe"
        )
        await connection.close()
        return first, second, third_got

    first, second, third = asyncio.run(scenario())
    assert first == [(SENSOR.encode(), False)]
    assert second == [(SENSOR.encode(), True)]  # the same message, redelivered (DUP)
    assert [args[0] for args in third] == ["probe/ws-ack"]  # acknowledged: gone


def test_listen_receives_a_task_over_websockets(
    ws_broker_factory: WsFactory, tmp_path: Path
) -> None:
    """`mqtthub listen` on ws:// shows a task serve published on the MQTT port."""
    broker = ws_broker_factory()
    serve_env = {"MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{broker.port}"}
    with ServeProcess(workdir=tmp_path / "serve", env=serve_env) as serve:
        output = tmp_path / "listen.out"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
        listener = subprocess.Popen(
            [
                *(sys.executable, "-m", "mqtthub", "listen", "--recipient", "61016968"),
                *("--state-dir", str(tmp_path / "state")),
            ],
            env={**clean, "MQTTHUB_BROKER_URL": broker.ws_url},
            stdout=output.open("ab"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: "connected to ws://" in output.read_text(), what="listen connected")
            response = serve.http.post(
                "/api/tasks", json={"recipient": "61016968", "title": "Check valve 7"}
            )
            assert response.status_code == 201, response.text
            task_id = response.json()["id"]
            wait_until(lambda: "Check valve 7" in output.read_text(), what="the task shown")
            wait_until(
                lambda: any(
                    t["id"] == task_id and t["state"] == "delivered"
                    for t in serve.get("/api/tasks", params={"recipient": "61016968"}).json()
                ),
                what="the receipt sent over WebSockets",
            )
        finally:
            listener.send_signal(signal.SIGTERM)
            listener.wait(15)
    assert f"connected to ws://127.0.0.1:{broker.ws_port}/mqtt" in output.read_text()


def test_simulate_over_websockets(ws_broker_factory: WsFactory, tmp_path: Path) -> None:
    """`mqtthub simulate --broker-url ws://...`: every device connects over WebSockets and
    serve (on the MQTT port) stores their readings."""
    from click.testing import CliRunner

    broker = ws_broker_factory()
    serve_env = {"MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{broker.port}"}
    with ServeProcess(workdir=tmp_path / "serve", env=serve_env) as serve:
        result = CliRunner().invoke(
            simulate,
            [
                *("--broker-url", broker.ws_url, "--devices", "3", "--duration", "2.5"),
                *("--sensor-interval", "0.5", "--heartbeat-interval", "1"),
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.stderr
        assert "connects 3, chaos drops 0" in result.stderr
        wait_until(
            lambda: len(serve.get("/api/devices").json()) == 3, what="the 3 simulated devices"
        )
    # Mosquitto logs WebSocket clients by their IPv4-mapped address.
    assert len(re.findall(r"from ::ffff:127\.0\.0\.1:\d+ as sim-", broker.log_text())) == 3


# ---------------------------------------------------------------- doctor


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_doctor_passes_over_websockets(
    ws_broker_factory: WsFactory, tls: TlsFiles, secure: bool
) -> None:
    """ws:// and wss:// to Mosquitto's WebSockets listener: every layer passes, the
    websocket layer included."""
    broker = ws_broker_factory(ws_tls=tls if secure else None)
    flags = {"broker_url": broker.ws_url}
    if secure:
        flags["ca_file"] = str(tls.ca_file)
    checks = doctor(**flags)
    ran = ["config", "dns", "tcp", "tls", "websocket", "mqtt_connect", "subscribe", "publish"]
    assert [checks[c]["status"] for c in ran] == ["pass"] * len(ran), checks
    assert "subprotocol mqtt" in checks["websocket"]["detail"]
    assert ("certificate verified" in checks["tls"]["detail"]) == secure


def test_doctor_shows_no_websocket_line_for_mqtt_urls(ws_broker_factory: WsFactory) -> None:
    broker = ws_broker_factory()
    assert "websocket" not in doctor(broker_url=f"mqtt://127.0.0.1:{broker.port}")


def test_doctor_ws_tls_expected(ws_broker_factory: WsFactory, tls: TlsFiles) -> None:
    """ws:// (plain HTTP) to a wss:// listener."""
    broker = ws_broker_factory(ws_tls=tls)
    checks = doctor(broker_url=f"ws://127.0.0.1:{broker.ws_port}/mqtt")
    assert_failed(checks, "tls", "ws_tls_expected", "wss://")


def test_doctor_ws_tls_not_offered(ws_broker_factory: WsFactory, tls: TlsFiles) -> None:
    """wss:// to a plain ws:// listener."""
    broker = ws_broker_factory()
    checks = doctor(broker_url=f"wss://localhost:{broker.ws_port}/mqtt", ca_file=str(tls.ca_file))
    assert_failed(checks, "tls", "ws_tls_not_offered", "ws://")


def test_doctor_ws_not_http_on_an_mqtt_port(ws_broker_factory: WsFactory) -> None:
    """ws:// pointed at Mosquitto's plain MQTT port: it closes on an HTTP request."""
    broker = ws_broker_factory()
    checks = doctor(broker_url=f"ws://127.0.0.1:{broker.port}/mqtt")
    assert_failed(checks, "websocket", "ws_not_http", "mqtt://")
    assert checks["mqtt_connect"]["status"] == "skip"


def test_doctor_passes_a_path_mosquitto_ignores(ws_broker_factory: WsFactory) -> None:
    """Mosquitto upgrades any path: ws://host:port/anything works there (EMQX would 404)."""
    broker = ws_broker_factory()
    checks = doctor(broker_url=f"ws://127.0.0.1:{broker.ws_port}/anything")
    assert checks["websocket"]["status"] == "pass"
    assert checks["subscribe"]["status"] == "pass"


def test_doctor_ws_path_not_found_names_the_path_that_works() -> None:
    """A FAKE EMQX-like server: /wrong answers 404, /mqtt upgrades."""
    with FakeWebSocketServer(path="/mqtt") as server:
        checks = doctor(broker_url=f"ws://127.0.0.1:{server.port}/wrong")
    assert_failed(checks, "websocket", "ws_path_not_found", f"ws://127.0.0.1:{server.port}/mqtt")
    assert "HTTP 404" in checks["websocket"]["detail"]


def test_doctor_ws_path_not_found_when_no_usual_path_upgrades() -> None:
    """A FAKE server that upgrades only an unusual path: 404 everywhere the doctor tries."""
    with FakeWebSocketServer(path="/custom/mqtt-endpoint") as server:
        checks = doctor(broker_url=f"ws://127.0.0.1:{server.port}/mqtt")
    assert_failed(checks, "websocket", "ws_path_not_found", "path")


def test_doctor_ws_no_mqtt_subprotocol() -> None:
    """A FAKE generic WebSocket server that upgrades without the mqtt subprotocol."""
    with FakeWebSocketServer(path="/mqtt", mqtt=False) as server:
        checks = doctor(broker_url=f"ws://127.0.0.1:{server.port}/mqtt")
    assert_failed(checks, "websocket", "ws_no_mqtt_subprotocol", "Sec-WebSocket-Protocol")


def test_doctor_ws_not_a_websocket_server(tmp_path: Path) -> None:
    """Python's http.server: a web server that ignores the upgrade."""
    with PlainHttpServer(tmp_path / "site") as server:
        checks = doctor(broker_url=f"ws://127.0.0.1:{server.port}/mqtt")
    assert_failed(checks, "websocket", "ws_not_websocket_server", "8083")
    assert "SimpleHTTP" in checks["websocket"]["detail"]
