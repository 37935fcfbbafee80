"""Several workers share the device stream through a real Mosquitto, on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg

from support.mosquitto import MosquittoBroker, MosquittoFactory, mosquitto_pub
from support.publisher import publish_qos1
from support.serve import ServeProcess, wait_until
from support.sse import EventStream

UNLIMITED_QUEUE = "max_queued_messages 0\n"


def workers_serve(broker: MosquittoBroker, url: str, workdir: Path, **env: str) -> ServeProcess:
    return ServeProcess(
        workdir=workdir,
        env={
            "MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{broker.port}",
            "MQTTHUB_DATABASE_URL": url,
            **env,
        },
    )


def workers(serve: ServeProcess) -> list[dict[str, Any]]:
    return list(serve.get("/api/stats").json()["workers"])


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as connection:
        return connection.execute(sql).fetchall()  # type: ignore[arg-type]


def test_three_workers_store_every_message_once_through_a_kill_9(
    mosquitto_factory: MosquittoFactory,
    postgres_database: tuple[Any, str, str],
    tmp_path: Path,
) -> None:
    """3 workers, 30,000 QoS 1 messages over 100 devices, one worker killed with SIGKILL
    mid-stream and restarted: every message stored exactly once, each device's status and
    latest values are what its last message says."""
    broker = mosquitto_factory(extra=UNLIMITED_QUEUE)
    _admin, _name, url = postgres_database
    serve = workers_serve(broker, url, tmp_path / "serve", MQTTHUB_WORKERS="3").start()
    try:
        wait_until(lambda: len(workers(serve)) == 3, timeout=30, what="3 workers reporting")
        devices, per_device = 100, 300
        base = time.time() - 3600

        stream = [
            (
                f"devices/s{n % devices}/sensor",
                orjson.dumps({"ts": base + n // devices * 0.01, "seq": n, "v": n // devices}),
            )
            for n in range(devices * per_device)
        ]
        publisher = threading.Thread(
            target=publish_qos1, args=(broker.port, stream), kwargs={"client_id": "stream"}
        )
        publisher.start()
        samples = lambda: query(url, "SELECT count(*) FROM samples")[0][0]  # noqa: E731
        wait_until(lambda: samples() > 5000, timeout=60, what="part of the stream stored")
        victim = next(w for w in workers(serve) if w["id"].endswith("-w1"))
        os.kill(victim["pid"], signal.SIGKILL)
        publisher.join(120)
        assert not publisher.is_alive()
        assert samples() < devices * per_device, "the kill came too late to test anything"
        wait_until(
            lambda: samples() >= devices * per_device,
            timeout=120,
            what="the whole stream stored",
        )
        # The killed worker came back under its own client id and collected its share.
        wait_until(
            lambda: any(
                w["id"] == victim["id"] and w["pid"] != victim["pid"] for w in workers(serve)
            ),
            timeout=30,
            what="the killed worker restarted",
        )
        assert samples() == devices * per_device
        seqs = query(url, "SELECT count(DISTINCT (metrics::jsonb ->> 'seq')) FROM samples")
        assert seqs[0][0] == devices * per_device
        # The last message of each device decides its status and latest values.
        statuses = [
            (f"devices/s{d}/status", "online" if d % 2 else "offline") for d in range(devices)
        ]
        publish_qos1(
            broker.port,
            (
                (topic, json.dumps({"status": state, "ts": time.time()}).encode())
                for topic, state in statuses
            ),
            client_id="statuses",
        )
        expected = {f"s{d}": "online" if d % 2 else "offline" for d in range(devices)}

        def statuses_now() -> dict[str, str]:
            return dict(query(url, "SELECT id, status FROM devices"))  # type: ignore[arg-type]

        wait_until(lambda: statuses_now() == expected, timeout=30, what="final statuses")
        latest = query(url, "SELECT device_id, value, ts FROM latest_readings WHERE metric = 'v'")
        assert len(latest) == devices
        assert {value for _d, value, _ts in latest} == {per_device - 1}
        stats = serve.get("/api/stats").json()
        assert stats["messages_stored"] >= devices * per_device - 5000  # the dead one's count
    finally:
        serve.stop()


def test_status_follows_the_timestamps_when_workers_see_it_out_of_order(
    mosquitto_factory: MosquittoFactory,
    postgres_database: tuple[Any, str, str],
    tmp_path: Path,
) -> None:
    """Two workers; each device's newer status is published first, the older one second,
    so the broker hands them to different workers: the final status follows the ``ts``."""
    broker = mosquitto_factory()
    _admin, _name, url = postgres_database
    serve = workers_serve(broker, url, tmp_path / "serve", MQTTHUB_WORKERS="2").start()
    try:
        wait_until(lambda: len(workers(serve)) == 2, timeout=30, what="2 workers reporting")
        now = time.time()
        messages = []
        for d in range(40):
            newer, older = ("offline", "online") if d % 2 else ("online", "offline")
            topic = f"devices/o{d}/status"
            messages.append((topic, json.dumps({"status": newer, "ts": now + 1}).encode()))
            messages.append((topic, json.dumps({"status": older, "ts": now}).encode()))
        publish_qos1(broker.port, messages, client_id="presence")
        expected = {f"o{d}": "offline" if d % 2 else "online" for d in range(40)}
        stored = lambda: dict(query(url, "SELECT id, status FROM devices"))  # noqa: E731
        wait_until(lambda: len(stored()) == 40, timeout=30, what="40 devices")
        wait_until(
            lambda: sum(w["by_type"].get("status", 0) for w in workers(serve)) == 80,
            timeout=30,
            what="both workers' counts",
        )
        assert stored() == expected
        # Both workers took a share (the broker splits the group's messages).
        assert all(w["by_type"].get("status", 0) > 0 for w in workers(serve))
    finally:
        serve.stop()


def test_sqlite_with_several_workers_is_refused(tmp_path: Path) -> None:
    serve = ServeProcess(workdir=tmp_path, env={"MQTTHUB_WORKERS": "2"})
    result = subprocess.run(
        [sys.executable, "-m", "mqtthub", "serve"],
        env=serve.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "MQTTHUB_WORKERS=2" in result.stderr
    assert "postgresql://" in result.stderr


def test_downlink_once_when_the_leader_dies(
    mosquitto_factory: MosquittoFactory,
    postgres_database: tuple[Any, str, str],
    tmp_path: Path,
) -> None:
    """Two instances in one share group; the leader is killed: a new one leads within
    10 s, a task posted meanwhile reaches the app exactly once, its receipt and a command's
    reply are recorded once."""
    broker = mosquitto_factory()
    _admin, _name, url = postgres_database
    group = {"MQTTHUB_SHARE_GROUP": "fleet"}
    first = workers_serve(broker, url, tmp_path / "a", **group).start()
    wait_until(lambda: "this worker leads" in first.log_text(), timeout=15, what="a leader")
    second = workers_serve(broker, url, tmp_path / "b", **group).start()
    try:
        app = subprocess.Popen(
            [
                *("mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-i", "app1"),
                *("-q", "1", "-t", "mqtt_app/tasks/61016968/+", "-v"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        wait_until(
            lambda: "mqtt_app/tasks/61016968/+" in broker.log_text(),
            timeout=10,
            what="the app subscribed",
        )
        killed_at = time.monotonic()
        first.stop(signal.SIGKILL)
        wait_until(lambda: "this worker leads" in second.log_text(), timeout=15, what="new leader")
        assert time.monotonic() - killed_at <= 10
        response = second.http.post(
            "/api/tasks", json={"recipient": "61016968", "title": "t", "body": "b"}
        )
        assert response.status_code == 201, response.text
        task_id = response.json()["id"]
        mosquitto_pub(broker, f"mqtt_app/tasks/61016968/{task_id}/ack", "{}")

        def task_state() -> str:
            tasks = second.get("/api/tasks", params={"recipient": "61016968"}).json()
            return str(next(t["state"] for t in tasks if t["id"] == task_id))

        wait_until(lambda: task_state() == "delivered", timeout=15, what="receipt recorded")
        # A command's reply, and the same reply's redelivery, are recorded once.
        response = second.http.post("/api/devices/c1/commands", json={"command": "reboot"})
        assert response.status_code == 201, response.text
        command_id = response.json()["id"]
        for body in ("first", "redelivered"):
            mosquitto_pub(broker, f"devices/c1/command/{command_id}/reply", body)

        def command() -> dict[str, Any]:
            return dict(second.get("/api/devices/c1/commands").json()[0])

        wait_until(lambda: command()["state"] == "replied", timeout=15, what="reply recorded")
        assert command()["reply"] == "first"
        app.terminate()
        lines = [line for line in app.communicate(timeout=10)[0].splitlines() if task_id in line]
        assert len(lines) == 1
    finally:
        second.stop()


def test_heartbeat_deadlines_expire_once_across_workers(
    mosquitto_factory: MosquittoFactory,
    postgres_database: tuple[Any, str, str],
    tmp_path: Path,
) -> None:
    """Two workers; 20 devices fall silent: each goes offline by heartbeat timeout exactly
    once, decided by the leader from the stored last activity."""
    broker = mosquitto_factory()
    _admin, _name, url = postgres_database
    serve = workers_serve(
        broker, url, tmp_path / "serve", MQTTHUB_WORKERS="2", MQTTHUB_HEARTBEAT_TIMEOUT="2"
    ).start()
    try:
        wait_until(lambda: len(workers(serve)) == 2, timeout=30, what="2 workers reporting")
        publish_qos1(
            broker.port,
            [(f"devices/h{d}/heartbeat", b'{"uptime": 1}') for d in range(20)] * 3,
            client_id="beats",
        )

        def timeouts() -> list[tuple[Any, ...]]:
            return query(
                url,
                "SELECT device_id, count(*) FROM presence_events"
                " WHERE reason = 'heartbeat_timeout' GROUP BY device_id",
            )

        wait_until(lambda: len(timeouts()) == 20, timeout=20, what="20 timeouts")
        offline = query(url, "SELECT count(*) FROM devices WHERE status = 'offline'")
        assert offline[0][0] == 20
        # One more round of both workers' counters later, still one timeout per device.
        refreshed = dict(query(url, "SELECT id, updated_at FROM workers"))
        wait_until(
            lambda: all(
                at > refreshed[worker_id]
                for worker_id, at in query(url, "SELECT id, updated_at FROM workers")
            ),
            timeout=10,
            what="the workers' next refresh",
        )
        assert {count for _device, count in timeouts()} == {1}
    finally:
        serve.stop()


def test_the_dashboard_stream_shows_devices_every_worker_handled(
    mosquitto_factory: MosquittoFactory,
    postgres_database: tuple[Any, str, str],
    tmp_path: Path,
) -> None:
    """Worker 0's /api/stream carries device events for all devices, including those whose
    messages another worker handled, and the stats event counts every worker."""
    broker = mosquitto_factory()
    _admin, _name, url = postgres_database
    serve = workers_serve(broker, url, tmp_path / "serve", MQTTHUB_WORKERS="2").start()
    try:
        wait_until(lambda: len(workers(serve)) == 2, timeout=30, what="2 workers reporting")

        def all_seen(stream: EventStream) -> bool:
            stats = stream.of("stats")
            devices = {device["id"] for device in stream.of("device")}
            return len(devices) == 20 and bool(stats) and stats[-1]["messages_stored"] == 20

        with EventStream(serve.base_url, until=all_seen, timeout=30) as stream:
            publish_qos1(
                broker.port,
                [(f"devices/live{d}/sensor", b'{"v": 1}') for d in range(20)],
                client_id="live",
            )
        assert {device["id"] for device in stream.of("device")} == {f"live{d}" for d in range(20)}
        assert stream.of("stats")[-1]["messages_stored"] == 20
        handled = [w["by_type"].get("sensor", 0) for w in workers(serve)]
        assert sum(handled) == 20
        assert min(handled) > 0
    finally:
        serve.stop()
