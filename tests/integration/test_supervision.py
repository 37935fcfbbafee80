"""Supervised tasks: when one of serve's loops dies, the service says so and exits non-zero.

The service runs in-process here (real Mosquitto, real SQLite, real HTTP port) so that a
failure can be injected into one task; everything else is the production code.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtthub.config import load_settings
from mqtthub.errors import TaskFailedError
from mqtthub.ingest.writer import BatchWriter
from mqtthub.service import Service
from support.mosquitto import MosquittoBroker, mosquitto_pub
from support.ports import free_port
from support.serve import wait_until


class InjectedFailureError(RuntimeError):
    """The failure this test injects (a stand-in for a bug in a task)."""


async def _healthz_when_stopping(monkeypatch: pytest.MonkeyPatch, port: int) -> dict[str, Any]:
    """Record /healthz as the service begins its shutdown (the HTTP server still runs)."""
    seen: dict[str, Any] = {}
    original = Service._shutdown

    async def shutdown(self: Service, *args: Any) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/healthz")
        seen.update(status=response.status_code, body=response.json())
        await original(self, *args)

    monkeypatch.setattr(Service, "_shutdown", shutdown)
    return seen


def test_a_dying_writer_turns_healthz_503_and_ends_the_service(
    mosquitto: MosquittoBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The writer raises on its first batch: the traceback is logged, /healthz answers 503
    naming the writer, and run() ends with TaskFailedError (serve exits 1)."""
    monkeypatch.chdir(tmp_path)

    async def broken_commit(self: BatchWriter, messages: list[Any]) -> None:
        raise InjectedFailureError("injected into the writer")

    monkeypatch.setattr(BatchWriter, "_commit", broken_commit)
    port = free_port()
    settings = load_settings(
        broker_url=f"mqtt://127.0.0.1:{mosquitto.port}",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        http_port=port,
    )

    async def scenario() -> dict[str, Any]:
        seen = await _healthz_when_stopping(monkeypatch, port)
        service = Service(settings)
        running = asyncio.create_task(service.run())
        await asyncio.to_thread(
            wait_until, lambda: _status(port) == 200, timeout=20, what="serve healthy"
        )
        await asyncio.to_thread(mosquitto_pub, mosquitto, "devices/d1/sensor", '{"t": 1}')
        with pytest.raises(TaskFailedError) as failed:
            await asyncio.wait_for(running, timeout=30)
        assert failed.value.task == "writer"
        return seen

    with caplog.at_level(logging.ERROR, logger="mqtthub"):
        seen = asyncio.run(scenario())
    assert seen["status"] == 503
    assert seen["body"]["failed_task"].startswith("task writer died: InjectedFailureError")
    failure_logs = [r for r in caplog.records if "task writer died" in r.getMessage()]
    assert failure_logs
    assert failure_logs[0].exc_info is not None  # the traceback is in the log


def _status(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code
    except httpx.TransportError:
        return None
