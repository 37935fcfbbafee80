"""The SQL store: open the engine, run migrations, write batches in one transaction.

Everything here blocks; ``serve`` calls it from the writer's thread and the API's
thread pool, never from the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, case, create_engine, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from mqtthub.errors import StoreError
from mqtthub.pipeline import Batch
from mqtthub.store.schema import dead_letters, devices, latest_readings, readings

log = logging.getLogger("mqtthub.store")
MIGRATIONS = Path(__file__).with_name("migrations")
# Column order of Batch.readings tuples.
READING_COLUMNS = ("device_id", "metric", "ts", "value")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Store:
    """SQLite or PostgreSQL behind one small interface."""

    def __init__(self, engine: Engine) -> None:
        """Wrap an engine; use :meth:`open` to build one from a URL."""
        self.engine = engine
        self.dialect = engine.dialect.name
        self._insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        self._readings_sql, self._readings_named = self._compile(
            self._insert(readings).on_conflict_do_nothing()
        )

    @classmethod
    def open(cls, url: str) -> Store:
        """Create the engine for ``url`` (creating a SQLite file's folder) and migrate.

        Raises:
            StoreError: the database cannot be reached or migrated.
        """
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
        elif parsed.get_backend_name() == "postgresql":
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        else:
            raise StoreError(f"MQTTHUB_DATABASE_URL: unsupported database {parsed.drivername}")
        store = cls(engine)
        store.migrate()
        return store

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open database {self.engine.url.render_as_string(hide_password=True)}: "
                f"{_short(exc)}"
            ) from None

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def ping(self) -> None:
        """Run a trivial query; raises ``SQLAlchemyError`` when the database is unreachable."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def registered(self, device_ids: Iterable[str]) -> set[str]:
        """Which of ``device_ids`` exist in the registry."""
        ids = list(device_ids)
        if not ids:
            return set()
        with self.engine.connect() as connection:
            rows = connection.execute(select(devices.c.id).where(devices.c.id.in_(ids)))
            return {row.id for row in rows}

    def write(self, batch: Batch) -> None:
        """Write one batch in one transaction; redelivered readings are ignored."""
        with self.engine.begin() as connection:
            if batch.devices:
                device_rows = [_device_row(update) for update in batch.devices.values()]
                connection.execute(self._device_upsert(), device_rows)
            if batch.readings:
                # The hot path: one executemany of plain tuples, without per-row processing.
                rows: list[Any] = batch.readings
                if self._readings_named:
                    rows = [dict(zip(READING_COLUMNS, row, strict=True)) for row in rows]
                connection.exec_driver_sql(self._readings_sql, rows)
                connection.execute(self._latest_upsert(), _latest_rows(batch.readings))
            if batch.dead_letters:
                connection.execute(
                    dead_letters.insert(),
                    [
                        {
                            "received_at": d.received_at,
                            "topic": d.topic,
                            "payload": d.payload,
                            "payload_size": d.payload_size,
                            "reason": str(d.reason),
                            "detail": d.detail,
                            "device_id": d.device_id,
                        }
                        for d in batch.dead_letters
                    ],
                )

    def _compile(self, statement: Any) -> tuple[str, bool]:
        """SQL text for a statement and whether it takes named parameters."""
        compiled = statement.compile(dialect=self.engine.dialect)
        if compiled.positional:
            assert tuple(compiled.positiontup) == READING_COLUMNS, compiled.positiontup
        return str(compiled), not compiled.positional

    def _device_upsert(self) -> Any:
        statement = self._insert(devices)
        new = statement.excluded
        changed = devices.c.status != new.status
        return statement.on_conflict_do_update(
            index_elements=[devices.c.id],
            set_={
                "last_seen": new.last_seen,
                "last_message_type": new.last_message_type,
                "status": new.status,
                "status_changed_at": case(
                    (changed, new.status_changed_at), else_=devices.c.status_changed_at
                ),
            },
        )

    def _latest_upsert(self) -> Any:
        statement = self._insert(latest_readings)
        new = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=[latest_readings.c.device_id, latest_readings.c.metric],
            set_={"ts": new.ts, "value": new.value},
            where=new.ts >= latest_readings.c.ts,
        )


def _device_row(update: Any) -> dict[str, Any]:
    return {
        "id": update.device_id,
        "status": str(update.status),
        "first_seen": update.first_seen,
        "last_seen": update.last_seen,
        "last_message_type": str(update.last_message_type),
        "status_changed_at": update.last_seen,
    }


def _latest_rows(rows: list[tuple[str, str, float, float]]) -> list[dict[str, Any]]:
    latest: dict[tuple[str, str], tuple[float, float]] = {}
    for device_id, metric, ts, value in rows:
        key = (device_id, metric)
        known = latest.get(key)
        if known is None or ts >= known[0]:
            latest[key] = (ts, value)
    return [
        {"device_id": d, "metric": m, "ts": ts, "value": v} for (d, m), (ts, v) in latest.items()
    ]


def _short(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
