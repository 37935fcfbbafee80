"""The inbox's broker link: a :class:`~mqtthub.client.TaskListener` on its own thread.

The window's thread must never wait on the network, so the listener runs on an asyncio
loop in a background thread. Its callbacks are called on that thread: the window turns
them into Qt signals. Calls into the link (:meth:`Link.receipt`, :meth:`Link.stop`) are
handed to the loop thread-safely.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from mqtthub.client import TaskListener
from mqtthub.config import Settings
from mqtthub.transport.base import LinkState
from mqtthub.transport.history import ConnectionEvent

__all__ = ["Link"]

log = logging.getLogger("mqtthub.inbox")

CLOSE_TIMEOUT_S = 3.0  # how long quitting waits for the broker to see us go


class Link:
    """Runs the task listener of one recipient until :meth:`stop`."""

    def __init__(
        self,
        *,
        settings: Settings,
        recipient: str,
        on_task: Callable[[dict[str, Any]], None],
        on_receipt: Callable[[str, str], None],
        on_event: Callable[[ConnectionEvent], None],
        on_online: Callable[[], None],
        on_stopped: Callable[[BaseException | None], None],
    ) -> None:
        """Prepare the link; :meth:`start` connects.

        ``on_online`` is called each time the link is subscribed and announced; and
        ``on_stopped`` once when the listener ends, with its exception if it died.
        """
        self._loop = asyncio.new_event_loop()
        self._on_stopped = on_stopped
        self._running: asyncio.Task[None] | None = None
        self.listener = TaskListener(
            settings=settings,
            recipient=recipient,
            on_task=on_task,
            on_event=on_event,
            on_receipt=on_receipt,
            app_name="inbox",
            on_online=on_online,
            keeps_tasks=True,
        )
        self._thread = threading.Thread(target=self._run, name="mqtthub-inbox-link", daemon=True)
        #: True once :meth:`stop` was called: the listener's end is then expected.
        self.stopping = False

    @property
    def client_id(self) -> str:
        """This window's MQTT client id (unique per running copy)."""
        return self.listener.client_id

    def start(self) -> None:
        """Connect in the background."""
        self._thread.start()

    def state(self) -> tuple[LinkState, float | None]:
        """The link's phase now, and when the next attempt starts while waiting for one."""
        transport = self.listener.transport
        return transport.state, transport.next_attempt_at

    def receipt(self, task_id: str, state: str) -> None:
        """Send a receipt if connected (the broker's echo on ``.../ack`` confirms it)."""
        self._loop.call_soon_threadsafe(self.listener.receipt, task_id, state)

    def stop(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Say ``offline``, disconnect and end the thread: the listener is cancelled if it
        has not closed within ``timeout`` s (a broker that does not answer)."""
        self.stopping = True
        if self._thread.ident is None:  # never started
            return
        closing = self._close(timeout)
        try:
            asyncio.run_coroutine_threadsafe(closing, self._loop)
        except RuntimeError:  # the loop has ended already (the listener died)
            closing.close()
        self._thread.join(timeout + 1.0)
        if self._thread.is_alive():
            log.error("the broker link did not end within %.0f s", timeout + 1.0)

    async def _close(self, limit: float) -> None:
        try:
            async with asyncio.timeout(limit):
                await self.listener.close()
        except TimeoutError:
            log.warning("the broker did not let the link close within %.0f s", limit)
        finally:
            if self._running is not None:
                self._running.cancel()

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._running = self._loop.create_task(self.listener.run())
            self._loop.run_until_complete(self._running)
        except asyncio.CancelledError:
            if not self.stopping:
                error = RuntimeError("the broker link was cancelled")
        except BaseException as exc:  # reported to the window, which exits
            log.exception("the broker link stopped")
            error = exc
        finally:
            self._loop.close()
        self._on_stopped(error)
