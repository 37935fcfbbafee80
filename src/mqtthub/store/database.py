"""The SQL store: open the engine, run migrations, write batches in one transaction.

Everything here blocks; ``serve`` calls it from the writer's thread and the API's
thread pool, never from the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Double,
    Engine,
    bindparam,
    case,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from mqtthub.errors import StoreError
from mqtthub.messages import Reading, Status
from mqtthub.pipeline import Batch, DeadLetter, DeviceUpdate
from mqtthub.presence import DeviceState, Transition
from mqtthub.profiles.base import MetricInfo
from mqtthub.store import locks
from mqtthub.store.errors import first_line, translated
from mqtthub.store.samples import SampleWriter, has_sample
from mqtthub.store.schema import (
    alert_events,
    alerts,
    connection_events,
    dead_letters,
    devices,
    latest_readings,
    metric_info,
    presence_events,
    readings_1d,
    readings_1h,
    readings_1m,
    rollup_pending,
    samples,
)

log = logging.getLogger("mqtthub.store")
MIGRATIONS = Path(__file__).with_name("migrations")
P = ParamSpec("P")
T = TypeVar("T")


def _create_private(database: Path) -> None:
    """Create a SQLite file (and its folder) readable by this user only (0600 and 0700).

    SQLite gives its -wal and -shm files the database file's permissions. Existing files
    keep theirs: an operator may have chosen them.
    """
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


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
        self._samples = SampleWriter(self.dialect)

    @classmethod
    def open(cls, url: str) -> Store:
        """Create the engine for ``url`` (creating a SQLite file's folder) and migrate.

        Raises:
            StoreError: the database cannot be reached or migrated.
        """
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                _create_private(Path(parsed.database))
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
        elif parsed.get_backend_name() == "postgresql":
            engine = create_engine(
                url,
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=5,
                connect_args={"options": locks.SERVER_KEEPALIVES},
            )
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
                if self.dialect == "postgresql":  # workers starting together migrate once
                    connection.exec_driver_sql(
                        "SELECT pg_advisory_xact_lock(%s, %s)", locks.MIGRATION
                    )
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open database {self.engine.url.render_as_string(hide_password=True)}: "
                f"{first_line(exc)}"
            ) from None

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def ping(self) -> None:
        """Run a trivial query.

        Raises:
            StoreError: the database does not answer (``StoreUnavailableError``) or fails.
        """
        with translated(), self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def read(
        self, query: Callable[Concatenate[Engine, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``query(engine, ...)`` (a function of ``store.queries`` or ``store.downlink``).

        The web layer reads only through here; the writer runs its operations the same way.

        Raises:
            StoreError: the database failed; ``StoreUnavailableError`` when unreachable.
        """
        with translated():
            return query(self.engine, *args, **kwargs)

    def registered(self, device_ids: Iterable[str]) -> set[str]:
        """Which of ``device_ids`` exist in the registry."""
        ids = list(device_ids)
        if not ids:
            return set()
        with self.engine.connect() as connection:
            rows = connection.execute(select(devices.c.id).where(devices.c.id.in_(ids)))
            return {row.id for row in rows}

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as connection:
            yield connection

    def write(self, batch: Batch) -> None:
        """Write one batch in a transaction of its own (see :meth:`write_batch`)."""
        with self.transaction() as connection:
            self.write_batch(connection, batch)

    def write_batch(self, connection: Connection, batch: Batch) -> None:
        """Write one batch inside ``connection``'s transaction; readings already stored
        are ignored.

        Samples go to ``samples``, and from them ``latest_readings`` (never moved back to
        an older value) and ``readings_1m`` (only values not stored before are counted).
        """
        # Sorted: workers sharing the database touch rows in one order (no deadlocks).
        updates = sorted(batch.devices.values(), key=lambda u: u.device_id)
        if updates:
            connection.execute(
                self._insert(devices).on_conflict_do_nothing(), [_device_row(u) for u in updates]
            )
        if batch.transitions:
            self._write_transitions(connection, batch.transitions)
        if updates:  # after the transitions: status_ts is the presence engine's
            connection.execute(_DEVICE_SEEN, [_seen_row(u) for u in updates])
        if batch.samples:
            self._samples.write(connection, batch.samples)
        if batch.dead_letters:
            connection.execute(
                dead_letters.insert(), [_dead_letter_row(d) for d in batch.dead_letters]
            )
        if batch.metric_info:
            self._write_metric_info(connection, batch.metric_info)

    def _write_metric_info(
        self, connection: Connection, infos: dict[tuple[str, str], MetricInfo]
    ) -> None:
        """Upsert units and names; what a message does not say keeps its stored value."""
        insert = self._insert(metric_info)
        statement = insert.on_conflict_do_update(
            index_elements=[metric_info.c.device_id, metric_info.c.metric],
            set_={
                name: func.coalesce(insert.excluded[name], metric_info.c[name])
                for name in ("unit", "name", "device_class")
            },
        )
        connection.execute(
            statement,
            [
                {
                    "device_id": device_id,
                    "metric": metric,
                    "unit": info.unit,
                    "name": info.name,
                    "device_class": info.device_class,
                }
                for (device_id, metric), info in sorted(infos.items())
            ],
        )

    def lock_presence(
        self, connection: Connection, device_ids: Sequence[str]
    ) -> dict[str, DeviceState]:
        """Lock ``device_ids`` until ``connection``'s transaction ends, then read their
        stored presence (devices not stored yet are missing from the result).

        With several workers on one PostgreSQL database this is what makes the database,
        not one process's memory, decide presence: a worker holds a device from reading
        its state to committing what its batch changed, so batches touching one device
        run one after the other. The locks are transaction-level advisory locks on the
        ids (rows may not exist yet), taken in one order so two workers never deadlock.
        SQLite has one writer at a time anyway.
        """
        if not device_ids:
            return {}
        lock_devices(connection, device_ids)
        return _presence_states(connection, _PRESENCE.where(devices.c.id.in_(list(device_ids))))

    def delete_device(self, device_id: str) -> bool:
        """Remove a device and all its data (readings, aggregates, presence, dead letters,
        alerts; its commands stay as history); False when it did not exist."""
        with self.engine.begin() as connection:
            for table in (
                samples,
                readings_1m,
                readings_1h,
                readings_1d,
                rollup_pending,
                latest_readings,
                presence_events,
                metric_info,
            ):
                connection.execute(table.delete().where(table.c.device_id == device_id))
            connection.execute(dead_letters.delete().where(dead_letters.c.device_id == device_id))
            its_alerts = select(alerts.c.id).where(alerts.c.device_id == device_id)
            connection.execute(alert_events.delete().where(alert_events.c.alert_id.in_(its_alerts)))
            connection.execute(alerts.delete().where(alerts.c.device_id == device_id))
            gone = connection.execute(devices.delete().where(devices.c.id == device_id))
            return bool(gone.rowcount)

    def update_device(self, device_id: str, values: dict[str, Any]) -> bool:
        """Set name, labels (JSON text) or heartbeat_timeout; False when it does not exist."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(devices).where(devices.c.id == device_id).values(**values)
            )
            return bool(result.rowcount)

    def write_transitions(
        self, transitions: Sequence[Transition], connection: Connection | None = None
    ) -> None:
        """Store presence changes that came from the clock (heartbeat timeouts) or an
        operator, in ``connection``'s transaction or one of their own."""
        if connection is not None:
            self._write_transitions(connection, transitions)
            return
        with self.transaction() as own:
            self._write_transitions(own, transitions)

    @staticmethod
    def _write_transitions(connection: Connection, transitions: Sequence[Transition]) -> None:
        connection.execute(
            _DEVICE_STATUS,
            [
                {"b_id": t.device_id, "status": str(t.status), "reason": str(t.reason), "at": t.at}
                for t in transitions
            ],
        )
        connection.execute(
            presence_events.insert(),
            [
                {
                    "device_id": t.device_id,
                    "at": t.at,
                    "status": str(t.status),
                    "reason": str(t.reason),
                    "detail": t.detail,
                }
                for t in transitions
            ],
        )

    def presence_states(self, *, online_only: bool = False) -> dict[str, DeviceState]:
        """Every device's stored presence (or only the online devices'), to seed the
        presence engine at start-up or to find heartbeat deadlines that passed."""
        query = (
            _PRESENCE.where(devices.c.status == str(Status.ONLINE)) if online_only else _PRESENCE
        )
        with self.engine.connect() as connection:
            return _presence_states(connection, query)

    def has_readings(self, device_id: str, readings: Sequence[Reading], since: float) -> bool:
        """True when every one of ``readings`` (same values, one shared time) is stored.

        Used for redelivered messages without a device timestamp: their readings got
        the receive time of the first delivery, so they are found by value among the
        device's samples since ``since``.
        """
        if not readings:
            return False
        with self.engine.connect() as connection:
            return has_sample(connection, self.dialect, device_id, readings, since)


_PRESENCE = select(
    devices.c.id,
    devices.c.status,
    devices.c.last_seen,
    devices.c.heartbeat_interval,
    devices.c.heartbeat_timeout,
    devices.c.status_ts,
    devices.c.last_heartbeat,
)
_LOCK_DEVICES = (
    "SELECT pg_advisory_xact_lock(%s, h)"
    " FROM (SELECT DISTINCT hashtext(d) AS h FROM unnest(%s::text[]) AS d ORDER BY h) AS ids"
)


def lock_devices(connection: Connection, device_ids: Sequence[str]) -> None:
    """Hold ``device_ids`` until ``connection``'s transaction ends (PostgreSQL: advisory
    locks taken in one order; SQLite has one writer at a time anyway)."""
    if device_ids and connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_LOCK_DEVICES, (locks.DEVICES, list(device_ids)))


def _presence_states(connection: Connection, query: Any) -> dict[str, DeviceState]:
    return {
        row.id: DeviceState(
            Status(row.status),
            row.last_seen,
            heartbeat_timeout=row.heartbeat_timeout,
            learned_interval=row.heartbeat_interval,
            status_ts=row.status_ts,
            last_heartbeat=row.last_heartbeat,
        )
        for row in connection.execute(query)
    }


def _device_row(update: DeviceUpdate) -> dict[str, Any]:
    return {
        "id": update.device_id,
        "status": str(update.status),
        "first_seen": update.first_seen,
        "last_seen": update.last_seen,
        "last_message_type": str(update.last_message_type),
        "status_changed_at": update.first_seen,
        "heartbeat_interval": update.heartbeat_interval,
        "status_ts": update.status_ts,
        "last_heartbeat": update.last_heartbeat,
    }


def _seen_row(update: DeviceUpdate) -> dict[str, Any]:
    return {
        "b_id": update.device_id,
        "last_seen": update.last_seen,
        "last_message_type": str(update.last_message_type),
        "heartbeat_interval": update.heartbeat_interval,
        "status_ts": update.status_ts,
        "last_heartbeat": update.last_heartbeat,
    }


def _dead_letter_row(dead: DeadLetter) -> dict[str, Any]:
    return {
        "received_at": dead.received_at,
        "topic": dead.topic,
        "payload": dead.payload,
        "payload_size": dead.payload_size,
        "reason": str(dead.reason),
        "detail": dead.detail,
        "device_id": dead.device_id,
    }


# Existing devices: newer last_seen wins; the learned heartbeat interval is kept up to date.
_DEVICE_SEEN = (
    update(devices)
    .where(devices.c.id == bindparam("b_id"))
    .values(
        last_seen=case(
            (bindparam("last_seen") > devices.c.last_seen, bindparam("last_seen")),
            else_=devices.c.last_seen,
        ),
        last_message_type=bindparam("last_message_type"),
        # A device registered before it ever spoke has first_seen 0 until its first message.
        first_seen=case(
            (devices.c.first_seen == 0, bindparam("last_seen")), else_=devices.c.first_seen
        ),
        heartbeat_interval=func.coalesce(
            bindparam("heartbeat_interval", type_=Double), devices.c.heartbeat_interval
        ),
        status_ts=func.coalesce(bindparam("status_ts", type_=Double), devices.c.status_ts),
        last_heartbeat=func.coalesce(
            bindparam("last_heartbeat", type_=Double), devices.c.last_heartbeat
        ),
    )
)
_DEVICE_STATUS = (
    update(devices)
    .where(devices.c.id == bindparam("b_id"))
    .values(
        status=bindparam("status"),
        status_reason=bindparam("reason"),
        status_changed_at=bindparam("at"),
        status_ts=bindparam("at"),
    )
)


def record_connection_event(engine: Engine, event: dict[str, Any]) -> None:
    """Store one connection event (connected, disconnected, refused)."""
    with engine.begin() as connection:
        connection.execute(connection_events.insert(), [event])
