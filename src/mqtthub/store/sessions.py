"""The ``mqtt_sessions`` table: per client id of ``serve``, what may be unacknowledged at
the broker and when it was last connected (issue 16; see ingest/redelivery.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from mqtthub.store.schema import mqtt_sessions

__all__ = [
    "SessionRecord",
    "clear_unacked",
    "load_session",
    "record_connected",
    "record_unacked",
]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What the previous run of a client id left.

    Attributes:
        unacked: the encoded (packet id, fingerprint) pairs (``redelivery.decode``).
        connected_at: when that client id was last connected (epoch), if ever.
    """

    unacked: bytes | None
    connected_at: float | None


def _upsert(connection: Connection, row: dict[str, Any]) -> None:
    insert = (sqlite.insert if connection.dialect.name == "sqlite" else postgresql.insert)(
        mqtt_sessions
    )
    statement = insert.values(row).on_conflict_do_update(
        index_elements=[mqtt_sessions.c.client_id],
        set_={key: value for key, value in row.items() if key != "client_id"},
    )
    connection.execute(statement)


def record_unacked(connection: Connection, client_id: str, unacked: bytes, now: float) -> None:
    """Store the pairs of a batch's window, in that batch's transaction (one statement)."""
    _upsert(connection, {"client_id": client_id, "unacked": unacked, "unacked_at": now})


def clear_unacked(engine: Engine, client_id: str, now: float) -> None:
    """Note that nothing of ``client_id`` is unacknowledged at the broker (a clean shutdown:
    the last PUBACKs went out before the DISCONNECT)."""
    with engine.begin() as connection:
        _upsert(connection, {"client_id": client_id, "unacked": b"", "unacked_at": now})


def record_connected(engine: Engine, client_id: str, now: float) -> None:
    """Note that ``client_id`` is connected at ``now`` (its own short transaction)."""
    with engine.begin() as connection:
        _upsert(connection, {"client_id": client_id, "connected_at": now})


def load_session(engine: Engine, client_id: str) -> SessionRecord | None:
    """The row of ``client_id``, or None (a fresh install, or a new client id)."""
    query = select(mqtt_sessions.c.unacked, mqtt_sessions.c.connected_at).where(
        mqtt_sessions.c.client_id == client_id
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    unacked = bytes(row.unacked) if row.unacked is not None else None
    return SessionRecord(unacked, row.connected_at)
