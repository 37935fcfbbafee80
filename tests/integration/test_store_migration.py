"""Revision 0006 carries a database of narrow readings over to samples, and back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text

from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store import queries
from mqtthub.store.database import MIGRATIONS, Store

T0 = 1_790_000_000.0
# What a 0005 database may hold: several metrics at one time, values that need all 17
# significant digits, extremes, and a device with a single reading.
OLD_READINGS = [
    ("d1", "temperature", T0, 21.5),
    ("d1", "humidity", T0, 40.0),
    ("d1", "third", T0, 0.1 + 0.2),
    ("d1", "temperature", T0 + 60, -0.5),
    ("d1", "huge", T0 + 60, 1.7976931348623157e308),
    ("d1", "tiny", T0 + 120, 5e-324),
    ("d2", "rssi", T0 + 1, -61.0),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of its own on SQLite (file) or PostgreSQL."""
    if request.param == "sqlite":
        made = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield made
    else:
        _admin, _name, url = request.getfixturevalue("postgres_database")
        made = create_engine(url)
        yield made
    made.dispose()


def migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    """Run mqtthub's Alembic migrations up (or down) to ``revision``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def old_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """The readings table or view as (device_id, metric, ts, value), sorted."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT device_id, metric, ts, value FROM readings"))
        return sorted(tuple(row) for row in rows)


def test_upgrade_carries_readings_over_exactly_and_downgrade_brings_them_back(
    engine: Engine,
) -> None:
    """A 0005 database keeps every reading, bit for bit, through upgrade and downgrade;
    the API queries and new writes work on the upgraded database."""
    migrate(engine, "0005")
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO readings VALUES (:d, :m, :ts, :v)"),
            [{"d": d, "m": m, "ts": ts, "v": v} for d, m, ts, v in OLD_READINGS],
        )
    migrate(engine, "head")
    assert old_rows(engine) == sorted(OLD_READINGS)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM samples")).scalar_one() == 4

    store = Store(engine)
    store.migrate()  # already at head: nothing to do
    rows = queries.device_readings(engine, "d1", metric=None, since=None, until=None, limit=3)
    assert [(r["metric"], r["ts"], r["value"]) for r in rows] == [
        ("tiny", T0 + 120, 5e-324),
        ("huge", T0 + 60, 1.7976931348623157e308),
        ("temperature", T0 + 60, -0.5),
    ]
    message = RawMessage(
        "devices/d1/sensor", json.dumps({"ts": T0 + 180, "v": 1}).encode(), 1, False, T0
    )
    store.write(
        build_batch(
            parse_all([message], prefix="devices", max_payload=4096), presence=PresenceEngine()
        )
    )

    migrate(engine, "0005", down=True)
    assert old_rows(engine) == sorted([*OLD_READINGS, ("d1", "v", T0 + 180, 1.0)])


def test_upgrade_of_an_empty_database(engine: Engine) -> None:
    """A database created before 0006 with no readings upgrades to an empty samples table."""
    migrate(engine, "0005")
    migrate(engine, "head")
    assert old_rows(engine) == []


def _tasks(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, state, delivered_at, done_at FROM tasks"))
        return sorted(tuple(row) for row in rows)


def test_0011_adds_seen_at_and_its_downgrade_keeps_seen_tasks_as_delivered(
    engine: Engine,
) -> None:
    """Tasks of a 0010 database get an empty seen_at; going back, a seen task is delivered."""
    migrate(engine, "0010")
    insert = text(
        "INSERT INTO tasks (id, recipient, title, body, state, created_at, delivered_at,"
        " done_at, publishes) VALUES (:id, 'ann', 't', 'b', :state, :at, :delivered, NULL, 1)"
    )
    with engine.begin() as connection:
        connection.execute(insert, {"id": "t1", "state": "delivered", "at": T0, "delivered": T0})
    migrate(engine, "0011")
    with engine.begin() as connection:
        assert connection.execute(text("SELECT seen_at FROM tasks")).scalar_one() is None
        connection.execute(text("UPDATE tasks SET state = 'seen', seen_at = :at"), {"at": T0 + 5})
    migrate(engine, "0010", down=True)
    assert _tasks(engine) == [("t1", "delivered", T0, None)]
