"""Reliability promises against real brokers: nothing lost, nothing doubled, presence right."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from support.fake_broker import FakeBroker
from support.mosquitto import MosquittoBroker, MosquittoFactory
from support.serve import ServeProcess, wait_until

UNLIMITED_QUEUE = "max_queued_messages 0\n"


def publish_stream(broker: MosquittoBroker, topic: str, first: int, count: int) -> None:
    """Publish ``{"seq": n}`` for n in [first, first+count) at QoS 1; returns when all are acked."""
    lines = "".join(f'{{"seq": {n}}}\n' for n in range(first, first + count))
    subprocess.run(
        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-l", "-t", topic],
        input=lines,
        text=True,
        check=True,
        timeout=120,
    )


def seq_counts(database: Path) -> tuple[int, int]:
    """(stored seq readings, distinct seq values) read straight from the SQLite file."""
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT count(*), count(DISTINCT value) FROM readings WHERE metric = 'seq'"
        ).fetchone()
    return int(row[0]), int(row[1])


def serve_for(broker: MosquittoBroker, workdir: Path, **env: str) -> ServeProcess:
    return ServeProcess(
        workdir=workdir, env={"MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{broker.port}", **env}
    )


def stored(serve: ServeProcess) -> int:
    return int(serve.get("/api/stats").json()["messages_stored"])


def test_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """kill -9 during a 20,000-message QoS 1 stream, restart: every message stored once."""
    broker = mosquitto_factory(extra=UNLIMITED_QUEUE)
    serve = serve_for(broker, tmp_path / "serve").start()
    total = 20_000
    stream = subprocess.Popen(
        [
            *("mosquitto_pub", "-h", broker.host, "-p", str(broker.port)),
            *("-q", "1", "-l", "-t", "devices/stream1/sensor"),
        ],
        stdin=subprocess.PIPE,
        text=True,
    )
    assert stream.stdin is not None
    stream.stdin.write("".join(f'{{"seq": {n}}}\n' for n in range(total)))
    stream.stdin.close()
    wait_until(lambda: stored(serve) > 3000, timeout=60, what="a good part of the stream stored")
    serve.stop(signal.SIGKILL)
    assert stream.wait(120) == 0
    database = tmp_path / "serve" / "data" / "mqtthub.db"
    before_restart = seq_counts(database)[0]
    assert before_restart < total, "the kill came too late to test anything"
    with serve.start():
        wait_until(
            lambda: seq_counts(database)[0] >= total, timeout=90, what="the whole stream stored"
        )
        assert seq_counts(database) == (total, total)
        assert "connected (MQTT 5)" in serve.log_text()


def test_broker_restart_mid_stream_loses_nothing(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """The broker restarts (with persistence) mid-stream: serve reconnects, nothing is lost."""
    broker = mosquitto_factory(persistence=True, extra=UNLIMITED_QUEUE)
    with serve_for(broker, tmp_path / "serve") as serve:
        publish_stream(broker, "devices/stream2/sensor", 0, 10_000)
        broker.restart()
        wait_until(lambda: serve.health_status() == 200, timeout=70, what="serve reconnected")
        publish_stream(broker, "devices/stream2/sensor", 10_000, 10_000)
        database = tmp_path / "serve" / "data" / "mqtthub.db"
        wait_until(lambda: seq_counts(database)[0] >= 20_000, timeout=90, what="all stored")
        assert seq_counts(database) == (20_000, 20_000)
        events = serve.get("/api/connection").json()["events"]
        assert [e["event"] for e in events].count("connected") >= 2


def test_client_id_conflict_on_mqtt5_mosquitto(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """Two MQTT 5 clients with one client id on Mosquitto: the kick loop is detected.

    Mosquitto 2.0 closes the socket without DISCONNECT 0x8E, so the drop pattern is what
    gives it away, exactly as on 3.1.1.
    """
    env = {"MQTTHUB_CLIENT_ID": "shared-id-5"}
    with serve_for(mosquitto, tmp_path / "serve", **env) as serve:
        connection = run_intruders(serve, mosquitto, "shared-id-5", "mqttv5")
        assert connection["diagnosis"]["reason"] == "probable_client_id_conflict"
        assert {e["protocol"] for e in connection["diagnosis"]["evidence"]} == {"MQTT 5"}
        assert "shared-id-5" in connection["diagnosis"]["message"]


def test_client_id_conflict_with_disconnect_0x8e(tmp_path: Path) -> None:
    """A broker that sends DISCONNECT 0x8E (as EMQX does) gets client_id_conflict at once.

    Uses the FAKE broker: Mosquitto 2.0.11 never sends 0x8E.
    """
    with FakeBroker(behaviour="takeover") as fake:
        env = {
            "MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{fake.port}",
            "MQTTHUB_CLIENT_ID": "desk-app-1",
        }
        serve = ServeProcess(workdir=tmp_path / "serve", env=env).start(wait_healthy=False)
        with serve:
            connection = wait_until(
                lambda: (c := serve.get("/api/connection").json())["diagnosis"] and c,
                what="the 0x8E diagnosis",
            )
            assert connection["diagnosis"]["reason"] == "client_id_conflict"
            assert connection["diagnosis"]["message"].startswith(
                "another client connected with client id desk-app-1"
            )
            event = connection["diagnosis"]["evidence"][0]
            assert (event["reason_code"], event["protocol"]) == (0x8E, "MQTT 5")
            assert serve.log_text().count("client_id_conflict: another client") == 1


def test_server_redirect_is_followed(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """CONNACK 0x9C with a server reference sends mqtthub to the named broker.

    Uses the FAKE broker for the redirect (Mosquitto never redirects) and a real
    Mosquitto as the target.
    """
    target = f"127.0.0.1:{mosquitto.port}"
    with FakeBroker(behaviour="redirect", server_reference=target) as fake:
        env = {"MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{fake.port}"}
        with ServeProcess(workdir=tmp_path / "serve", env=env) as serve:
            assert f"broker redirects us to {target}" in serve.log_text()
            assert serve.get("/healthz").json()["broker"] == f"mqtt://{target}"


def run_intruders(
    serve: ServeProcess, broker: MosquittoBroker, client_id: str, protocol: str
) -> dict[str, Any]:
    """Keep starting a short-lived client with ``client_id`` until mqtthub diagnoses it."""
    intruders: list[subprocess.Popen[bytes]] = []

    def diagnosed() -> dict[str, Any] | None:
        # A desktop app sharing our id keeps reconnecting, like the field reports.
        if len(intruders) < 12 and all(p.poll() is not None for p in intruders):
            intruders.append(
                subprocess.Popen(
                    [
                        *("mosquitto_sub", "-h", broker.host, "-p", str(broker.port)),
                        *("-V", protocol, "-i", client_id, "-t", "x", "-W", "1"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        connection: dict[str, Any] = serve.get("/api/connection").json()
        return connection if connection["diagnosis"] else None

    try:
        result: dict[str, Any] = wait_until(diagnosed, timeout=90, interval=0.2, what="diagnosis")
    finally:
        for process in intruders:
            process.kill()
            process.wait()
    return result


def test_client_id_conflict_is_detected_on_mqtt311(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """On MQTT 3.1.1 the broker just closes the socket; the drop pattern gives it away."""
    env = {"MQTTHUB_CLIENT_ID": "shared-id-3", "MQTTHUB_MQTT_VERSION": "3.1.1"}
    with serve_for(mosquitto, tmp_path / "serve", **env) as serve:
        connection = run_intruders(serve, mosquitto, "shared-id-3", "mqttv311")
        assert connection["diagnosis"]["reason"] == "probable_client_id_conflict"
        assert {e["protocol"] for e in connection["diagnosis"]["evidence"]} == {"MQTT 3.1.1"}
        assert len(connection["diagnosis"]["evidence"]) == 3
        assert serve.log_text().count("probable_client_id_conflict:") == 1


def test_wrong_password_is_not_retried_in_a_tight_loop(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """A wrong password: at most 5 attempts in the first minute, and /healthz says why."""
    broker = mosquitto_factory(users={"backend": "the-right-one"})
    env = {"MQTTHUB_BROKER_URL": f"mqtt://backend:not-it@127.0.0.1:{broker.port}"}
    serve = ServeProcess(workdir=tmp_path / "serve", env=env).start(wait_healthy=False)
    with serve:
        started = time.monotonic()
        health = wait_until(
            lambda: (body := serve.get("/healthz").json())["mqtt"] == "refused" and body,
            what="refused in /healthz",
        )
        assert health["reason"] == "not_authorized"
        # Watch the first minute as a user would: count the attempts in the log.
        wait_until(lambda: time.monotonic() - started >= 60, timeout=70, interval=1)
        attempts = len(re.findall(r"connecting to 127\.0\.0\.1", serve.log_text()))
        assert 1 <= attempts <= 5
        assert serve.get("/healthz").json()["reason"] == "not_authorized"
