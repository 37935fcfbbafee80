"""The SQL store on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

from mqtthub.messages import Reason
from mqtthub.pipeline import Batch, DeadLetter, RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store import queries
from mqtthub.store.database import Store
from mqtthub.store.schema import metadata


@pytest.fixture
def store(store: Store) -> Store:
    """The shared store fixture, with this module's presence engine emptied too."""
    PRESENCE.devices.clear()  # the engine follows the emptied database
    return store


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
    with store.engine.connect() as connection:
        for table in metadata.sorted_tables:
            if "device_id" in table.c and table.name not in {
                "alerts",
                "commands",
                "rollup_pending",
            }:
                left = connection.execute(
                    select(func.count()).select_from(table).where(table.c.device_id == "gone")
                ).scalar_one()
                assert left == 0, table.name
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


def readings_of(store: Store, device_id: str, **filters: Any) -> list[tuple[str, float, float]]:
    """(metric, ts, value) of a device's readings as the API lists them (newest first)."""
    window: dict[str, Any] = {"metric": None, "since": None, "until": None, "limit": 1000}
    rows = queries.device_readings(store.engine, device_id, **{**window, **filters})
    return [(r["metric"], r["ts"], r["value"]) for r in rows]


def test_readings_newest_first_with_metric_time_and_limit_filters(store: Store) -> None:
    """The readings endpoint's query: newest first (metrics by name at one time), filtered
    by metric (also one a device sends only now and then), time range and limit."""
    store.write(
        batch_of(
            *(
                ("devices/r1/sensor", json.dumps({"ts": T0 + i, "t": i, "h": -i}), T0 + i)
                for i in range(5)
            ),
            ("devices/r1/heartbeat", json.dumps({"ts": T0 + 2.5, "rssi": -60}), T0 + 2.5),
            ("devices/other/sensor", json.dumps({"ts": T0 + 9, "t": 99}), T0 + 9),
        )
    )
    assert readings_of(store, "r1", limit=5) == [
        ("h", T0 + 4, -4.0),
        ("t", T0 + 4, 4.0),
        ("h", T0 + 3, -3.0),
        ("t", T0 + 3, 3.0),
        ("rssi", T0 + 2.5, -60.0),
    ]
    assert readings_of(store, "r1", metric="t", since=T0 + 1, until=T0 + 3) == [
        ("t", T0 + 2, 2.0),
        ("t", T0 + 1, 1.0),
    ]
    assert readings_of(store, "r1", metric="rssi") == [("rssi", T0 + 2.5, -60.0)]
    assert readings_of(store, "r1", metric="absent") == []
    assert readings_of(store, "r1", metric='a"b') == []


def test_values_come_back_exactly(store: Store) -> None:
    """Stored values are the very floats received: no rounding on either database."""
    values = {"third": 0.1 + 0.2, "huge": 1.7976931348623157e308, "tiny": 5e-324, "neg": -12.5}
    store.write(batch_of(("devices/x1/sensor", json.dumps({"ts": T0, **values}), T0)))
    assert {m: v for m, _ts, v in readings_of(store, "x1")} == values
    device = queries.get_device(store.engine, "x1")
    assert device is not None
    assert {m: latest["value"] for m, latest in device["latest"].items()} == values


def test_a_late_message_at_a_stored_time_adds_only_its_new_metrics(store: Store) -> None:
    """Two messages for the same device and time: the second adds the metrics the first did
    not have; a value already stored is kept (first delivery wins) and counted once."""
    store.write(batch_of(("devices/m1/sensor", json.dumps({"ts": T0, "a": 1}), T0)))
    later = ("devices/m1/sensor", json.dumps({"ts": T0, "a": 5, "b": 2}), T0 + 1)
    new = ("devices/m1/sensor", json.dumps({"ts": T0 + 1, "a": 3}), T0 + 1)
    store.write(batch_of(later, new))
    assert readings_of(store, "m1") == [("a", T0 + 1, 3.0), ("a", T0, 1.0), ("b", T0, 2.0)]
    window = {"since": T0 - 60, "until": T0 + 60, "bucket": 60.0}
    [a_minute] = queries.device_series(store.engine, "m1", metric="a", **window)
    [b_minute] = queries.device_series(store.engine, "m1", metric="b", **window)
    assert (a_minute["count"], a_minute["min"], a_minute["max"]) == (2, 1.0, 3.0)
    assert (b_minute["count"], b_minute["min"]) == (1, 2.0)


def test_redelivered_batch_mixed_with_new_messages_counts_each_value_once(store: Store) -> None:
    """After a crash the broker redelivers messages that were already committed, in a batch
    with new ones: the new ones are stored and the per-minute counts stay exact."""
    start = T0 - T0 % 60
    first = [
        ("devices/k1/sensor", json.dumps({"ts": start + i, "v": i}), start + i) for i in range(30)
    ]
    store.write(batch_of(*first))
    again = first[10:] + [
        ("devices/k1/sensor", json.dumps({"ts": start + i, "v": i}), start + i)
        for i in range(30, 50)
    ]
    store.write(batch_of(*again))
    [minute] = queries.device_series(
        store.engine, "k1", metric="v", since=start, until=start + 60, bucket=60
    )
    assert (minute["count"], minute["min"], minute["max"]) == (50, 0.0, 49.0)
    assert abs(minute["avg"] - 24.5) < 1e-9
    assert len(readings_of(store, "k1")) == 50


def test_same_time_twice_in_one_batch_is_stored_once(store: Store) -> None:
    """One batch holding a message twice (the broker resent it before the first was acked)."""
    message = ("devices/w1/sensor", json.dumps({"ts": T0, "v": 7}), T0)
    store.write(batch_of(message, message))
    assert readings_of(store, "w1") == [("v", T0, 7.0)]
    [minute] = queries.device_series(
        store.engine, "w1", metric="v", since=T0 - 60, until=T0 + 60, bucket=60
    )
    assert minute["count"] == 1


def test_has_readings_finds_an_untimed_message_by_its_values(store: Store) -> None:
    """A redelivered message without ``ts`` is recognised by its values since the window's
    start, and only when every value matches."""
    store.write(batch_of(("devices/u1/sensor", json.dumps({"t": 21.5, "h": 40}), T0)))
    readings = [("t", 21.5, T0 + 30), ("h", 40.0, T0 + 30)]
    assert store.has_readings("u1", readings, since=T0 - 10)
    assert not store.has_readings("u1", [("t", 21.5, T0), ("h", 41.0, T0)], since=T0 - 10)
    assert not store.has_readings("u1", readings, since=T0 + 1)
    assert not store.has_readings("u2", readings, since=T0 - 10)
    assert not store.has_readings("u1", [], since=T0 - 10)


def test_short_buckets_read_the_samples(store: Store) -> None:
    """Series buckets under a minute come from the samples, skipping samples without the
    metric."""
    store.write(
        batch_of(
            ("devices/s1/sensor", json.dumps({"ts": T0, "v": 1}), T0),
            ("devices/s1/sensor", json.dumps({"ts": T0 + 1, "v": 3}), T0 + 1),
            ("devices/s1/heartbeat", json.dumps({"ts": T0 + 2, "rssi": -50}), T0 + 2),
            ("devices/s1/sensor", json.dumps({"ts": T0 + 12, "v": 5}), T0 + 12),
        )
    )
    series = queries.device_series(
        store.engine, "s1", metric="v", since=T0, until=T0 + 20, bucket=10
    )
    assert [(p["ts"], p["min"], p["avg"], p["max"], p["count"]) for p in series] == [
        (T0, 1.0, 2.0, 3.0, 2),
        (T0 + 10, 5.0, 5.0, 5.0, 1),
    ]


def test_the_readings_view_keeps_the_narrow_shape_for_sql_by_hand(store: Store) -> None:
    """``SELECT ... FROM readings`` still answers one row per value (tools and SQL by hand)."""
    store.write(batch_of(("devices/v1/sensor", json.dumps({"ts": T0, "a": 1.5, "b": 2}), T0)))
    with store.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT device_id, metric, ts, value FROM readings ORDER BY metric")
        ).all()
    assert [tuple(row) for row in rows] == [("v1", "a", T0, 1.5), ("v1", "b", T0, 2.0)]


def test_a_sample_only_batch_commits_with_the_transaction(store: Store) -> None:
    """A batch with samples and nothing else is written and committed like any other."""
    batch = Batch(samples=[("z1", T0, {"v": 1.0})])
    store.write(batch)
    store.write(batch)
    assert readings_of(store, "z1") == [("v", T0, 1.0)]
