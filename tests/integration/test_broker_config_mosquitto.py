"""Provisioning refusals and `mqtthub broker-config`, proven on a real Mosquitto.

The confinement test runs Mosquitto with exactly what `broker-config mosquitto` writes
(`passwd`, `acl` and the `mqtthub.conf` lines, whose devices' listener binds each client id
to its username), plus a second listener for the backend, as the generated file advises.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mqtthub.broker_config import hash_password
from mqtthub.cli import main
from mqtthub.store import downlink as registry
from mqtthub.store.database import Store
from support.mosquitto import MosquittoBroker, MosquittoFactory
from support.ports import free_port
from support.serve import ServeProcess, device, serve_for, wait_until

BACKEND = {"username": "backend", "password": "backend-pass-1"}
TIMEOUT = 60  # seconds a Mosquitto client may wait in all: generous for a busy 2-core machine


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without MQTT settings, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MQTT")}, **extra}


def broker_config(
    kind: str, out: Path, *, database: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `mqtthub broker-config KIND --out OUT` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "mqtthub", "broker-config", kind, "--out", str(out)],
        env=clean_env(MQTTHUB_DATABASE_URL=database, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def backend_url(port: int) -> str:
    """The backend's broker URL with its credentials."""
    return f"mqtt://{BACKEND['username']}:{BACKEND['password']}@127.0.0.1:{port}"


def register_directly(database: str, *device_ids: str) -> None:
    """Put provisioned devices in the registry without the API (as before its checks)."""
    store = Store.open(database)
    try:
        for device_id in device_ids:
            row = {
                "id": device_id,
                "name": None,
                "status": "offline",
                "first_seen": 0.0,
                "last_seen": 0.0,
                "last_message_type": "none",
                "status_changed_at": 0.0,
                "status_reason": None,
                "broker_endpoint": "mqtt://127.0.0.1:1883",
                "mqtt_password_hash": hash_password(f"{device_id}-password"),
            }
            assert registry.provision(store.engine, row)
    finally:
        store.close()


def test_provisioning_refuses_ids_that_would_break_the_broker_files(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """The backend's own username, 'mqtthub', ids with ':' and '.'/'..' get a 422 that says
    why, and nothing is registered; an ordinary id still gets credentials."""
    broker = mosquitto_factory(users={BACKEND["username"]: BACKEND["password"]})
    with serve_for(
        broker.port, tmp_path / "serve", MQTTHUB_BROKER_URL=backend_url(broker.port)
    ) as serve:
        refused = {
            "backend": "reserved",
            "mqtthub": "reserved",
            "a:b": "password file",
            ".": "path segment",
            "..": "path segment",
        }
        for device_id, why in refused.items():
            response = serve.http.post("/api/devices", json={"id": device_id})
            assert response.status_code == 422, (device_id, response.text)
            assert why in response.json()["detail"], response.text
        for device_id in ("backend", "mqtthub", "a:b"):
            assert device(serve, device_id) is None
        assert serve.http.post("/api/devices", json={"id": "dev-ok"}).status_code == 201


@pytest.mark.parametrize("kind", ["mosquitto", "emqx"])
def test_broker_config_refuses_a_registry_that_would_lock_the_backend_out(
    kind: str, tmp_path: Path
) -> None:
    """A registry holding a device named like the backend (or an id with ':') from before
    provisioning refused them: broker-config exits 1, names each problem, writes nothing."""
    database = f"sqlite:///{tmp_path / 'registry.db'}"
    register_directly(database, "dev-a", "backend", "old:id")
    out = tmp_path / "broker"
    result = broker_config(kind, out, database=database, MQTTHUB_BROKER_URL=backend_url(1883))
    assert result.returncode == 1, result
    assert "nothing written" in result.stderr
    assert "device 'backend' has the backend's MQTT username" in result.stderr
    assert "user 'old:id' contains ':'" in result.stderr
    assert not out.exists()


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common umask, under which a plainly created file is readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("umask_022")
def test_passwd_and_acl_are_never_readable_by_others_while_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At every file operation while broker-config writes, every passwd/acl file in the
    folder (including temporary ones) is already 0600: the hashes are never exposed."""
    database = f"sqlite:///{tmp_path / 'registry.db'}"
    register_directly(database, "dev-a")
    out = tmp_path / "broker"
    for name in list(os.environ):
        if name.startswith("MQTT"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    modes: list[tuple[str, str, int]] = []
    watching = [True]
    busy = [False]

    def audit(event: str, _args: Any) -> None:
        """After each audited step, note the mode of every secret-bearing file in ``out``."""
        if not watching[0] or busy[0] or not out.is_dir():
            return
        busy[0] = True  # listing the folder raises audit events of its own
        try:
            for entry in os.scandir(out):
                if "passwd" in entry.name or "acl" in entry.name:
                    mode = stat.S_IMODE(entry.stat().st_mode)
                    modes.append((event, entry.name, mode))
        finally:
            busy[0] = False

    sys.addaudithook(audit)  # hooks cannot be removed; `watching` turns this one off
    try:
        result = CliRunner().invoke(
            main,
            ["broker-config", "mosquitto", "--out", str(out)],
            env={"MQTTHUB_DATABASE_URL": database, "MQTTHUB_BROKER_URL": backend_url(1883)},
        )
    finally:
        watching[0] = False
    assert result.exit_code == 0, result.output
    assert {name for _event, name, _mode in modes} >= {"passwd", "acl"}
    exposed = [seen for seen in modes if seen[2] != 0o600]
    assert exposed == [], exposed
    assert stat.S_IMODE((out / "passwd").stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["acl", "mqtthub.conf", "passwd"]


class Client:
    """Mosquitto's command-line clients connecting to one listener as one user."""

    def __init__(self, port: int, username: str, password: str) -> None:
        """Connect as ``username`` to ``127.0.0.1:port``."""
        self.args = ["-h", "127.0.0.1", "-p", str(port), "-u", username, "-P", password]

    def publish(self, topic: str, payload: str, *, client_id: str | None = None) -> str:
        """Publish at QoS 1 with MQTT 5; return the tool's stderr (a denial is reported)."""
        extra = ["-i", client_id] if client_id else []
        result = subprocess.run(
            [
                *("mosquitto_pub", *self.args, *extra, "-V", "mqttv5", "-q", "1"),
                *("-t", topic, "-m", payload),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
        return result.stderr

    def subscribe(self, *topics: str, count: int, client_id: str) -> subprocess.Popen[str]:
        """Start a subscriber that prints ``count`` messages as 'topic payload' and exits."""
        filters = [arg for topic in topics for arg in ("-t", topic)]
        return subprocess.Popen(
            [
                *("mosquitto_sub", *self.args, "-i", client_id, "-q", "1", *filters, "-v"),
                *("-C", str(count), "-W", str(TIMEOUT)),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )


def received(process: subprocess.Popen[str]) -> list[str]:
    """What a subscriber started by :meth:`Client.subscribe` printed, once it exited."""
    output = process.communicate(timeout=TIMEOUT + 10)[0]
    return output.splitlines()


def provision_two_devices(
    broker: MosquittoBroker, workdir: Path, device_port: int
) -> tuple[dict[str, Any], str]:
    """Provision dev-a and dev-b through the API; return their credentials and the database."""
    device_url = f"mqtt://127.0.0.1:{device_port}"
    with serve_for(broker.port, workdir, MQTTHUB_DEVICE_BROKER_URL=device_url) as serve:
        creds = {name: provision(serve, name) for name in ("dev-a", "dev-b")}
    assert creds["dev-a"]["broker_url"] == device_url
    return creds, f"sqlite:///{workdir / 'data' / 'mqtthub.db'}"


def provision(serve: ServeProcess, device_id: str) -> dict[str, Any]:
    """``POST /api/devices`` for ``device_id``; its credentials."""
    response = serve.http.post("/api/devices", json={"id": device_id})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_generated_config_confines_devices_on_real_mosquitto(
    mosquitto_factory: MosquittoFactory, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """With the generated passwd, acl and listener lines on a real Mosquitto: device A cannot
    disconnect B by using B's client id, cannot publish to its own command topic or any of
    B's topics, cannot read B's commands, and can still publish status, sensor, heartbeat
    and a command reply, which the backend user receives."""
    device_port = free_port()
    creds, database = provision_two_devices(mosquitto, tmp_path / "serve", device_port)
    out = tmp_path / "broker-config"
    result = broker_config(
        "mosquitto",
        out,
        database=database,
        MQTTHUB_BROKER_URL=backend_url(1883),
        MQTTHUB_DEVICE_BROKER_URL=f"mqtt://127.0.0.1:{device_port}",
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((out / "passwd").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "acl").stat().st_mode) == 0o600
    # The generated lines open the devices' listener; the test support adds the backend's.
    broker = mosquitto_factory(extra=(out / "mqtthub.conf").read_text())
    log = broker.log_text
    a = Client(device_port, "dev-a", creds["dev-a"]["password"])
    b = Client(device_port, "dev-b", creds["dev-b"]["password"])
    backend = Client(broker.port, BACKEND["username"], BACKEND["password"])

    def backend_sends(device_id: str, payload: str) -> None:
        assert backend.publish(f"devices/{device_id}/command", payload) == ""

    watcher = backend.subscribe("devices/#", count=7, client_id="backend-watch")
    wait_until(
        lambda: "backend-watch 1 devices/#" in log(), what="the backend subscribed", timeout=TIMEOUT
    )
    b_inbox = b.subscribe("devices/dev-b/command", count=2, client_id="dev-b")
    wait_until(
        lambda: "dev-b 1 devices/dev-b/command" in log(), what="dev-b subscribed", timeout=TIMEOUT
    )

    # A reads: it may subscribe to anything, but only its own commands reach it.
    a_inbox = a.subscribe("devices/#", count=1, client_id="dev-a")
    wait_until(lambda: "dev-a 1 devices/#" in log(), what="dev-a subscribed", timeout=TIMEOUT)
    backend_sends("dev-b", "for-b-1")
    backend_sends("dev-a", "for-a-1")
    assert received(a_inbox) == ["devices/dev-a/command for-a-1"]

    # A writes, one connection at a time (its client id is always dev-a).
    allowed = [
        ("devices/dev-a/status", "online"),
        ("devices/dev-a/sensor", '{"t": 21.5}'),
        ("devices/dev-a/heartbeat", "{}"),
        ("devices/dev-a/command/c1/reply", '{"ok": true}'),
    ]
    denied = [
        ("devices/dev-a/command", "fake-command"),
        ("devices/dev-b/status", "offline"),
        ("devices/dev-b/sensor", '{"t": -40}'),
        ("devices/dev-b/command", "reboot"),
        ("devices/dev-b/command/c2/reply", '{"ok": false}'),
        ("devices/dev-a/config", "{}"),
    ]
    for topic, payload in denied:
        assert "Not authorized" in a.publish(topic, payload), topic
    for topic, payload in allowed:
        assert a.publish(topic, payload, client_id="dev-b") == "", topic  # B's id, on purpose
    backend_sends("dev-b", "for-b-2")

    assert received(b_inbox) == [
        "devices/dev-b/command for-b-1",
        "devices/dev-b/command for-b-2",
    ]
    assert "already connected, closing old connection" not in log()
    assert "as dev-a (p5, c1, k60, u'dev-a')" in log()  # asked for dev-b, got its own id
    assert received(watcher) == [
        "devices/dev-b/command for-b-1",
        "devices/dev-a/command for-a-1",
        *(f"{topic} {payload}" for topic, payload in allowed),
        "devices/dev-b/command for-b-2",
    ]
