"""The single writer: batches raw messages, commits each batch, then acknowledges it.

Batches close when they reach ``batch_size`` or when no more messages are waiting, so a
message never waits longer than the commit before it (group commit). Blocking database
work runs in one dedicated thread; the event loop only moves messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from mqtthub.logutil import RateLimitedLog
from mqtthub.messages import Reason, Rejected
from mqtthub.pipeline import Batch, Parsed, RawMessage, build_batch, parse_all
from mqtthub.stats import Stats
from mqtthub.store.database import Store

log = logging.getLogger("mqtthub.writer")
RETRY_CAP_S = 5.0


class BatchWriter:
    """Consumes the message queue and writes it to the store in batches."""

    def __init__(
        self,
        *,
        store: Store,
        queue: asyncio.Queue[RawMessage],
        stats: Stats,
        prefix: str,
        max_payload: int,
        auto_register: bool,
        batch_size: int,
    ) -> None:
        """Set up the writer; nothing runs until :meth:`run`."""
        self.store = store
        self.queue = queue
        self.stats = stats
        self.db_error: str | None = None
        self._prefix = prefix
        self._max_payload = max_payload
        self._auto_register = auto_register
        self._batch_size = batch_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtthub-writer")
        self._dead_letter_log = RateLimitedLog(log)

    async def run(self) -> None:
        """Write batches forever (cancel to stop; call :meth:`drain` to flush first)."""
        while True:
            messages = [await self.queue.get()]
            self._take_waiting(messages)
            await self._commit(messages)

    async def drain(self) -> None:
        """Write everything still queued (used on shutdown)."""
        while not self.queue.empty():
            messages: list[RawMessage] = []
            self._take_waiting(messages)
            await self._commit(messages)

    def close(self) -> None:
        """Stop the writer thread."""
        self._executor.shutdown(wait=True)

    def _take_waiting(self, messages: list[RawMessage]) -> None:
        while len(messages) < self._batch_size:
            try:
                messages.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                return

    async def _commit(self, messages: list[RawMessage]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        delay = 0.25
        while True:
            try:
                batch = await loop.run_in_executor(self._executor, self._write, messages)
                break
            except (OperationalError, InterfaceError) as exc:
                self._database_down(exc, len(messages), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_S)
            except SQLAlchemyError as exc:
                log.error(
                    "batch rejected by the database (%s); writing its messages one by one",
                    _first_line(exc),
                )
                batch = await loop.run_in_executor(self._executor, self._write_each, messages)
                break
        if self.db_error is not None:
            log.info("database available again")
            self.db_error = None
        self._account(batch, time.perf_counter() - started)
        for message in messages:
            if message.ack is not None and not message.ack.done():
                message.ack.set_result(None)

    def _database_down(self, exc: DBAPIError, pending: int, delay: float) -> None:
        reason = _first_line(exc)
        if self.db_error is None:
            log.error(
                "database unavailable: %s; holding %d messages unacknowledged, retrying",
                reason,
                pending,
            )
        else:
            log.debug("database still unavailable; retrying in %.2f s", delay)
        self.db_error = reason

    def _parse(self, messages: list[RawMessage]) -> list[Parsed]:
        return parse_all(messages, prefix=self._prefix, max_payload=self._max_payload)

    def _write(self, messages: list[RawMessage]) -> Batch:
        parsed = self._parse(messages)
        batch = build_batch(parsed, is_registered=self._registry_check(parsed))
        self.store.write(batch)
        return batch

    def _write_each(self, messages: list[RawMessage]) -> Batch:
        """Fallback after a rejected batch: store what the database takes, dead-letter the rest."""
        total = Batch()
        for item in self._parse(messages):
            single = build_batch([item], is_registered=self._registry_check([item]))
            try:
                self.store.write(single)
            except (OperationalError, InterfaceError):
                raise
            except SQLAlchemyError as exc:
                rejected = Rejected(Reason.STORE_REJECTED, _first_line(exc))
                single = build_batch([Parsed(item.raw, rejected)])
                self.store.write(single)
            total.accepted_by_kind.update(single.accepted_by_kind)
            total.dead_letters.extend(single.dead_letters)
        return total

    def _registry_check(self, parsed: list[Parsed]) -> Callable[[str], bool] | None:
        if self._auto_register:
            return None
        ids = {item.result.device_id for item in parsed if not isinstance(item.result, Rejected)}
        return self.store.registered(ids).__contains__

    def _account(self, batch: Batch, seconds: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.last_commit_seconds = seconds
        stats.messages_stored += batch.accepted
        stats.by_type.update(batch.accepted_by_kind)
        for dead in batch.dead_letters:
            stats.dead_letters += 1
            stats.by_reason[dead.reason] += 1
            self._dead_letter_log.warning(
                "dead letter on %s: %s (%s)", dead.topic[:200], dead.reason, dead.detail
            )


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
