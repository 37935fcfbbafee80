"""POST /api/commands: one command to every device a label selector matches.

End to end against a real Mosquitto with devices listening through mosquitto_sub, on SQLite
and PostgreSQL; the device limit and the refusals in-process.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from mqtthub.store.schema import devices
from mqtthub.web.downlink import MAX_BATCH_DEVICES
from support.inprocess import InProcessApi, in_process_api, simple_runtime
from support.mosquitto import MosquittoBroker, mosquitto_pub
from support.serve import ServeProcess, device, serve_for, wait_until

LABELS = {
    "pump-1": {"site": "north", "kind": "pump"},
    "pump-2": {"site": "north", "kind": "pump"},
    "valve-1": {"site": "north", "kind": "valve"},
    "pump-9": {"site": "south", "kind": "pump"},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def serve(
    request: pytest.FixtureRequest, mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[ServeProcess]:
    """A running serve on the broker, with SQLite or PostgreSQL, and the labelled devices."""
    env = {}
    if request.param == "postgresql":
        _admin, _name, url = request.getfixturevalue("postgres_database")
        env["MQTTHUB_DATABASE_URL"] = url
    with serve_for(mosquitto.port, tmp_path / "serve", **env) as running:
        for device_id, labels in LABELS.items():
            mosquitto_pub(mosquitto, f"devices/{device_id}/sensor", '{"t": 1}')
            wait_until(lambda d=device_id: device(running, d), what=device_id)
            patched = running.http.patch(f"/api/devices/{device_id}", json={"labels": labels})
            assert patched.status_code == 200, patched.text
        yield running


def listen(broker: MosquittoBroker, topic: str, *, count: int, seconds: int) -> Any:
    """A device's mosquitto_sub on ``topic`` (-v: topic and payload per line)."""
    return subprocess.Popen(
        [
            *("mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-v"),
            *("-t", topic, "-C", str(count), "-W", str(seconds)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_command_reaches_every_matching_device_and_no_other(
    serve: ServeProcess, mosquitto: MosquittoBroker
) -> None:
    """Each device the selector matches receives its own command id on its command topic;
    a device outside the selector receives nothing; each command completes on its own."""
    everyone = listen(mosquitto, "devices/+/command", count=4, seconds=6)
    wait_until(lambda: "devices/+/command" in mosquitto.log_text(), what="devices listening")
    body = {"labels": {"site": "north"}, "command": "reboot", "params": {"delay": 5}}
    answer = serve.http.post("/api/commands", json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["matched"], result["sent"], result["failed"]) == (3, 3, 0)
    ids = {r["device_id"]: r["command_id"] for r in result["results"]}
    assert sorted(ids) == ["pump-1", "pump-2", "valve-1"]
    assert all(r["state"] == "sent" and r["error"] is None for r in result["results"])
    assert len(set(ids.values())) == 3
    lines = everyone.communicate(timeout=15)[0].splitlines()  # 3 arrive, then -W ends it
    received = {}
    for line in lines:
        topic, _, payload = line.partition(" ")
        received[topic.split("/")[1]] = json.loads(payload)
    assert received == {
        d: {"command_id": ids[d], "command": "reboot", "params": {"delay": 5}} for d in ids
    }
    mosquitto_pub(mosquitto, f"devices/pump-2/command/{ids['pump-2']}/reply", '{"ok": true}')

    def state_of(device_id: str) -> str:
        listed = serve.get(f"/api/devices/{device_id}/commands").json()
        return str(next(c["state"] for c in listed if c["id"] == ids[device_id]))

    wait_until(lambda: state_of("pump-2") == "replied", what="pump-2's reply")
    assert state_of("pump-1") == "sent"
    assert serve.get("/api/devices/pump-9/commands").json() == []


def test_selector_with_several_labels_dry_run_and_no_match(serve: ServeProcess) -> None:
    """All of the selector's labels must match; dry_run lists the devices and sends
    nothing; a selector that matches nothing says so."""
    body: dict[str, Any] = {"labels": {"site": "north", "kind": "pump"}, "command": "ping"}
    dry = serve.http.post("/api/commands", json={**body, "dry_run": True}).json()
    assert [r["device_id"] for r in dry["results"]] == ["pump-1", "pump-2"]
    assert (dry["matched"], dry["sent"], dry["dry_run"]) == (2, 0, True)
    assert all(r["command_id"] is None for r in dry["results"])
    assert serve.get("/api/devices/pump-1/commands").json() == []
    none = serve.http.post("/api/commands", json={**body, "labels": {"site": "west"}}).json()
    assert (none["matched"], none["results"]) == (0, [])


@pytest.fixture
def api(tmp_path: Path) -> Iterator[InProcessApi]:
    """The API in-process with a downlink that must not be used (refusals come first)."""
    runtime = simple_runtime()
    runtime.downlink = object()
    with in_process_api(tmp_path, runtime=runtime) as client:
        yield client


@pytest.mark.parametrize(
    "body",
    [
        {"command": "reboot"},
        {"command": "reboot", "labels": {}},
        {"command": "reboot", "labels": {"": "x"}},
        {"command": "reboot", "labels": {"site": "a\nb"}},
        {"command": "bad command", "labels": {"site": "north"}},
        {"command": "reboot", "labels": {"site": "north"}, "timeout": 0},
        {"command": "reboot", "labels": {"site": "north"}, "colour": "red"},
    ],
)
def test_bad_batches_are_422(api: InProcessApi, body: dict[str, Any]) -> None:
    """No selector, an empty one (it would address the whole fleet) or a bad command: 422."""
    answer = api.request("POST", "/api/commands", json=body)
    assert answer.status_code == 422, answer.text


def test_more_devices_than_the_limit_is_refused_and_nothing_sent(api: InProcessApi) -> None:
    """A selector matching more than 1,000 devices is a 422 that names the count and the
    limit; nothing is sent (the stand-in downlink would fail if it were used)."""
    labels = json.dumps({"fleet": "big"})
    rows = [
        {
            "id": f"dev-{n:05d}",
            "status": "offline",
            "first_seen": 0.0,
            "last_seen": 0.0,
            "last_message_type": "none",
            "status_changed_at": 0.0,
            "labels": labels,
        }
        for n in range(MAX_BATCH_DEVICES + 1)
    ]
    with api.store.engine.begin() as connection:
        connection.execute(insert(devices), rows)
    body = {"command": "reboot", "labels": {"fleet": "big"}}
    answer = api.request("POST", "/api/commands", json=body)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "1001 devices" in detail
    assert "at most 1000" in detail
    with api.store.engine.begin() as connection:
        connection.execute(devices.delete().where(devices.c.id == "dev-00000"))
    dry = api.request("POST", "/api/commands", json={**body, "dry_run": True}).json()
    assert dry["matched"] == MAX_BATCH_DEVICES
