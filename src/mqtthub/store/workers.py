"""The ``workers`` table: each running worker's counters, for answers about all of them."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from mqtthub.store.schema import workers

#: A worker that has not refreshed its row for this long is not counted (it stores its
#: counters every 2 s).
STALE_S = 15.0


def record_worker(
    engine: Engine, worker_id: str, *, started_at: float, now: float, leader: bool, stats: Any
) -> None:
    """Insert or refresh this worker's row (its counters as JSON)."""
    insert = (sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert)(workers)
    row = {
        "id": worker_id,
        "started_at": started_at,
        "updated_at": now,
        "leader": leader,
        "stats": orjson.dumps(stats, option=orjson.OPT_NON_STR_KEYS).decode(),
    }
    statement = insert.values(row).on_conflict_do_update(
        index_elements=[workers.c.id],
        set_={key: value for key, value in row.items() if key != "id"},
    )
    with engine.begin() as connection:
        connection.execute(statement)


def live_workers(engine: Engine) -> list[dict[str, Any]]:
    """Workers whose row was refreshed in the last ``STALE_S`` seconds, with their ``stats``."""
    since = time.time() - STALE_S
    query = select(workers).where(workers.c.updated_at >= since).order_by(workers.c.id)
    with engine.connect() as connection:
        return [
            {**row._asdict(), "stats": orjson.loads(row.stats)} for row in connection.execute(query)
        ]
