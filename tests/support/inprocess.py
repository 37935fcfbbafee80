"""The HTTP app built in-process on a real SQLite store, driven through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from mqtthub.events import EventBus, RecentMessages
from mqtthub.messages import Status
from mqtthub.stats import Stats
from mqtthub.store.database import Store
from mqtthub.transport.base import LinkPhase, LinkState
from mqtthub.web.app import create_app
from mqtthub.web.runtime import Runtime

__all__ = ["InProcessApi", "in_process_api", "simple_runtime"]

BASE_URL = "http://127.0.0.1:8000"


def simple_runtime() -> Runtime:
    """Live state of a service that is connected and idle; PATCH/DELETE find no device.

    It writes nothing until :func:`in_process_api` binds it to a store.
    """

    async def execute_write(_operation: Any, /, *_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("no store: use in_process_api() for writes")

    async def forget(_device_id: str) -> bool:
        return False

    async def configure(_device_id: str, _values: dict[str, Any], _status: Status | None) -> bool:
        return False

    link = LinkState(LinkPhase.CONNECTED, None, "MQTT 5", time.time(), "mqtt://127.0.0.1:1883")
    return Runtime(
        link=lambda: link,
        db_error=lambda: None,
        failure=lambda: None,
        queue_depth=lambda: 0,
        stats=Stats(),
        connection=lambda: {"client_id": "test", "events": [], "counts": {}},
        events=EventBus(),
        recent=RecentMessages(),
        forget_device=forget,
        configure_device=configure,
        execute_write=execute_write,
    )


class InProcessApi:
    """Synchronous requests to the app, each run on one private event loop."""

    def __init__(self, client: httpx.AsyncClient, runner: asyncio.Runner, store: Store) -> None:
        """Wrap an async client bound to the app; ``store`` is the app's database."""
        self.client = client
        self.store = store
        self._runner = runner

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request and return the complete response."""
        return self._runner.run(self.client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def run(self, coroutine: Any) -> Any:
        """Run any coroutine (e.g. a streaming request) on the client's event loop."""
        return self._runner.run(coroutine)


@contextmanager
def in_process_api(
    tmp_path: Path, *, runtime: Runtime | None = None, **app_options: Any
) -> Iterator[InProcessApi]:
    """``create_app`` on a fresh SQLite database under ``tmp_path``.

    Args:
        tmp_path: where the database file goes.
        runtime: the live state to report; :func:`simple_runtime` by default. Its writes
            are bound to the new store.
        app_options: further keyword arguments of ``create_app`` (``api_token`` is None
            unless given).
    """
    store = Store.open(f"sqlite:///{tmp_path / 'api.db'}")
    runtime = runtime or simple_runtime()

    async def execute_write(operation: Any, /, *args: Any, **kwargs: Any) -> Any:
        # A stand-in for the service's single writer: the same store operations, one thread.
        return await asyncio.to_thread(store.read, operation, *args, **kwargs)

    runtime.execute_write = execute_write
    app = create_app(store=store, runtime=runtime, **{"api_token": None, **app_options})
    with asyncio.Runner() as runner:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        try:
            yield InProcessApi(client, runner, store)
        finally:
            runner.run(client.aclose())
            store.close()
