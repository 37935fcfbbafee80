"""Shared pytest fixtures: real Mosquitto brokers and TLS material for integration tests.

The Mosquitto binaries are required. If they are missing the whole run stops with exit
status 1 instead of skipping the integration tests, so a green run always means the broker
tests really ran.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Unpack

import psycopg
import pytest

from support.certs import TlsFiles, make_tls_files
from support.mosquitto import (
    CLIENT_TOOLS,
    MOSQUITTO_BINARY,
    BrokerOptions,
    MosquittoBroker,
    MosquittoFactory,
)

_MISSING_TOOLS = [
    *([] if MOSQUITTO_BINARY else ["mosquitto"]),
    *(tool for tool in CLIENT_TOOLS if shutil.which(tool) is None),
]
"""Mosquitto programs not found at import time; reported by :func:`pytest_configure`."""


def pytest_configure(config: pytest.Config) -> None:
    """Stop the test run with exit status 1 if the Mosquitto programs are missing.

    (``pytest.exit`` raised while a conftest is imported turns into a conftest import error
    with status 4, so the check made at import time is reported from this hook.)
    """
    if _MISSING_TOOLS:
        pytest.exit(
            f"Mosquitto programs not found: {', '.join(_MISSING_TOOLS)}. Integration tests need "
            "a real broker and its clients: run `make test`, or install them with "
            "`apt-get install mosquitto mosquitto-clients`.",
            returncode=1,
        )


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MQTTHUB_*/MQTT_* variable or .env file from the developer's machine leaks in:
    the environment without them, ``tmp_path`` as the working directory (returned).

    Modules whose code reads settings like ``serve`` (config, doctor) use it for every
    test: ``pytestmark = pytest.mark.usefixtures("clean_environment")``.
    """
    for name in list(os.environ):
        if name.upper().startswith(("MQTTHUB_", "MQTT_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[MosquittoFactory]:
    """Create and start brokers on demand; every broker is stopped after the test.

    Each broker gets its own directory under ``tmp_path`` (``mosquitto-1``, ``mosquitto-2``,
    ...) holding its config, log and persistence files.
    """
    brokers: list[MosquittoBroker] = []

    def create(**options: Unpack[BrokerOptions]) -> MosquittoBroker:
        broker = MosquittoBroker(workdir=tmp_path / f"mosquitto-{len(brokers) + 1}", **options)
        brokers.append(broker)
        broker.start()
        return broker

    yield create
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> MosquittoBroker:
    """A running broker on a free port that accepts anonymous clients over plain TCP."""
    return mosquitto_factory()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A fresh CA, a server certificate for localhost/127.0.0.1 and an unrelated CA."""
    return make_tls_files(tmp_path / "tls")


PG_ADMIN_URL = os.environ.get("MQTTHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_database() -> Iterator[tuple[psycopg.Connection[Any], str, str]]:
    """Create a PostgreSQL database; yield (admin connection, name, SQLAlchemy URL); drop it."""
    name = f"mqtthub_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for these tests and is not reachable at {PG_ADMIN_URL}: "
            f"{exc}. Start it (pg_ctlcluster ... main start) or set MQTTHUB_TEST_PG."
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        try:
            yield admin, name, f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database shared by this test session, dropped afterwards."""
    with fresh_database() as (_admin, _name, url):
        yield url


@pytest.fixture
def postgres_database() -> Iterator[tuple[psycopg.Connection[Any], str, str]]:
    """A fresh PostgreSQL database of this test's own: (admin connection, name, URL)."""
    with fresh_database() as database:
        yield database
