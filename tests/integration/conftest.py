"""Fixtures of the integration tests that use the store directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
