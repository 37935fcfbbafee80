"""Redeliveries without DUP and sessions lost across a restart (issue 16), on real brokers,
real ``serve`` processes and both databases.

The broker matrix (tests/brokers, ``redelivery_stored_once``) runs the kill -9 case on every
broker with SQLite; here: the table on SQLite and PostgreSQL, several workers on PostgreSQL,
and ``session_lost`` on the first connection after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mqtthub.ingest.redelivery import decode, encode, fingerprint
from mqtthub.pipeline import RawMessage
from mqtthub.store.database import Store
from mqtthub.store.sessions import load_session, record_connected, record_unacked
from support.mosquitto import MosquittoFactory
from support.publisher import publish_qos1
from support.serve import ServeProcess, device, serve_for, wait_until
from support.sessions import assert_session_report, no_pubacks_hook

UNLIMITED_QUEUE = "max_queued_messages 0\n"


def test_sessions_table_on_both_databases(store: Store) -> None:
    """One row per client id: the window written in a transaction, the last connection
    written on its own; neither overwrites the other."""
    pairs = [(1, fingerprint("devices/a/sensor", b"1")), (2, 2**64 - 1)]
    assert store.read(load_session, "serve-1") is None  # a fresh install
    with store.transaction() as connection:
        record_unacked(connection, "serve-1", encode(pairs), 100.0)
    record_connected(store.engine, "serve-1", 200.0)
    with store.transaction() as connection:
        record_unacked(connection, "serve-1", encode(pairs[:1]), 300.0)
    record_connected(store.engine, "serve-2", 400.0)
    first = store.read(load_session, "serve-1")
    assert first is not None
    assert decode(first.unacked) == pairs[:1]
    assert first.connected_at == 200.0
    second = store.read(load_session, "serve-2")
    assert second is not None
    assert (second.unacked, second.connected_at) == (None, 400.0)


def test_writer_records_the_window_in_the_batch_transaction(store: Store) -> None:
    """A writer with a session id records its batches' QoS 1 messages; the next writer of
    that client id starts from them (what a restart after kill -9 reads)."""
    from mqtthub.ingest.writer import BatchWriter
    from mqtthub.presence import PresenceEngine
    from mqtthub.stats import Stats

    async def run() -> list[tuple[int, int]]:
        queue: asyncio.Queue[RawMessage] = asyncio.Queue()
        acked: list[Any] = []
        all_acked = asyncio.Event()

        def acknowledge(acks: list[Any]) -> None:
            acked.extend(acks)
            if len(acked) >= 4:
                all_acked.set()

        def writer() -> BatchWriter:
            return BatchWriter(
                store=store,
                queue=queue,
                stats=Stats(),
                presence=PresenceEngine(),
                prefix="devices",
                max_payload=65536,
                auto_register=True,
                batch_size=100,
                redelivery_window=3600.0,
                acknowledge=acknowledge,
                session_id="serve-w",
            )

        first = writer()
        await first.load()
        assert first.previous_session is None
        now = time.time()
        for n in range(1, 6):  # packet ids 1-5; 3 is QoS 0, which needs no PUBACK
            qos, ack = (0, None) if n == 3 else (1, n)
            queue.put_nowait(RawMessage("devices/a/sensor", b'{"n": %d}' % n, qos, False, now, ack))
        first_task = asyncio.ensure_future(first.run())
        async with asyncio.timeout(10):
            await all_acked.wait()
        first.stop()
        await first_task
        first.close()
        second = writer()
        await second.load()
        second.close()
        assert second.previous_session is not None
        return second.unacked.pairs()

    pairs = asyncio.run(run())
    assert pairs == [(n, fingerprint("devices/a/sensor", b'{"n": %d}' % n)) for n in (1, 2, 4, 5)]


def test_two_workers_on_postgresql_store_redeliveries_once(
    mosquitto_factory: MosquittoFactory, postgres_database: tuple[Any, str, str], tmp_path: Path
) -> None:
    """Two workers (a client id each, a shared subscription) store 16 messages without ts but
    acknowledge none; every process is killed with SIGKILL; after the restart Mosquitto
    re-sends each worker's messages to that worker: each is stored once."""
    broker = mosquitto_factory(extra=UNLIMITED_QUEUE)
    _admin, _name, url = postgres_database
    serve = ServeProcess(
        workdir=tmp_path / "serve",
        env={
            "MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{broker.port}",
            "MQTTHUB_DATABASE_URL": url,
            "MQTTHUB_WORKERS": "2",
            "MQTTHUB_MQTT_VERSION": "3.1.1",  # 20 in flight a client: 16 fit
        },
    )
    serve.env["PYTHONPATH"] = no_pubacks_hook(tmp_path)
    count = 16

    def seqs() -> tuple[int, int]:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as db:
            row = db.execute(
                "SELECT count(*), count(DISTINCT value) FROM readings WHERE metric = 'seq'"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    pids: list[int] = []
    serve.start()
    try:
        stats = lambda: serve.get("/api/stats").json()["workers"]  # noqa: E731
        wait_until(lambda: len(stats()) == 2, timeout=30, what="2 workers reporting")
        pids = [w["pid"] for w in stats()]
        publish_qos1(
            broker.port,
            [(f"devices/w{n % 8}/sensor", b'{"seq": %d}' % n) for n in range(count)],
            client_id="pub",
        )
        wait_until(lambda: seqs()[0] >= count, timeout=30, what="the messages stored")
    finally:
        serve.stop(signal.SIGKILL)  # the pool first, so it restarts nothing
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    del serve.env["PYTHONPATH"]
    with serve.start():
        wait_until(lambda: len(stats()) == 2, timeout=30, what="2 workers reporting again")
        publish_qos1(broker.port, [("devices/after/sensor", b'{"n": 1}')], client_id="after")
        wait_until(lambda: device(serve, "after"), timeout=20, what="the later message")
        wait_until(
            lambda: serve.log_text().count("the broker re-sent on resuming") >= 2,
            timeout=20,
            what=f"both workers' redeliveries recognised; log:\n{serve.log_text()}",
        )
        assert seqs() == (count, count)
        rows = dict(query_sessions(url))
        assert len(rows) == 2, rows


def query_sessions(url: str) -> list[tuple[str, float]]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as db:
        return [
            (str(client_id), float(at))
            for client_id, at in db.execute("SELECT client_id, connected_at FROM mqtt_sessions")
        ]


@pytest.mark.parametrize("persistence", [False, True])
def test_restart_finds_the_session_lost(
    mosquitto_factory: MosquittoFactory, tmp_path: Path, persistence: bool
) -> None:
    """serve stops; the broker restarts (without persistence its sessions are gone); serve
    starts again under the same client id less than the session expiry later: the first
    connection reports session_lost (warning, connection event, /healthz). A fresh install
    does not, and neither does a broker that kept the session."""
    broker = mosquitto_factory(persistence=persistence)
    serve = serve_for(broker.port, tmp_path / "serve", MQTTHUB_CLIENT_ID="restarted-1")
    detail = "previous run was connected"
    with serve:  # a fresh install: no previous run
        events = serve.get("/api/connection").json()["events"]
        assert_session_report(serve, events, lost=False, detail=detail)
    broker.restart()
    with serve:
        events = serve.get("/api/connection").json()["events"]
        assert_session_report(serve, events, lost=not persistence, detail=detail)


def test_a_clean_shutdown_leaves_nothing_to_recognise(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """After SIGTERM every stored message was acknowledged before the DISCONNECT: the window
    is recorded empty, so the next run takes no new message for a re-sent one. A kill -9
    leaves it as the last batch recorded it."""
    broker = mosquitto_factory()
    serve = serve_for(broker.port, tmp_path / "serve", MQTTHUB_CLIENT_ID="clean-1")
    db_url = f"sqlite:///{tmp_path / 'serve' / 'data' / 'mqtthub.db'}"
    with serve:
        publish_qos1(broker.port, [("devices/c1/sensor", b'{"v": 1}')], client_id="pub")
        wait_until(lambda: device(serve, "c1"), what="stored")
    store = Store.open(db_url)
    try:
        record = load_session(store.engine, "clean-1")
        assert record is not None
        assert decode(record.unacked) == []
    finally:
        store.close()

    serve.start()
    publish_qos1(broker.port, [("devices/c2/sensor", b'{"v": 2}')], client_id="pub")
    wait_until(lambda: device(serve, "c2"), what="stored")
    serve.stop(signal.SIGKILL)
    store = Store.open(db_url)
    try:
        record = load_session(store.engine, "clean-1")
        assert record is not None
        assert fingerprint("devices/c2/sensor", b'{"v": 2}') in {
            f for _p, f in decode(record.unacked)
        }
    finally:
        store.close()
