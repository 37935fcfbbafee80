"""Which worker leads: one PostgreSQL advisory lock among the workers sharing a database.

The leader alone runs the work that must happen once for all workers: heartbeat deadlines,
the downlink's housekeeping (task expiry, command time-outs), the alerts that come from the
clock (offline, no data, repeats), rollups and retention. The lock is held by a
session of its own; when the leader's process dies its session ends, the server frees the
lock and another worker takes it at its next attempt (every ``RETRY_S``). TCP keepalives
on that session make the server notice a leader whose machine vanished without a FIN
within about ``KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT`` seconds (see
``mqtthub.store.locks``; the server probes the other way with the same figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from sqlalchemy.engine import make_url

from mqtthub.store import locks

log = logging.getLogger("mqtthub.leader")
RETRY_S = 2.0


def libpq_url(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://...`` as the plain URL libpq takes."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


class Leadership:
    """Tries to hold the leader lock and tells whether this worker holds it now."""

    def __init__(self, database_url: str) -> None:
        """``database_url``: the workers' PostgreSQL (SQLAlchemy form)."""
        self._url = libpq_url(database_url)
        self._session: psycopg.Connection[tuple[object, ...]] | None = None
        self.leading = False

    async def run(self) -> None:
        """Keep trying to lead, and check the lock's session while leading, until cancelled."""
        try:
            while True:
                leading = await asyncio.to_thread(self._attempt)
                if leading != self.leading:
                    self.leading = leading
                    log.info(
                        "this worker %s",
                        "leads: it runs what happens once for all workers (heartbeat "
                        "deadlines, downlink and alert housekeeping, rollups and retention)"
                        if leading
                        else "no longer leads",
                    )
                await asyncio.sleep(RETRY_S)
        finally:
            await asyncio.to_thread(self.close)

    def _attempt(self) -> bool:
        """Take the lock, or check that the session holding it is alive (blocking)."""
        try:
            if self._session is None:
                self._session = psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=5,
                    keepalives=1,
                    keepalives_idle=locks.KEEPALIVE_IDLE_S,
                    keepalives_interval=locks.KEEPALIVE_INTERVAL_S,
                    keepalives_count=locks.KEEPALIVE_COUNT,
                    application_name="mqtthub-leader",
                    # The server notices a vanished leader as fast as the leader notices it.
                    options=locks.SERVER_KEEPALIVES,
                )
            if self.leading:
                self._session.execute("SELECT 1")
                return True
            row = self._session.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", locks.LEADER
            ).fetchone()
            return bool(row and row[0])
        except psycopg.Error as exc:
            if self.leading:
                log.warning("lost the leader lock's database session: %s", exc)
            self.close()
            return False

    def close(self) -> None:
        """End the lock's session (which frees the lock if held)."""
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(psycopg.Error):  # already gone
                session.close()
