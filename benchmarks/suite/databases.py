"""The databases serve stores into: a fresh SQLite file, or a PostgreSQL database made for the run.

:func:`fresh_store` opens mqtthub's ``Store`` on one in this process (benchmarks of the store).

PostgreSQL: ``MQTTHUB_BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
is the admin connection; each run creates ``mqtthub_bench_<pid>_<n>`` and drops it again.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from mqtthub.store.database import Store

PG_ADMIN_URL = os.environ.get("MQTTHUB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_names = itertools.count(1)


@dataclass(frozen=True)
class Database:
    """Where one serve instance stores: its URL for serve and a way to query it."""

    kind: str  # "sqlite" or "postgresql"
    url: str  # MQTTHUB_DATABASE_URL
    sqlite_path: Path | None = None
    pg_url: str | None = None

    def scalar(self, query: str, *params: Any) -> Any:
        """The first column of the first row of ``query`` (``?`` placeholders)."""
        if self.sqlite_path is not None:
            with contextlib.closing(sqlite3.connect(self.sqlite_path)) as connection:
                row = connection.execute(query, params).fetchone()
        else:
            assert self.pg_url is not None
            with psycopg.connect(self.pg_url) as connection:
                row = connection.execute(query.replace("?", "%s"), params).fetchone()
        return None if row is None else row[0]

    def files_mib(self) -> tuple[float, float]:
        """Sizes of a SQLite database file and of its write-ahead log, MiB (0 if absent)."""
        assert self.sqlite_path is not None
        sizes = []
        for path in (self.sqlite_path, self.sqlite_path.with_name(self.sqlite_path.name + "-wal")):
            try:
                sizes.append(path.stat().st_size / 2**20)
            except FileNotFoundError:
                sizes.append(0.0)
        return sizes[0], sizes[1]

    def first_received(self) -> float | None:
        """Serve's receive time of the earliest reading (readings without ``ts`` carry it)."""
        value = self.scalar("SELECT min(ts) FROM readings")
        return None if value is None else float(value)


@contextlib.contextmanager
def provision(kind: str, workdir: Path) -> Iterator[Database]:
    """A fresh, empty database of ``kind``; a PostgreSQL one is dropped on exit."""
    if kind == "sqlite":
        path = workdir / "data" / "mqtthub.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        yield Database(kind, f"sqlite:///{path}", sqlite_path=path)
        return
    name = f"mqtthub_bench_{os.getpid()}_{next(_names)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield Database(kind, f"{base}/{name}", pg_url=f"{base}/{name}")
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def fresh_store(kind: str) -> Iterator[Store]:
    """A migrated ``Store`` in this process on a fresh database of ``kind``, closed on exit.

    Only ``Store.open`` and ``Store.close`` are used, so older checkouts run it too.
    """
    from mqtthub.store.database import Store

    with tempfile.TemporaryDirectory() as folder, provision(kind, Path(folder)) as database:
        store = Store.open(database.url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            yield store
        finally:
            store.close()


def postgres_version() -> str:
    """``SHOW server_version`` of the benchmark's PostgreSQL, or the error."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as connection:
            row = connection.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        return f"unavailable ({str(exc).splitlines()[0]})"
    return str(row[0]) if row else "unknown"
