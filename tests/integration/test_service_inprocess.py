"""``Service`` in-process through a fake transport: the real writer, SQLite and HTTP API.

The broker is the test (``support.fake_transport``): it delivers messages, and sees what
the service publishes and acknowledges. End-to-end tests with a real Mosquitto live in
test_serve.py and test_reliability.py.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtthub.config import load_settings
from mqtthub.errors import StoreError
from mqtthub.service import Service
from mqtthub.store.database import Store
from support.fake_transport import FakeTransport
from support.ports import free_port

TIMEOUT_S = 10.0


async def until(condition: Callable[[], Any], what: str) -> Any:
    """Wait on the service's own loop until ``condition()`` (awaited if need be) is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"waited {TIMEOUT_S} s for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running_service(
    tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[FakeTransport, httpx.AsyncClient, Path]]:
    """A running Service on a fake transport: (transport, HTTP client, SQLite file)."""
    database = tmp_path / "hub.db"
    port = free_port()
    made: list[FakeTransport] = []
    service = Service(
        load_settings(
            database_url=f"sqlite:///{database}",
            http_port=port,
            embedded_broker="never",
            **settings,
        ),
        transport_factory=FakeTransport.factory(made),
    )
    running = asyncio.create_task(service.run())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        await until(lambda: made, "the transport")
        await until(_answers(http), "the HTTP API")
        try:
            yield made[0], http, database
        finally:
            service.stop()
            await asyncio.wait_for(running, timeout=TIMEOUT_S)


def _answers(http: httpx.AsyncClient) -> Callable[[], Awaitable[bool]]:
    async def healthy() -> bool:
        try:
            return (await http.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    return healthy


def stored_values(database: Path, device_id: str) -> list[float]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT value FROM readings WHERE device_id = ? ORDER BY ts", (device_id,)
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture(autouse=True)
def _own_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from these tests only: no MQTTHUB_* variables or .env of the developer."""
    for name in list(os.environ):
        if name.startswith(("MQTTHUB_", "MQTT_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_a_message_is_acknowledged_only_after_it_is_committed(tmp_path: Path) -> None:
    """When the PUBACK leaves, the reading is already in the database file."""
    seen_at_ack: list[list[float]] = []

    async def scenario() -> None:
        async with running_service(tmp_path) as (transport, _http, database):
            record = transport.acknowledge

            def acknowledge(acks: Any) -> None:
                seen_at_ack.append(stored_values(database, "d1"))
                record(acks)

            transport.acknowledge = acknowledge  # type: ignore[method-assign]
            packet_id = transport.deliver("devices/d1/sensor", b'{"t": 21.5}')
            await until(lambda: packet_id in transport.acknowledged, "the PUBACK")

    run(scenario)
    assert seen_at_ack == [[21.5]]


def test_a_redelivery_is_stored_once_and_acknowledged_again(tmp_path: Path) -> None:
    """The broker redelivers a message (DUP) whose PUBACK was lost: one reading, two acks."""

    async def scenario() -> None:
        async with running_service(tmp_path) as (transport, _http, database):
            first = transport.deliver("devices/d1/sensor", b'{"t": 1.0}')
            await until(lambda: first in transport.acknowledged, "the first PUBACK")
            again = transport.deliver("devices/d1/sensor", b'{"t": 1.0}', dup=True)
            await until(lambda: again in transport.acknowledged, "the second PUBACK")
            assert stored_values(database, "d1") == [1.0]

    run(scenario)


def test_a_full_queue_pauses_reading_until_the_writer_catches_up(tmp_path: Path) -> None:
    """200 messages arrive at once with room for 20: reading pauses, nothing is dropped,
    reading resumes, and all 200 are stored and acknowledged."""

    async def scenario() -> None:
        async with running_service(tmp_path, queue_size=20) as (transport, _http, database):
            ids = [transport.deliver(f"devices/d{n % 5}/sensor", b'{"t": 1}') for n in range(200)]
            assert transport.paused
            await until(lambda: set(ids) <= set(transport.acknowledged), "every PUBACK")
            assert not transport.paused
            with sqlite3.connect(database) as db:
                assert db.execute("SELECT count(*) FROM readings").fetchone() == (200,)

    run(scenario)


def test_a_task_is_published_and_its_receipt_recorded_once(tmp_path: Path) -> None:
    """POST /api/tasks publishes the task; the app's "done" receipt completes it and is
    acknowledged; a duplicate receipt changes nothing."""

    async def scenario() -> None:
        async with running_service(tmp_path) as (transport, http, _database):
            task = await http.post("/api/tasks", json={"recipient": "61016968", "title": "t"})
            task_id = task.json()["id"]
            [published] = transport.published
            assert published.topic == f"mqtt_app/tasks/61016968/{task_id}"
            assert json.loads(published.payload)["title"] == "t"
            receipt = f"mqtt_app/tasks/61016968/{task_id}/ack"
            ids = {transport.deliver(receipt, b'{"state": "done"}') for _ in range(2)}
            await until(lambda: ids <= set(transport.acknowledged), "the receipts' PUBACKs")
            tasks = (await http.get("/api/tasks")).json()
            assert [(t["id"], t["state"]) for t in tasks] == [(task_id, "done")]

    run(scenario)


@pytest.mark.parametrize("payload", [b"[" * 100_000, b'{"a":' * 5000 + b"1" + b"}" * 5000])
def test_a_hostile_receipt_is_acknowledged_and_ingestion_goes_on(
    tmp_path: Path, payload: bytes
) -> None:
    """A receipt nested far beyond any parser's depth is a plain receipt; a device message
    after it is stored."""

    async def scenario() -> None:
        async with running_service(tmp_path) as (transport, _http, database):
            receipt = transport.deliver("mqtt_app/tasks/61016968/abc/ack", payload)
            reading = transport.deliver("devices/d1/sensor", b'{"t": 2.0}')
            await until(lambda: {receipt, reading} <= set(transport.acknowledged), "PUBACKs")
            assert stored_values(database, "d1") == [2.0]

    run(scenario)


def test_a_redelivery_in_the_same_batch_as_its_original_is_stored_once(tmp_path: Path) -> None:
    """The original (its PUBACK lost) and the broker's DUP redelivery arrive together: one
    reading, both acknowledged."""

    async def scenario() -> None:
        async with running_service(tmp_path) as (transport, _http, database):
            ids = {
                transport.deliver("devices/d1/sensor", b'{"t": 7.0}'),
                transport.deliver("devices/d1/sensor", b'{"t": 7.0}', dup=True),
            }
            await until(lambda: ids <= set(transport.acknowledged), "both PUBACKs")
            assert stored_values(database, "d1") == [7.0]

    run(scenario)


def test_a_refused_batch_is_written_one_by_one_with_presence_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses a whole batch once: every message is then written on its own,
    the device's status change is stored with its presence event, and all are acknowledged."""
    real_write = Store.write_batch
    refused: list[int] = []

    def write(store: Store, connection: Any, batch: Any) -> None:
        if len(batch.accepted) > 1 and not refused:
            refused.append(len(batch.accepted))
            raise StoreError("refused once, as a constraint might")
        real_write(store, connection, batch)

    monkeypatch.setattr(Store, "write_batch", write)

    async def scenario() -> None:
        async with running_service(tmp_path) as (transport, http, _database):
            first = transport.deliver("devices/a/status", b"offline")
            await until(lambda: first in transport.acknowledged, "the first PUBACK")
            ids = {
                transport.deliver("devices/a/status", b"online"),
                transport.deliver("devices/a/sensor", b'{"t": 3.0}'),
            }
            await until(lambda: ids <= set(transport.acknowledged), "both PUBACKs")
            device = (await http.get("/api/devices/a")).json()
            events = (await http.get("/api/devices/a/events")).json()
            assert device["status"] == "online"
            assert [e["status"] for e in events][:1] == ["online"]

    run(scenario)
    assert refused == [2]
