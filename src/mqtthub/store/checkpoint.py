"""SQLite WAL checkpoints off the writer's commit path.

By default SQLite checkpoints inside the commit that fills the write-ahead log past 1,000
pages: that commit copies the log into the database and syncs it, and every message
waiting for it waits too (the p99 of publish-to-stored). mqtthub turns the automatic
checkpoint off on its connections (``PRAGMA wal_autocheckpoint=0``) and runs a PASSIVE
checkpoint from a connection of its own, in a thread of its own, once a second. PASSIVE
never blocks the writer or readers; it copies what no reader still needs, and the log is
reused from its start once everything has been copied.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("mqtthub.store")
INTERVAL_S = 1.0
#: After a checkpoint, SQLite truncates a larger log file to this size.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


class WalCheckpointer:
    """Checkpoints one SQLite database's write-ahead log every second until stopped."""

    def __init__(self, database: Path) -> None:
        """Prepare; :meth:`start` starts the thread."""
        self._database = database
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtthub-checkpoint", daemon=True)
        self._last_error: str | None = None

    def start(self) -> None:
        """Start checkpointing."""
        self._thread.start()

    def stop(self) -> None:
        """Checkpoint once more and end the thread."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        connection = sqlite3.connect(self._database, check_same_thread=False)
        try:
            connection.execute("PRAGMA busy_timeout=1000")
            connection.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            while not self._stopped.wait(INTERVAL_S):
                self._checkpoint(connection)
            self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # logged once per distinct error; tried again next time
            if str(exc) != self._last_error:
                log.warning("WAL checkpoint of %s failed: %s", self._database, exc)
            self._last_error = str(exc)
        else:
            self._last_error = None
