"""Reliability promises against real brokers: nothing lost, nothing doubled, presence right."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from support.fake_broker import FakeBroker
from support.mosquitto import MosquittoBroker, MosquittoFactory, mosquitto_pub
from support.serve import ServeProcess, device, serve_for, wait_until

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


def stored(serve: ServeProcess) -> int:
    return int(serve.get("/api/stats").json()["messages_stored"])


def test_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """kill -9 during a 20,000-message QoS 1 stream, restart: every message stored once."""
    broker = mosquitto_factory(extra=UNLIMITED_QUEUE)
    serve = serve_for(broker.port, tmp_path / "serve").start()
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
    with serve_for(broker.port, tmp_path / "serve") as serve:
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
    with serve_for(mosquitto.port, tmp_path / "serve", **env) as serve:
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
    with serve_for(mosquitto.port, tmp_path / "serve", **env) as serve:
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


def offline(serve: ServeProcess, device_id: str) -> dict[str, Any] | None:
    found = device(serve, device_id)
    return found if found and found["status"] == "offline" else None


def test_device_killed_goes_offline_by_its_last_will(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A device with a last will dies: offline (last_will) within keepalive x 1.5 + 1 s."""
    keepalive = 5  # the smallest mosquitto_sub accepts
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        device_process = subprocess.Popen(
            [
                *("mosquitto_sub", "-h", mosquitto.host, "-p", str(mosquitto.port)),
                *("-i", "esp-will", "-k", str(keepalive), "-t", "devices/will1/command"),
                *("--will-topic", "devices/will1/status", "--will-payload", "offline"),
                *("--will-qos", "1"),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            mosquitto_pub(mosquitto, "devices/will1/status", "online")
            wait_until(
                lambda: (d := device(serve, "will1")) and d["status"] == "online", what="online"
            )
            wait_until(lambda: "esp-will" in mosquitto.log_text(), what="the device connected")
            watcher = subprocess.Popen(
                [
                    *("mosquitto_sub", "-h", mosquitto.host, "-p", str(mosquitto.port)),
                    *("-i", "will-watcher", "-t", "devices/will1/status", "-C", "1", "-F", "%U"),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            wait_until(lambda: "will-watcher 0 devices/will1" in mosquitto.log_text(), what="sub")
            device_process.send_signal(signal.SIGSTOP)  # hangs like a crashed ESP: no FIN
            frozen_at = time.time()
            found = wait_until(lambda: offline(serve, "will1"), timeout=30, what="offline")
            seen_at = time.time()
            will_published_at = float(watcher.communicate(timeout=10)[0])
        finally:
            device_process.kill()
            device_process.wait()
        assert found["status_reason"] == "last_will"
        # mqtthub's part, tight: offline as soon as the will arrives, visible in the API
        # within a commit and a poll. The broker's part (Mosquitto 2.0.11 checks keepalives
        # late: up to ~2 x keepalive, later still on a loaded machine) gets generous slack.
        assert seen_at - will_published_at <= 2.0
        assert will_published_at - frozen_at <= keepalive * 4 + 5
        events = serve.get("/api/devices/will1/events").json()
        assert [(e["status"], e["reason"]) for e in events[:2]] == [
            ("offline", "last_will"),
            ("online", "status_message"),
        ]


def test_device_that_stops_heartbeating_times_out(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Heartbeats every second, then silence: offline (heartbeat_timeout) within 3 s + 1 s."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        for _ in range(4):
            mosquitto_pub(mosquitto, "devices/hb1/heartbeat", "")
            time.sleep(1.0)  # the device's heartbeat period, not a wait for a result
        last_beat = time.monotonic() - 1.0
        found = wait_until(lambda: offline(serve, "hb1"), timeout=15, what="heartbeat timeout")
        elapsed = time.monotonic() - last_beat
        assert found["status_reason"] == "heartbeat_timeout"
        assert found["heartbeat_interval"] is not None
        deadline = found["heartbeat_interval"] * 3
        assert deadline - 0.5 <= elapsed <= deadline + 1.0
        listed = serve.get("/api/devices", params={"status": "offline"}).json()
        assert [d["id"] for d in listed] == ["hb1"]
        assert "device hb1 is offline (heartbeat_timeout)" in serve.log_text()


def test_retained_stale_offline_does_not_mark_an_active_device_offline(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A retained old 'offline' replayed on (re)subscribe leaves an active device online."""
    mosquitto_pub(mosquitto, "devices/ret1/status", "offline", retain=True)
    serve = serve_for(mosquitto.port, tmp_path / "serve")
    with serve:
        mosquitto_pub(mosquitto, "devices/ret1/status", '{"status": "online"}')
        mosquitto_pub(mosquitto, "devices/ret1/sensor", '{"temperature": 20}')
        wait_until(lambda: (d := device(serve, "ret1")) and d["latest"], what="ret1 active")
    received_before = 0
    with serve.start():
        # The broker replays the retained offline on subscribe; wait until it was handled.
        wait_until(
            lambda: serve.get("/api/stats").json()["messages_received"] > received_before,
            what="the retained message",
        )
        wait_until(lambda: serve.get("/api/stats").json()["queue_depth"] == 0, what="handled")
        found = device(serve, "ret1")
        assert found is not None
        assert found["status"] == "online"


def test_sigterm_during_a_stream_flushes_and_exits_0_within_10_s(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """SIGTERM mid-stream: exit 0 within 10 s; what it stored is committed and acknowledged."""
    broker = mosquitto_factory(extra=UNLIMITED_QUEUE)
    serve = serve_for(broker.port, tmp_path / "serve").start()
    publish_stream(broker, "devices/stream3/sensor", 0, 5000)
    wait_until(lambda: stored(serve) > 0, what="the stream arriving")
    started = time.monotonic()
    assert serve.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    database = tmp_path / "serve" / "data" / "mqtthub.db"
    with serve.start():
        wait_until(lambda: seq_counts(database)[0] >= 5000, timeout=60, what="all 5000 stored")
        assert seq_counts(database) == (5000, 5000)


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def test_database_outage_of_10_s_loses_nothing_and_memory_stays_bounded(
    mosquitto_factory: MosquittoFactory,
    tmp_path: Path,
    postgres_database: tuple[Any, str, str],
) -> None:
    """PostgreSQL refuses connections for 10 s mid-stream: /healthz says so, memory stays
    bounded (the queue is full, the broker holds the rest), and afterwards every message
    is stored exactly once."""
    admin, name, url = postgres_database
    broker = mosquitto_factory(extra=UNLIMITED_QUEUE)
    env = {"MQTTHUB_DATABASE_URL": url, "MQTTHUB_QUEUE_SIZE": "500"}
    with serve_for(broker.port, tmp_path / "serve", **env) as serve:
        assert serve.process is not None
        publish_stream(broker, "devices/pg-out/sensor", 0, 2000)
        wait_until(lambda: stored(serve) >= 2000, timeout=60, what="the first 2000")
        baseline_rss = rss_mb(serve.process.pid)
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        outage_started = time.monotonic()
        publish_stream(broker, "devices/pg-out/sensor", 2000, 20_000)
        health = wait_until(
            lambda: (r := serve.get("/healthz")).status_code == 503 and r.json(),
            what="db unavailable in /healthz",
        )
        assert health["db"] == "unavailable"
        reading = serve.get("/api/devices")
        assert reading.status_code == 503
        assert reading.json()["detail"].startswith("database unavailable: ")
        peak_rss = baseline_rss
        while time.monotonic() - outage_started < 10:  # the outage lasts 10 s
            peak_rss = max(peak_rss, rss_mb(serve.process.pid))
            assert serve.get("/api/stats").json()["queue_depth"] <= 500
            time.sleep(0.5)
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        wait_until(lambda: stored(serve) >= 22_000, timeout=120, what="all 22,000 stored")
        assert serve.health_status() == 200
        with psycopg.connect(url.replace("+psycopg", "")) as connection:
            counts = connection.execute(
                "SELECT count(*), count(DISTINCT value) FROM readings WHERE metric = 'seq'"
            ).fetchone()
        assert counts == (22_000, 22_000)
        assert peak_rss - baseline_rss < 50, (baseline_rss, peak_rss)
        log = serve.log_text()
        assert log.count("database unavailable:") == 1
        assert "database available again" in log
