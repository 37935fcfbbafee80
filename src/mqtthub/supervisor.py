"""Supervision of ``serve``'s long-running tasks: a task that ends on its own is a failure.

Each loop of the service (MQTT transport, writer, HTTP, downlink, stats) runs until
shutdown. If one of them raises or returns before that, the supervisor logs it with the
traceback, remembers which task failed (``/healthz`` then answers 503 naming it) and asks
the service to stop, which then exits non-zero so that systemd, Docker or Kubernetes
restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from mqtthub.errors import TaskFailedError

log = logging.getLogger("mqtthub")


class Supervisor:
    """Starts named tasks and reports the first that ends unexpectedly.

    Args:
        on_failure: called once, with the failure, when a task ends before :meth:`stopping`.
    """

    def __init__(self, *, on_failure: Callable[[TaskFailedError], None]) -> None:
        """Create an empty supervisor."""
        self.tasks: list[asyncio.Task[Any]] = []
        self.failure: TaskFailedError | None = None
        self._on_failure = on_failure
        self._stopping = False

    def start(self, name: str, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coroutine`` as the task ``name`` under supervision."""
        task = asyncio.create_task(coroutine, name=name)
        task.add_done_callback(self._ended)
        self.tasks.append(task)
        return task

    def stopping(self) -> None:
        """Shutdown has begun: tasks ending from now on are expected."""
        self._stopping = True

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if self._stopping or self.failure is not None:
            return
        if task.cancelled():
            cause: BaseException | None = None
            description = "was cancelled"
        else:
            cause = task.exception()
            description = (
                f"died: {type(cause).__name__}: {cause}" if cause else "ended without an error"
            )
        self.failure = TaskFailedError(task.get_name(), description)
        log.error(
            "task %s %s; stopping so that a supervisor restarts the service",
            task.get_name(),
            description,
            exc_info=cause,
        )
        self._on_failure(self.failure)
