"""Tasks to people, commands to devices, provisioning and broker ACLs, on real Mosquitto."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mqtthub.broker_config import hash_password
from support.mosquitto import MosquittoBroker, MosquittoFactory, mosquitto_pub
from support.publisher import publish_qos1
from support.serve import ServeProcess, serve_for, wait_until

RECIPIENT = "61016968"


class Listener:
    """`mqtthub listen` as a real process, with its output."""

    def __init__(self, broker_port: int, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.output = workdir / "listen.out"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "mqtthub", "listen", "--recipient", RECIPIENT),
                *("--state-dir", str(workdir / "state")),
            ],
            env={**clean, "MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{broker_port}"},
            stdout=self.output.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: "connected to" in self.text(), what=f"listener connected: {self.text()}")

    def text(self) -> str:
        return self.output.read_text() if self.output.exists() else ""

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(15)


def task_state(serve: ServeProcess, task_id: str) -> str:
    tasks = serve.get("/api/tasks", params={"recipient": RECIPIENT}).json()
    return next(t["state"] for t in tasks if t["id"] == task_id)


def post_task(serve: ServeProcess, title: str, **extra: Any) -> dict[str, Any]:
    response = serve.http.post(
        "/api/tasks", json={"recipient": RECIPIENT, "title": title, "body": "check it", **extra}
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def test_task_reaches_a_running_listener_and_shows_delivered(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A task posted through the API shows up in `mqtthub listen` and becomes delivered."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        listener = Listener(mosquitto.port, tmp_path / "listen")
        try:
            posted_at = time.monotonic()
            task = post_task(serve, "Inspect pump 3")
            wait_until(lambda: "Inspect pump 3" in listener.text(), what="the task shown")
            shown_after = time.monotonic() - posted_at
            wait_until(lambda: task_state(serve, task["id"]) == "delivered", what="delivered")
        finally:
            listener.stop()
        assert shown_after < 3.0  # the issue asks for 1 s; measured and reported
        assert f"task {task['id']}: Inspect pump 3" in listener.text()
        assert "mqtthub-listen-61016968-" in listener.text()


def test_task_posted_while_the_listener_is_down_is_shown_once(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Missed tasks are re-sent when the app comes online, and shown once across restarts."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        task = post_task(serve, "Missed while away")
        assert task["state"] == "queued"
        for _ in range(2):
            listener = Listener(mosquitto.port, tmp_path / "listen")
            try:
                wait_until(lambda: task_state(serve, task["id"]) == "delivered", what="delivered")
            finally:
                listener.stop()
        assert listener.text().count("Missed while away") == 1


def test_two_listeners_for_one_recipient_do_not_kick_each_other(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Two copies of the app run side by side: unique client ids, both get the task."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        first = Listener(mosquitto.port, tmp_path / "one")
        second = Listener(mosquitto.port, tmp_path / "two")
        try:
            post_task(serve, "For both copies")
            for listener in (first, second):
                wait_until(lambda lst=listener: "For both copies" in lst.text(), what="shown")
        finally:
            first.stop()
            second.stop()
        assert "disconnected" not in first.text() + second.text()


def task_of(serve: ServeProcess, task_id: str) -> dict[str, Any]:
    tasks = serve.get("/api/tasks", params={"recipient": RECIPIENT}).json()
    return next(t for t in tasks if t["id"] == task_id)


def send_receipts(mosquitto: MosquittoBroker, *receipts: tuple[str, str]) -> None:
    """Publish ``(task id, state)`` receipts in this order from one client, as the app does;
    returns once the broker acknowledged them all."""
    publish_qos1(
        mosquitto.port,
        [
            (f"mqtt_app/tasks/{RECIPIENT}/{task_id}/ack", json.dumps({"state": state}).encode())
            for task_id, state in receipts
        ],
        client_id="inbox-test",
    )


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_receipts_move_a_task_to_seen_and_done_and_never_back(
    mosquitto: MosquittoBroker, tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    """The inbox's receipts: seen (from delivered), a late delivered changes nothing, done;
    seen_at is shown and filtered on. A second task's receipt, sent after a receipt that
    must change nothing, marks when serve has handled it (one client's messages reach serve
    in order and its receipts are stored in that order)."""
    env = {}
    if database == "postgresql":
        env["MQTTHUB_DATABASE_URL"] = request.getfixturevalue("postgres_database")[2]
    with serve_for(mosquitto.port, tmp_path / "serve", **env) as serve:
        task = post_task(serve, "Seen, then done")
        marker = post_task(serve, "Marker")
        assert task["seen_at"] is None
        send_receipts(mosquitto, (task["id"], "delivered"), (task["id"], "seen"))
        wait_until(lambda: task_state(serve, task["id"]) == "seen", what="seen")
        seen = task_of(serve, task["id"])
        assert seen["delivered_at"] is not None
        assert seen["delivered_at"] <= seen["seen_at"]
        assert seen["done_at"] is None
        listed = serve.get("/api/tasks", params={"state": "seen"}).json()
        assert [t["id"] for t in listed] == [task["id"]]

        send_receipts(mosquitto, (task["id"], "delivered"), (marker["id"], "delivered"))
        wait_until(lambda: task_state(serve, marker["id"]) == "delivered", what="the marker")
        assert task_of(serve, task["id"]) == seen  # the late delivered changed nothing

        send_receipts(mosquitto, (task["id"], "done"))
        wait_until(lambda: task_state(serve, task["id"]) == "done", what="done")
        done = task_of(serve, task["id"])
        assert (done["delivered_at"], done["seen_at"]) == (seen["delivered_at"], seen["seen_at"])
        assert done["seen_at"] <= done["done_at"]

        send_receipts(mosquitto, (task["id"], "seen"), (marker["id"], "seen"))
        wait_until(lambda: task_state(serve, marker["id"]) == "seen", what="the marker seen")
        assert task_of(serve, task["id"]) == done  # a late seen after done changes nothing
        assert serve.get("/api/dead-letters").json() == []
        schemas = serve.get("/openapi.json").json()["components"]["schemas"]
        assert "seen_at" in schemas["TaskOut"]["properties"]
        assert "seen" in schemas["TaskState"]["enum"]


def test_expired_tasks_are_marked_expired(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """A task nobody receives before expires_in is marked expired."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        task = post_task(serve, "Soon stale", expires_in=1)
        wait_until(lambda: task_state(serve, task["id"]) == "expired", timeout=10, what="expired")
        assert serve.get("/api/tasks", params={"state": "expired"}).json()[0]["id"] == task["id"]


def test_command_round_trip_with_a_device(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """A command reaches the device, its reply completes it; an unanswered one times out."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        device = subprocess.Popen(
            [
                *("mosquitto_sub", "-h", "127.0.0.1", "-p", str(mosquitto.port)),
                *("-t", "devices/pump3/command", "-C", "1", "-q", "1"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: "devices/pump3/command" in mosquitto.log_text(), what="device ready")
        sent = serve.http.post(
            "/api/devices/pump3/commands", json={"command": "reboot", "params": {"delay": 5}}
        ).json()
        received = json.loads(device.communicate(timeout=10)[0])
        assert received == {"command_id": sent["id"], "command": "reboot", "params": {"delay": 5}}
        mosquitto_pub(mosquitto, f"devices/pump3/command/{sent['id']}/reply", '{"ok": true}')

        def state_of(command_id: str) -> str:
            listed = serve.get("/api/devices/pump3/commands").json()
            return next(c["state"] for c in listed if c["id"] == command_id)

        wait_until(lambda: state_of(sent["id"]) == "replied", what="the reply")
        assert serve.get("/api/devices/pump3/commands").json()[0]["reply"] == '{"ok": true}'
        lost = serve.http.post(
            "/api/devices/pump3/commands", json={"command": "ping", "timeout": 1}
        ).json()
        wait_until(lambda: state_of(lost["id"]) == "timeout", timeout=10, what="the timeout")
        assert serve.get("/api/dead-letters").json() == []  # its own command echo is ignored


def test_provisioned_devices_are_confined_by_the_generated_acl(
    mosquitto_factory: MosquittoFactory, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Provision two devices, generate Mosquitto's password file and ACL, and prove that a
    device can neither publish as another device nor read another device's commands."""
    backend = {"user": "backend", "password": "backend-pass-1"}
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        creds = {}
        for device_id in ("dev-a", "dev-b"):
            response = serve.http.post("/api/devices", json={"id": device_id})
            assert response.status_code == 201
            creds[device_id] = response.json()
        assert serve.http.post("/api/devices", json={"id": "dev-a"}).status_code == 409
        assert creds["dev-a"]["broker_url"] == f"mqtt://127.0.0.1:{mosquitto.port}"
    out = tmp_path / "broker"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
    database = f"sqlite:///{tmp_path / 'serve' / 'data' / 'mqtthub.db'}"
    url = f"mqtt://{backend['user']}:{backend['password']}@127.0.0.1:1883"
    subprocess.run(
        [sys.executable, "-m", "mqtthub", "broker-config", "mosquitto", "--out", str(out)],
        env={**clean, "MQTTHUB_DATABASE_URL": database, "MQTTHUB_BROKER_URL": url},
        check=True,
        timeout=60,
    )
    assert "dev-a:$7$101$" in (out / "passwd").read_text()
    assert creds["dev-a"]["password"] not in (out / "passwd").read_text()
    secured = mosquitto_factory(
        extra=f"password_file {out / 'passwd'}\nacl_file {out / 'acl'}\nallow_anonymous false\n"
    )
    a = {"username": "dev-a", "password": creds["dev-a"]["password"]}
    admin = {"username": backend["user"], "password": backend["password"]}

    def backend_hears(topic: str, publish: Any) -> list[str]:
        watcher = f"watch-{time.monotonic_ns()}"
        listener = subprocess.Popen(
            [
                *("mosquitto_sub", "-h", "127.0.0.1", "-p", str(secured.port)),
                *("-u", admin["username"], "-P", admin["password"], "-t", "devices/#"),
                *("-C", "1", "-W", "3", "-F", "%t %p", "-i", watcher),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: f"{watcher} 0 devices/#" in secured.log_text(), what="subscribed")
        publish()
        return listener.communicate(timeout=10)[0].split("\n")[:1]

    own = backend_hears(
        "devices/dev-a/sensor",
        lambda: mosquitto_pub(secured, "devices/dev-a/sensor", '{"t": 1}', **a),
    )
    assert own == ['devices/dev-a/sensor {"t": 1}']
    spoofed = backend_hears(
        "devices/dev-b/sensor",
        lambda: mosquitto_pub(secured, "devices/dev-b/sensor", '{"t": 2}', **a),
    )
    assert spoofed == [""]  # Mosquitto drops it silently on MQTT 3.1.1
    theirs = subprocess.Popen(
        [
            *("mosquitto_sub", "-h", "127.0.0.1", "-p", str(secured.port), "-u", "dev-a"),
            *("-P", a["password"], "-t", "devices/dev-b/command", "-t", "devices/dev-a/command"),
            *("-C", "1", "-W", "5", "-F", "%t %p", "-i", "dev-a-reader"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_until(
        lambda: "dev-a-reader 0 devices/dev-a/command" in secured.log_text(), what="subscribed"
    )
    mosquitto_pub(secured, "devices/dev-b/command", "for-b", **admin)
    mosquitto_pub(secured, "devices/dev-a/command", "for-a", **admin)
    assert theirs.communicate(timeout=10)[0].strip() == "devices/dev-a/command for-a"


def test_emqx_acl_is_generated(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """broker-config emqx writes EMQX's file-based ACL for the same rules."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        assert serve.http.post("/api/devices", json={"id": "dev-e"}).status_code == 201
    out = tmp_path / "emqx"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
    database = f"sqlite:///{tmp_path / 'serve' / 'data' / 'mqtthub.db'}"
    subprocess.run(
        [sys.executable, "-m", "mqtthub", "broker-config", "emqx", "--out", str(out)],
        env={**clean, "MQTTHUB_DATABASE_URL": database},
        check=True,
        timeout=60,
    )
    acl = (out / "acl.conf").read_text()
    who = '{\'and\', [{user, "dev-e"}, {clientid, "dev-e"}]}'
    assert f'{{allow, {who}, subscribe, ["devices/dev-e/command"]}}.' in acl
    assert "zones.devices.mqtt.use_username_as_clientid = true" in (out / "emqx.conf").read_text()
    assert acl.rstrip().endswith("{deny, all}.")
    assert hash_password("x", salt=b"0" * 12).startswith("$7$101$")
