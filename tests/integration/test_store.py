"""The SQL store on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mqtthub.messages import Reason
from mqtthub.pipeline import Batch, DeadLetter, RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store import queries
from mqtthub.store.database import Store
from mqtthub.store.schema import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store on SQLite (file) or PostgreSQL, emptied for each test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = Store.open(url)
    with opened.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    yield opened
    opened.close()


PRESENCE = PresenceEngine()


def batch_of(*messages: tuple[str, str, float]) -> Batch:
    raw = [RawMessage(topic, payload.encode(), 1, False, at) for topic, payload, at in messages]
    return build_batch(parse_all(raw, prefix="devices", max_payload=65536), presence=PRESENCE)


T0 = 1_790_000_000.0


def test_migrations_create_exactly_the_schema(store: Store) -> None:
    """The Alembic migrations and schema.py describe the same tables (no drift)."""
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, metadata) == []


def test_batch_round_trip(store: Store) -> None:
    """A batch registers the device, stores readings and keeps the latest per metric."""
    store.write(
        batch_of(
            ("devices/d1/sensor", json.dumps({"ts": T0, "temperature": 20.5, "ok": True}), T0 + 1),
            ("devices/d1/sensor", json.dumps({"ts": T0 + 60, "temperature": 21.5}), T0 + 61),
        )
    )
    device = queries.get_device(store.engine, "d1")
    assert device is not None
    assert device["status"] == "online"
    assert device["first_seen"] == T0 + 1
    assert device["last_seen"] == T0 + 61
    assert device["latest"] == {
        "ok": {"value": 1.0, "ts": T0},
        "temperature": {"value": 21.5, "ts": T0 + 60},
    }
    rows = queries.device_readings(
        store.engine, "d1", metric="temperature", since=T0, until=T0 + 61, limit=10
    )
    assert [(r["ts"], r["value"]) for r in rows] == [(T0 + 60, 21.5), (T0, 20.5)]


def test_redelivered_readings_are_stored_once(store: Store) -> None:
    """The same reading written twice (a broker redelivery) is stored once."""
    message = ("devices/d2/sensor", json.dumps({"ts": T0, "v": 1}), T0)
    store.write(batch_of(message))
    store.write(batch_of(message))
    assert (
        len(
            queries.device_readings(
                store.engine, "d2", metric=None, since=None, until=None, limit=10
            )
        )
        == 1
    )


def test_late_reading_does_not_replace_the_latest(store: Store) -> None:
    """A reading older than the stored latest value leaves ``latest`` alone."""
    store.write(batch_of(("devices/d3/sensor", json.dumps({"ts": T0 + 10, "v": 2}), T0 + 10)))
    store.write(batch_of(("devices/d3/sensor", json.dumps({"ts": T0, "v": 1}), T0 + 11)))
    device = queries.get_device(store.engine, "d3")
    assert device is not None
    assert device["latest"]["v"] == {"value": 2.0, "ts": T0 + 10}


def test_status_offline_is_stored(store: Store) -> None:
    """A device that reports offline is listed with ?status=offline."""
    store.write(batch_of(("devices/d4/status", "online", T0)))
    store.write(batch_of(("devices/d4/status", "offline", T0 + 5)))
    offline, _total = queries.list_devices(store.engine, status="offline")
    assert [(d["id"], d["status_changed_at"]) for d in offline] == [("d4", T0 + 5)]


def test_dead_letters_keep_raw_bytes(store: Store) -> None:
    """A dead letter keeps the payload bytes exactly, even when they are not UTF-8."""
    batch = Batch()
    batch.dead_letters.append(
        DeadLetter(T0, "devices/x/sensor", b"\xff\xfe raw", 6, Reason.INVALID_UTF8, "bad", "x")
    )
    store.write(batch)
    (row,) = queries.list_dead_letters(store.engine)
    assert bytes(row["payload"]) == b"\xff\xfe raw"
    assert row["reason"] == "invalid_utf8"


def test_registry_lookup(store: Store) -> None:
    """``registered`` tells which device ids exist."""
    store.write(batch_of(("devices/known/heartbeat", "", T0)))
    assert store.registered(["known", "unknown"]) == {"known"}


def test_chart_aggregates_match_the_raw_readings(store: Store) -> None:
    """Per-minute aggregates give the same min/avg/max as the raw readings, even when a
    batch is delivered twice."""
    start = T0 - T0 % 60
    values = [(start + i * 7.5, float(i % 11)) for i in range(40)]  # 5 whole minutes
    batch = batch_of(
        *(("devices/c1/sensor", json.dumps({"ts": ts, "v": v}), ts) for ts, v in values)
    )
    store.write(batch)
    store.write(batch)  # a redelivery: the database ignores the duplicates
    window = {"metric": "v", "since": start, "until": start + 300}
    minutes = queries.device_series(store.engine, "c1", bucket=60, **window)  # type: ignore[arg-type]
    raw = queries.device_series(store.engine, "c1", bucket=59.999, **window)  # type: ignore[arg-type]
    assert [m["count"] for m in minutes] == [8] * 5
    for by_minute, by_raw in zip(minutes, raw, strict=True):
        assert (by_minute["min"], by_minute["max"]) == (by_raw["min"], by_raw["max"])
        assert abs(by_minute["avg"] - by_raw["avg"]) < 1e-9


def test_delete_device_removes_its_data(store: Store) -> None:
    """Deleting a device removes it, its readings and its aggregates."""
    store.write(batch_of(("devices/gone/sensor", json.dumps({"ts": T0, "v": 1}), T0)))
    assert store.delete_device("gone")
    assert queries.get_device(store.engine, "gone") is None
    assert (
        queries.device_series(store.engine, "gone", metric="v", since=0, until=2e9, bucket=60) == []
    )
    assert not store.delete_device("gone")


def test_a_new_sqlite_database_is_private_to_its_user(tmp_path: Path) -> None:
    """The data folder is created 0700 and the database (with its WAL) 0600."""
    path = tmp_path / "data" / "hub.db"
    store = Store.open(f"sqlite:///{path}")
    try:
        batch = build_batch(
            parse_all(
                [RawMessage("devices/d1/sensor", b'{"t": 1}', 1, False, 1.7e9)],
                prefix="devices",
                max_payload=65536,
            ),
            presence=PresenceEngine(),
        )
        store.write(batch)
        assert (path.parent.stat().st_mode & 0o777) == 0o700
        for file in (path, path.with_name("hub.db-wal")):
            assert (file.stat().st_mode & 0o777) == 0o600, file
    finally:
        store.close()
