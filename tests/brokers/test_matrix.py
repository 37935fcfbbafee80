"""The same end-to-end suite against every broker of the matrix (issue 16).

Brokers, and what each cannot do, are declared in ``capabilities.py``; the ``broker``
fixture (conftest.py) starts one on free ports for each test. Devices publish with a raw
MQTT 3.1.1 client (``support.publisher``); serve, listen, the doctor and simulate use the
broker's ``mqtt_version`` through MQTTHUB_MQTT_VERSION.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from brokers.capabilities import FORGETS_SESSIONS
from brokers.conftest import PASSWORD, USER, Broker, StartBroker
from brokers.proxy import CuttableRelay
from mqtthub.simulation_values import device_ids
from support.doctor import doctor_checks
from support.fake_broker import varint
from support.ports import free_port
from support.publisher import publish_qos1
from support.serve import ServeProcess, device, serve_for, wait_until
from support.sessions import no_pubacks_hook

BULK = 2_000
"""QoS 1 messages of the bulk case."""

STREAM, WHILE_DOWN = 1_000, 300
"""kill -9 case: a stream serve is killed in, then messages published while it is down."""

OUTAGE = 3.0
"""Network drop case: serve stays cut off from the broker at least this long (seconds), longer
than amqtt takes to sweep away a disconnected session it does not keep (its 1 s monitor)."""


def serve_on(broker: Broker, tmp_path: Path, port: int | None = None, **env: str) -> ServeProcess:
    """serve for ``broker`` (or for a relay to it on ``port``)."""
    return serve_for(
        port or broker.port,
        tmp_path / "serve",
        MQTTHUB_MQTT_VERSION=broker.mqtt_version,
        MQTTHUB_EMBEDDED_BROKER="never",
        **env,
    )


def seq_counts(serve: ServeProcess) -> tuple[int, int]:
    """(stored seq readings, distinct seq values), read from serve's SQLite file."""
    with sqlite3.connect(serve.workdir / "data" / "mqtthub.db") as connection:
        row = connection.execute(
            "SELECT count(*), count(DISTINCT value) FROM readings WHERE metric = 'seq'"
        ).fetchone()
    return int(row[0]), int(row[1])


def seq_messages(first: int, count: int) -> list[tuple[str, bytes]]:
    """``{"seq": n}`` over 20 devices."""
    return [
        (f"devices/bulk{n % 20}/sensor", b'{"seq": %d}' % n) for n in range(first, first + count)
    ]


def doctor(broker: Broker, url: str | None = None) -> dict[str, dict[str, Any]]:
    flags = {"broker_url": url or broker.url, "mqtt_version": broker.mqtt_version}
    return doctor_checks(flags)


# ------------------------------------------------------------------------------- the cases


def test_connect_and_subscribe(broker: Broker, tmp_path: Path) -> None:
    """serve connects with the forced version and its subscription delivers."""
    with serve_on(broker, tmp_path) as serve:
        health = serve.get("/healthz").json()
        assert (health["mqtt"], health["protocol"]) == ("connected", broker.protocol), health
        publish_qos1(broker.publish_port, [("devices/probe/sensor", b'{"t": 1}')], client_id="p")
        wait_until(lambda: device(serve, "probe"), what="the probe message stored")
        assert "session_lost" not in serve.get("/healthz").json()


def test_device_message_stored(broker: Broker, tmp_path: Path) -> None:
    """A device's sensor message becomes its latest readings."""
    with serve_on(broker, tmp_path) as serve:
        payload = b'{"temperature": 21.5, "humidity": 40}'
        publish_qos1(broker.publish_port, [("devices/th1/sensor", payload)], client_id="th1")
        latest = wait_until(
            lambda: (device(serve, "th1") or {}).get("latest", {}).get("humidity"),
            what="th1's readings",
        )
        assert latest["value"] == 40
        stored = device(serve, "th1") or {}
        assert stored["latest"]["temperature"]["value"] == 21.5


def test_qos1_bulk_stored_once(broker: Broker, tmp_path: Path) -> None:
    """2,000 QoS 1 messages, published as fast as the broker takes them: each stored once."""
    with serve_on(broker, tmp_path) as serve:
        publish_qos1(broker.publish_port, seq_messages(0, BULK), client_id="bulk")
        wait_until(lambda: seq_counts(serve)[0] >= BULK, timeout=60, what="all stored")
        assert seq_counts(serve) == (BULK, BULK)


def assert_session_lost(serve: ServeProcess, broker: Broker) -> None:
    """serve is connected again and /healthz says the broker kept no session for it."""
    lost = wait_until(
        lambda: serve.get("/healthz").json().get("session_lost"), what="session_lost on /healthz"
    )
    assert "kept no session" in lost["detail"], lost
    health = serve.get("/healthz").json()
    assert (health["mqtt"], health["protocol"]) == ("connected", broker.protocol), health


def test_kill_9_and_resume(broker: Broker, tmp_path: Path) -> None:
    """kill -9 of serve during a QoS 1 stream, more published while it is down, restart:
    the broker kept the session, nothing is lost and nothing is stored twice (see
    redelivery_stored_once for the messages stored but not acknowledged when serve died)."""
    serve = serve_on(broker, tmp_path).start()
    stream = threading.Thread(
        target=publish_qos1,
        args=(broker.publish_port, seq_messages(0, STREAM)),
        kwargs={"client_id": "stream"},
    )
    stream.start()
    try:
        wait_until(lambda: seq_counts(serve)[0] > 0, timeout=30, what="the stream arriving")
        serve.stop(signal.SIGKILL)
    finally:
        stream.join(60)
    publish_qos1(broker.publish_port, seq_messages(STREAM, WHILE_DOWN), client_id="stream")
    total = STREAM + WHILE_DOWN
    assert seq_counts(serve)[1] < total
    with serve.start():
        assert "session_lost" not in serve.get("/healthz").json()
        wait_until(lambda: seq_counts(serve)[1] >= total, timeout=30, what="the rest stored")
        stored, distinct = seq_counts(serve)
    assert distinct == total
    assert stored == total


def test_network_drop_resumes_session(broker: Broker, tmp_path: Path) -> None:
    """serve's connection to the broker drops (a network outage; neither is restarted) and
    300 messages are published meanwhile; serve reconnects on its own. Where the broker kept
    serve's persistent session, every message is stored and serve reports nothing wrong;
    where it forgot the session (FORGETS_SESSIONS), the messages are lost, and serve says so:
    /healthz carries ``session_lost``."""
    total = 1 + WHILE_DOWN
    with (
        CuttableRelay(broker.port) as relay,
        serve_on(
            broker,
            tmp_path,
            port=relay.port,
            MQTTHUB_RECONNECT_BASE="0.2",
            MQTTHUB_RECONNECT_CAP="0.5",
        ) as serve,
    ):
        publish_qos1(broker.publish_port, seq_messages(0, 1), client_id="drop")
        wait_until(lambda: seq_counts(serve)[0] == 1, what="the first message stored")
        relay.cut()
        wait_until(
            lambda: serve.get("/healthz").json()["mqtt"] != "connected",
            what="serve disconnected",
        )
        publish_qos1(broker.publish_port, seq_messages(1, WHILE_DOWN), client_id="drop")
        back_after = time.monotonic() + OUTAGE
        wait_until(
            lambda: relay.refused > 0 and time.monotonic() >= back_after,
            what=f"an outage of {OUTAGE} s in which serve tried to reconnect",
        )
        relay.restore()
        if broker.name in FORGETS_SESSIONS:
            assert_session_lost(serve, broker)
            assert seq_counts(serve)[1] < total
        else:
            wait_until(lambda: seq_counts(serve)[1] >= total, timeout=30, what="all stored")
            assert "session_lost" not in serve.get("/healthz").json()
            assert seq_counts(serve) == (total, total)  # each once: none stored twice


def read_packet(sock: socket.socket) -> bytes:
    """One whole MQTT packet (fixed header included); waits up to the socket's timeout."""

    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError(f"closed after {data!r}")
            data += chunk
        return data

    header = exactly(1)
    length, shift, digits = 0, 0, b""
    while True:
        digit = exactly(1)
        digits += digit
        length |= (digit[0] & 0x7F) << shift
        shift += 7
        if not digit[0] & 0x80:
            break
    return header + digits + exactly(length)


def mqtt_string(text: str) -> bytes:
    return struct.pack("!H", len(text)) + text.encode()


def raw_connect(port: int, client_id: str, flags: int, extra: bytes = b"") -> socket.socket:
    """A raw MQTT 3.1.1 connection (CONNECT ``flags``, payload ``extra`` after the id)."""
    body = mqtt_string("MQTT") + bytes([4, flags]) + struct.pack("!H", 60)
    body += mqtt_string(client_id) + extra
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(bytes([0x10]) + varint(len(body)) + body)
    connack = read_packet(sock)
    assert connack[:1] == b"\x20", connack
    assert connack[3:4] == b"\x00", connack
    return sock


REDELIVERED = 10
"""QoS 1 messages serve stores but does not acknowledge before it is killed (fewer than any
broker's in-flight window: Mosquitto's is 20 for MQTT 3.1.1)."""


def test_redelivery_stored_once(broker: Broker, tmp_path: Path) -> None:
    """Messages stored but not acknowledged when serve is killed are re-sent by the broker
    on the resumed session (Mosquitto with DUP; rumqttd and Aedes without): serve recognises
    them by packet id and content (mqtt_sessions) and stores each once, also when an app's
    status (not a device message) is re-sent among them."""
    serve = serve_on(broker, tmp_path, PYTHONPATH=no_pubacks_hook(tmp_path)).start()
    half = REDELIVERED // 2
    # An app's status among them: acknowledged by the downlink, not recorded with the device
    # messages; re-sent with them, it must not end the check.
    status = ("mqtt_app/status/someone", b"online")
    messages = [*seq_messages(0, half), status, *seq_messages(half, REDELIVERED - half)]
    publish_qos1(broker.publish_port, messages, client_id="redeliver")
    wait_until(lambda: seq_counts(serve)[0] >= REDELIVERED, what="the messages stored")
    serve.stop(signal.SIGKILL)  # stored, never acknowledged: the broker keeps them in flight
    del serve.env["PYTHONPATH"]
    with serve.start():
        # Brokers re-send a resumed session's unacknowledged messages before new ones.
        publish_qos1(broker.publish_port, [("devices/after/sensor", b'{"n": 1}')], client_id="a")
        wait_until(lambda: device(serve, "after"), what="the message published after restart")
        assert seq_counts(serve) == (REDELIVERED, REDELIVERED), serve.log_text()
        assert f"acknowledged {REDELIVERED} message(s) the broker re-sent" in serve.log_text()


def raw_connect_with_will(port: int, device_id: str) -> socket.socket:
    """A MQTT 3.1.1 device with the will ``offline`` (QoS 1) on devices/ID/status, online."""
    topic = f"devices/{device_id}/status"
    will = mqtt_string(topic) + mqtt_string("offline")
    sock = raw_connect(port, device_id, flags=0x0E, extra=will)
    publish = mqtt_string(topic) + b"online"
    sock.sendall(bytes([0x30]) + varint(len(publish)) + publish)
    return sock


def test_last_will_turns_device_offline(broker: Broker, tmp_path: Path) -> None:
    """A device whose connection drops without DISCONNECT goes offline by its last will."""
    with serve_on(broker, tmp_path, MQTTHUB_HEARTBEAT_TIMEOUT="600") as serve:
        sock = raw_connect_with_will(broker.publish_port, "will1")
        wait_until(lambda: (device(serve, "will1") or {}).get("status") == "online", what="online")
        sock.close()  # no DISCONNECT: the broker publishes the will
        gone = wait_until(
            lambda: (d := device(serve, "will1") or {}).get("status") == "offline" and d,
            timeout=15,
            what="offline by the will",
        )
        assert gone["status_reason"] == "last_will", gone


def test_doctor_healthy(broker: Broker) -> None:
    checks = doctor(broker)
    for check_id in ("tcp", "mqtt_connect", "subscribe"):
        assert checks[check_id]["status"] == "pass", checks[check_id]
    assert f"MQTT {broker.mqtt_version}: connected" in checks["mqtt_connect"]["detail"]


def test_doctor_wrong_password(start_broker: StartBroker) -> None:
    """A broker with one user, the doctor with a wrong password: a credentials cause."""
    broker = start_broker(auth=True)
    right = doctor(broker, f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{broker.port}")
    assert right["mqtt_connect"]["status"] == "pass", right["mqtt_connect"]
    checks = doctor(broker, f"mqtt://{USER}:wrong@127.0.0.1:{broker.port}")
    check = checks["mqtt_connect"]
    assert check["status"] == "fail", check
    assert check["cause"] in ("not_authorized", "bad_credentials"), check


def test_doctor_closed_port(broker: Broker) -> None:
    """Nothing on the port (the broker runs on another): connection_refused."""
    checks = doctor(broker, f"mqtt://127.0.0.1:{free_port()}")
    assert (checks["tcp"]["status"], checks["tcp"]["cause"]) == ("fail", "connection_refused")


def test_task_delivered_to_listen(broker: Broker, tmp_path: Path) -> None:
    """A task posted to serve shows up in `mqtthub listen` and becomes delivered."""
    recipient = "61016968"
    output = tmp_path / "listen.out"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
    env = {**clean, "MQTTHUB_BROKER_URL": broker.url, "MQTTHUB_MQTT_VERSION": broker.mqtt_version}
    with serve_on(broker, tmp_path) as serve, output.open("ab") as sink:
        listener = subprocess.Popen(
            [
                *(sys.executable, "-m", "mqtthub", "listen", "--recipient", recipient),
                *("--state-dir", str(tmp_path / "state")),
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: "connected" in output.read_text(), what="listen connected")
            assert f"({broker.protocol})" in output.read_text(), output.read_text()
            task = serve.http.post(
                "/api/tasks", json={"recipient": recipient, "title": "Inspect pump 3"}
            ).json()
            wait_until(lambda: "Inspect pump 3" in output.read_text(), what="the task shown")

            def state() -> str:
                tasks = serve.get("/api/tasks", params={"recipient": recipient}).json()
                return str(next(t["state"] for t in tasks if t["id"] == task["id"]))

            wait_until(lambda: state() == "delivered", what="the task delivered")
        finally:
            listener.terminate()
            listener.wait(15)


def test_simulate_devices_stored(broker: Broker, tmp_path: Path) -> None:
    """`mqtthub simulate` (3 devices, the broker's version): their readings are stored and
    they leave offline."""
    ids = device_ids(3, "sim")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
    with serve_on(broker, tmp_path, MQTTHUB_HEARTBEAT_TIMEOUT="600") as serve:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "mqtthub", "simulate", "--broker-url", broker.url),
                *("--mqtt-version", broker.mqtt_version, "--devices", "3", "--duration", "2"),
                *("--sensor-interval", "0.5", "--heartbeat-interval", "1"),
            ],
            env=clean,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "connects 3," in done.stderr, done.stderr
        for device_id in ids:
            wait_until(
                lambda d=device_id: "temperature" in (device(serve, d) or {}).get("latest", {}),
                what=f"{device_id}'s temperature",
            )
        wait_until(
            lambda: all((device(serve, d) or {}).get("status") == "offline" for d in ids),
            timeout=15,
            what="every simulated device offline",
        )


SLOW_COMMITS = """\
# Test hook (tests/brokers/test_matrix.py): every batch takes 1.5 s more to commit.
import time

import mqtthub.ingest.writer as writer

_write = writer.BatchWriter._write


def _slow_write(self, messages):
    time.sleep(1.5)
    return _write(self, messages)


writer.BatchWriter._write = _slow_write
"""

QUEUED = 60
"""QoS 1 messages of the reconnect-faster-than-the-queue case."""


def test_reconnect_faster_than_the_queue(broker: Broker, tmp_path: Path) -> None:
    """serve's connection drops while QoS 1 messages of it still wait in serve's queue (a
    slow database) and serve reconnects before they are committed: the broker re-sends them
    on the resumed session (rumqttd and Aedes without DUP); serve holds the new connection's
    messages until the older ones are committed, then recognises the re-sent copies, and
    stores each message once."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_COMMITS)
    with (
        CuttableRelay(broker.port) as relay,
        serve_on(
            broker,
            tmp_path,
            port=relay.port,
            PYTHONPATH=str(hook),
            MQTTHUB_RECONNECT_BASE="0.1",
            MQTTHUB_RECONNECT_CAP="0.2",
        ) as serve,
    ):
        publish_qos1(broker.publish_port, seq_messages(0, QUEUED), client_id="queue")
        # Received, not yet committed (the first batch is slow; Mosquitto sends serve 20 at
        # a time on MQTT 3.1.1): they wait in serve's queue when the connection drops.
        wait_until(
            lambda: serve.get("/api/stats").json()["messages_received"] >= 20,
            what="messages waiting in serve's queue",
        )
        assert seq_counts(serve)[0] < 20
        relay.cut()
        wait_until(
            lambda: serve.get("/healthz").json()["mqtt"] != "connected",
            what="serve disconnected",
        )
        relay.restore()
        wait_until(
            lambda: serve.get("/healthz").json()["mqtt"] == "connected",
            what="serve connected again",
        )
        if broker.name in FORGETS_SESSIONS:
            return  # no session to resume: nothing is re-sent
        wait_until(lambda: seq_counts(serve)[1] >= QUEUED, timeout=30, what="all stored")
        publish_qos1(broker.publish_port, [("devices/after/sensor", b'{"n": 1}')], client_id="a")
        wait_until(lambda: device(serve, "after"), what="the message published after")
        assert seq_counts(serve) == (QUEUED, QUEUED), serve.log_text()
        assert "message(s) the broker re-sent on resuming the session" in serve.log_text()
        assert "going on without waiting" not in serve.log_text()
