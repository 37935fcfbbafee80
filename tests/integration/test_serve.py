"""`mqtthub serve` as a real process against real Mosquitto brokers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.certs import TlsFiles, make_tls_files
from support.mosquitto import MosquittoBroker, MosquittoFactory, mosquitto_pub
from support.ports import free_port
from support.serve import ServeProcess, device, serve_for, wait_until

ESP_STATUS = '{"device_id":"esp8266","status":"online"}'
ESP_SENSOR = (
    '{"device_id":"esp8266","temperature":23.4,"humidity":51.2,"pressure":1012.8,'
    '"light":312,"rssi":-61,"voltage":3.29,"uptime":86400}'
)
ESP_HEARTBEAT = '{"device_id":"esp8266","uptime":86400,"rssi":-60}'


def test_esp8266_messages_show_up_through_the_api(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The three ESP8266 messages make the device online with its 7 latest values."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        for kind, payload in (
            ("status", ESP_STATUS),
            ("sensor", ESP_SENSOR),
            ("heartbeat", ESP_HEARTBEAT),
        ):
            mosquitto_pub(mosquitto, f"devices/esp8266/{kind}", payload)
        found = wait_until(
            lambda: (d := device(serve, "esp8266")) and d["last_message_type"] == "heartbeat" and d,
            what="esp8266 after its heartbeat",
        )
        assert found["status"] == "online"
        latest = {metric: value["value"] for metric, value in found["latest"].items()}
        assert latest == {
            "temperature": 23.4,
            "humidity": 51.2,
            "pressure": 1012.8,
            "light": 312,
            "rssi": -60,
            "voltage": 3.29,
            "uptime": 86400,
        }
        readings = serve.get("/api/devices/esp8266/readings", params={"metric": "rssi"}).json()
        assert sorted(r["value"] for r in readings) == [-61, -60]
        assert serve.get("/api/devices").json()[0]["id"] == "esp8266"
        stats = serve.get("/api/stats").json()
        assert stats["messages_stored"] == 3
        assert stats["by_type"] == {"status": 1, "sensor": 1, "heartbeat": 1}
        assert "connected (MQTT 5)" in serve.log_text()
        assert "subscribed to devices/+/+ (granted QoS 1)" in serve.log_text()


BAD_INPUTS = [
    ("devices/esp1/sensor", "not json at all", "invalid_json"),
    ("devices/esp1/sensor", "[1, 2, 3]", "invalid_type"),
    ("devices/esp1/sensor", '{"temperature": NaN}', "non_finite_number"),
    ("devices/esp1/sensor", '{"temperature": Infinity}', "non_finite_number"),
    (
        "devices/esp1/sensor",
        '{"temperature": 1.0, "pad": "' + "x" * 2000 + '"}',
        "payload_too_large",
    ),
    ("devices/bad device/sensor", '{"temperature": 1.0}', "bad_device_id"),
    ("devices/esp1/sensor", '{"device_id": "esp2", "temperature": 1.0}', "device_id_mismatch"),
    ("devices/esp1/telemetry", '{"temperature": 1.0}', "unknown_message_type"),
    ("devices/esp1/status", "rebooting", "invalid_status"),
]


def test_bad_input_lands_in_dead_letters_and_the_next_good_message_is_stored(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Every kind of bad input is one dead letter with its reason; ingestion carries on."""
    with serve_for(mosquitto.port, tmp_path / "serve", MQTTHUB_MAX_PAYLOAD="1024") as serve:
        for topic, payload, _reason in BAD_INPUTS:
            mosquitto_pub(mosquitto, topic, payload)
        mosquitto_pub(mosquitto, "devices/esp1/sensor", '{"temperature": 21.5}')
        found = wait_until(lambda: device(serve, "esp1"), what="esp1 stored")
        assert found["latest"]["temperature"]["value"] == 21.5
        letters = wait_until(
            lambda: len(rows := serve.get("/api/dead-letters").json()) == len(BAD_INPUTS) and rows,
            what="all dead letters",
        )
        assert sorted(row["reason"] for row in letters) == sorted(r for _, _, r in BAD_INPUTS)
        by_reason = {row["reason"]: row for row in letters}
        assert by_reason["invalid_json"]["payload"] == "not json at all"
        assert by_reason["payload_too_large"]["payload_size"] > 1024
        assert serve.get("/api/stats").json()["dead_letters"] == len(BAD_INPUTS)
        assert serve.health_status() == 200
        assert "dead letter on devices/esp1/sensor: invalid_json" in serve.log_text()


def test_tls_broker_with_ca_file(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> None:
    """mqtts:// with the CA that signed the broker's certificate connects and stores."""
    tls = make_tls_files(tmp_path / "tls")
    broker = mosquitto_factory(tls=tls)
    env = {
        "MQTTHUB_BROKER_URL": f"mqtts://localhost:{broker.port}",
        "MQTTHUB_CA_FILE": str(tls.ca_file),
    }
    with ServeProcess(workdir=tmp_path / "serve", env=env) as serve:
        assert "(TLS: yes, MQTT 5)" in serve.log_text()
        mosquitto_pub(broker, "devices/tls1/sensor", '{"t": 1}', cafile=tls.ca_file)
        wait_until(lambda: device(serve, "tls1"), what="tls1 stored over TLS")


def test_tls_insecure_skips_only_the_hostname_check(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """A broker reached by IP whose certificate names only a host works with TLS_INSECURE,
    while a certificate from an unknown CA is still refused."""
    tls: TlsFiles = make_tls_files(tmp_path / "tls", hostnames=("broker.example",), ips=())
    broker = mosquitto_factory(tls=tls)
    url = f"mqtts://127.0.0.1:{broker.port}"
    insecure = {"MQTTHUB_BROKER_URL": url, "MQTTHUB_CA_FILE": str(tls.ca_file)}
    with ServeProcess(
        workdir=tmp_path / "ok", env={**insecure, "MQTTHUB_TLS_INSECURE": "true"}
    ) as serve:
        assert serve.health_status() == 200
    wrong_ca = {**insecure, "MQTTHUB_CA_FILE": str(tls.other_ca_file), "MQTTHUB_TLS_INSECURE": "1"}
    with ServeProcess(workdir=tmp_path / "bad", env=wrong_ca).start(wait_healthy=False) as serve:
        health = wait_until(
            lambda: (body := serve.get("/healthz").json()).get("reason") and body,
            what="a TLS failure reason",
        )
        assert health["mqtt"] == "disconnected"
        assert health["reason"] == "tls_verification_failed"
        assert "MQTTHUB_CA_FILE" in serve.log_text()


def test_password_broker_and_masked_secrets(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """Right credentials connect; a wrong password shows as refused in /healthz, never logged."""
    broker = mosquitto_factory(users={"backend": "right-pass-123"})
    good = {"MQTTHUB_BROKER_URL": f"mqtt://backend:right-pass-123@127.0.0.1:{broker.port}"}
    with ServeProcess(workdir=tmp_path / "good", env=good) as serve:
        assert "right-pass-123" not in serve.log_text()
    legacy = {
        "MQTT_BROKER_HOST": "127.0.0.1",
        "MQTT_BROKER_PORT": str(broker.port),
        "MQTT_USERNAME": "backend",
        "MQTT_PASSWORD": "wrong-pass-456",
    }
    with ServeProcess(workdir=tmp_path / "bad", env=legacy).start(wait_healthy=False) as serve:
        health = wait_until(
            lambda: (body := serve.get("/healthz").json())["mqtt"] == "refused" and body,
            what="the refusal in /healthz",
        )
        assert health["reason"] == "not_authorized"
        log = serve.log_text()
        assert "connection refused by mqtt://backend:***@127.0.0.1" in log
        assert "wrong-pass-456" not in log


def test_embedded_broker_starts_when_nothing_listens(tmp_path: Path) -> None:
    """With no broker at the configured local address, serve runs its own (MQTT 3.1.1)."""
    port = free_port()
    env = {"MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{port}"}
    with ServeProcess(workdir=tmp_path / "serve", env=env) as serve:
        assert "started the embedded broker" in serve.log_text()
        assert serve.get("/healthz").json()["protocol"] == "MQTT 3.1.1"
        subprocess.run(
            [
                *("mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1"),
                *("-t", "devices/emb1/sensor", "-m", '{"temperature": 19.5}'),
            ],
            check=True,
            timeout=10,
        )
        found = wait_until(lambda: device(serve, "emb1"), what="emb1 via the embedded broker")
        assert found["latest"]["temperature"]["value"] == 19.5


def test_reconnects_when_the_broker_comes_up(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """A broker that is down at start is reported in /healthz and picked up once it runs."""
    port = free_port()
    env = {"MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{port}", "MQTTHUB_EMBEDDED_BROKER": "never"}
    with ServeProcess(workdir=tmp_path / "serve", env=env).start(wait_healthy=False) as serve:
        health = wait_until(
            lambda: (body := serve.get("/healthz").json()).get("reason") and body,
            what="connection_refused in /healthz",
        )
        assert health["reason"] == "connection_refused"
        mosquitto_factory(port=port)
        wait_until(lambda: serve.health_status() == 200, timeout=40, what="reconnect")


def test_api_token_protects_the_api_but_not_healthz(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """With MQTTHUB_API_TOKEN set, /api needs the bearer token; /healthz stays open."""
    token = "t0ken-for-tests-only"
    with serve_for(mosquitto.port, tmp_path / "serve", MQTTHUB_API_TOKEN=token) as serve:
        assert serve.get("/api/devices").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert serve.get("/api/devices", headers=wrong).status_code == 401
        right = {"Authorization": f"Bearer {token}"}
        assert serve.get("/api/devices", headers=right).status_code == 200
        assert serve.get("/healthz").status_code == 200
        assert token not in serve.log_text()


def test_sigterm_stops_cleanly_and_keeps_what_was_received(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """SIGTERM exits with status 0 and the data is there after a restart."""
    serve = serve_for(mosquitto.port, tmp_path / "serve").start()
    mosquitto_pub(mosquitto, "devices/keep1/sensor", '{"t": 5}')
    wait_until(lambda: device(serve, "keep1"), what="keep1 stored")
    assert serve.stop(signal.SIGTERM) == 0
    assert "stopped in" in serve.log_text()
    with serve.start():
        assert device(serve, "keep1") is not None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MQTTHUB_BROKER_URL": "http://broker:1883"}, "MQTTHUB_BROKER_URL"),
        ({"MQTTHUB_BROKER_URL": "mqtt://broker:99999"}, "MQTTHUB_BROKER_URL"),
        ({"MQTTHUB_CA_FILE": "/nonexistent/ca.crt"}, "MQTTHUB_CA_FILE"),
        ({"MQTTHUB_HTTP_PORT": "70000"}, "MQTTHUB_HTTP_PORT"),
        ({"MQTTHUB_DATABASE_URL": "mysql://db/x"}, "MQTTHUB_DATABASE_URL"),
        ({"MQTT_BROKER_PORT": "0"}, "MQTT_BROKER_PORT"),
    ],
)
def test_bad_configuration_exits_2_naming_the_variable(
    env: dict[str, str], variable: str, tmp_path: Path
) -> None:
    """A bad setting stops serve with status 2 and a message naming the variable."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
    result = subprocess.run(
        [sys.executable, "-m", "mqtthub", "serve"],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_openapi_lists_the_api(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """/docs is served and the OpenAPI document lists every API route."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        assert serve.get("/docs").status_code == 200
        paths = json.loads(serve.get("/openapi.json").text)["paths"]
        assert {
            "/healthz",
            "/api/devices",
            "/api/devices/{device_id}",
            "/api/devices/{device_id}/readings",
            "/api/stats",
            "/api/dead-letters",
        } <= set(paths)


def test_serve_stores_into_postgresql(
    mosquitto: MosquittoBroker, tmp_path: Path, postgres_url: str
) -> None:
    """With MQTTHUB_DATABASE_URL=postgresql://..., readings land in PostgreSQL."""
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with serve_for(mosquitto.port, tmp_path / "serve", MQTTHUB_DATABASE_URL=url) as serve:
        mosquitto_pub(mosquitto, "devices/pg1/sensor", ESP_SENSOR.replace("esp8266", "pg1"))
        found = wait_until(lambda: device(serve, "pg1"), what="pg1 stored in PostgreSQL")
        assert len(found["latest"]) == 7
        assert "database ready: postgresql+psycopg://postgres@127.0.0.1" in serve.log_text()


def test_unknown_devices_are_refused_when_auto_register_is_off(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """MQTTHUB_AUTO_REGISTER=false sends messages of unregistered devices to dead letters."""
    with serve_for(mosquitto.port, tmp_path / "serve", MQTTHUB_AUTO_REGISTER="false") as serve:
        mosquitto_pub(mosquitto, "devices/stranger/sensor", '{"t": 1}')
        letters = wait_until(lambda: serve.get("/api/dead-letters").json(), what="dead letter")
        assert letters[0]["reason"] == "unknown_device"
        assert device(serve, "stranger") is None
