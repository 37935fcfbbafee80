"""The single writer: batches raw messages, commits each batch, then acknowledges it.

Batches close when they reach ``batch_size`` or when no more messages are waiting, so a
message never waits longer than the commit before it (group commit). Blocking database
work and the presence engine run in one dedicated thread; the event loop only moves
messages. While the database is unavailable the batch is retried and nothing is
acknowledged, so the bounded queue fills and the broker holds the rest.

When several workers share the device stream (``worker_id`` set), the database decides
presence: each batch locks its devices, reads their stored presence into the engine,
applies its messages and commits in one transaction, with its live events for the other
workers' dashboards (``store.notify``); heartbeat deadlines are expired by the leader only.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Connection, Engine

from mqtthub.errors import StoreError, StoreUnavailableError
from mqtthub.events import EventBus, RecentMessages
from mqtthub.ingest.redelivery import UnackedWindow, batch_pairs
from mqtthub.logutil import RateLimitedLog
from mqtthub.messages import Accepted, Kind, Reason, Rejected, Status
from mqtthub.metrics import Metrics
from mqtthub.pipeline import Batch, Parsed, RawMessage, build_batch, internal_error, parse_all
from mqtthub.presence import PresenceEngine, Transition
from mqtthub.profiles import Profiles
from mqtthub.profiles.base import MetricInfo
from mqtthub.stats import Stats
from mqtthub.store.database import Store
from mqtthub.store.errors import translated
from mqtthub.store.notify import Event, notify
from mqtthub.store.sessions import SessionRecord, load_session, record_unacked

log = logging.getLogger("mqtthub.writer")
presence_log = logging.getLogger("mqtthub.presence")
RETRY_CAP_S = 5.0
KNOWN_INFO_LIMIT = 100_000  # (device, metric) units remembered to skip rewriting them
TICK_S = 0.25
T = TypeVar("T")
P = ParamSpec("P")


class ExecuteWrite(Protocol):
    """``BatchWriter.execute_write`` as others hold it."""

    def __call__(
        self, operation: Callable[Concatenate[Engine, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]:
        """Run ``operation(engine, *args, **kwargs)`` in the writer's thread."""
        ...


class BatchWriter:
    """Consumes the message queue and writes it to the store in batches."""

    def __init__(
        self,
        *,
        store: Store,
        queue: asyncio.Queue[RawMessage],
        stats: Stats,
        presence: PresenceEngine,
        prefix: str,
        max_payload: int,
        auto_register: bool,
        batch_size: int,
        redelivery_window: float,
        on_taken: Callable[[], None] | None = None,
        acknowledge: Callable[[list[Any]], None] | None = None,
        events: EventBus | None = None,
        recent: RecentMessages | None = None,
        metrics: Metrics | None = None,
        worker_id: str | None = None,
        is_leader: Callable[[], bool] | None = None,
        profiles: Profiles | None = None,
        subscribed: Sequence[str] = (),
        follow_topics: Callable[[list[str]], None] | None = None,
        on_committed: Callable[[Batch], None] | None = None,
        session_id: str | None = None,
    ) -> None:
        """Set up the writer; nothing runs until :meth:`run`.

        ``on_taken`` is called each time a batch was taken off the queue (backpressure);
        ``acknowledge`` receives the ``ack`` handles of each committed batch's messages.
        ``worker_id``: set when other workers write the same devices (see the module's
        docstring); ``is_leader`` then tells whether this worker expires heartbeat deadlines.
        ``profiles`` read the messages (None: mqtthub's own parser); topics they start
        following that ``subscribed`` does not cover yet go to ``follow_topics``.
        ``on_committed`` sees every committed batch (alert rules), on the event loop.
        ``session_id`` (serve's MQTT client id): each batch records, in its transaction,
        the QoS 1 messages whose PUBACK may not have reached the broker yet (``unacked``),
        so a redelivery without DUP after a crash is recognised (ingest/redelivery.py).
        """
        self.store = store
        self.queue = queue
        self.stats = stats
        self.presence = presence
        self.db_error: str | None = None
        self._prefix = prefix
        self._max_payload = max_payload
        self._auto_register = auto_register
        self._batch_size = batch_size
        self._redelivery_window = redelivery_window
        self._on_taken = on_taken or (lambda: None)
        self._acknowledge = acknowledge or (lambda _acks: None)
        self._stopping = False
        self.events = events or EventBus()
        self.recent = recent or RecentMessages()
        self._metrics = metrics
        self._worker_id = worker_id
        self._profiles = profiles
        self._subscribed = list(subscribed)
        self._follow_topics = follow_topics or (lambda _topics: None)
        self._new_topics: list[str] = []
        self._known_info: dict[tuple[str, str], MetricInfo] = {}
        self.on_committed = on_committed or (lambda _batch: None)
        self._shared = worker_id is not None
        self._session_id = session_id
        #: QoS 1 messages committed whose PUBACK may not have reached the broker.
        self.unacked = UnackedWindow()
        #: What the previous run of this client id left (None: none, or no session_id).
        self.previous_session: SessionRecord | None = None
        self._is_leader = is_leader or (lambda: True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtthub-writer")
        self._dead_letter_log = RateLimitedLog(log)
        self._presence_log = RateLimitedLog(presence_log, limit=20, level=logging.INFO)

    async def load(self) -> None:
        """Seed the presence engine from the stored devices."""
        states = await self._in_thread(self.store.presence_states)
        for device_id, state in states.items():
            self.presence.load(device_id, state)
        log.info("presence loaded for %d devices", len(states))
        if self._session_id is not None:
            record = await self._in_thread(self.store.read, load_session, self._session_id)
            self.previous_session = record
            if record is not None:
                self.unacked = UnackedWindow(record.unacked)

    async def run(self) -> None:
        """Write batches and expire presence deadlines until :meth:`stop`."""
        next_tick = time.monotonic() + TICK_S
        while not self._stopping:
            messages: list[RawMessage] = []
            try:
                async with asyncio.timeout(max(0.0, next_tick - time.monotonic())):
                    messages.append(await self.queue.get())
            except TimeoutError:
                pass
            self._take_waiting(messages)
            if messages:
                await self._commit(messages)
            if time.monotonic() >= next_tick:
                await self._expire()
                next_tick = time.monotonic() + TICK_S

    def stop(self) -> None:
        """Finish the batch in hand and leave :meth:`run` (within one tick)."""
        self._stopping = True

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
                break
        self._on_taken()

    async def _in_thread(self, function: Callable[..., T], *args: object) -> T:
        """Run ``function`` in the writer's thread, database errors as ``StoreError``."""

        def run() -> T:
            with translated():
                return function(*args)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def execute_write(
        self, operation: Callable[Concatenate[Engine, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``operation(engine, ...)`` in the writer's thread: every write of the service
        (tasks, receipts, commands, provisioning, connection events) goes through here, one
        at a time, between ingest batches.

        Raises:
            StoreError: the database failed (``StoreUnavailableError`` while it is down).
        """
        return await self._in_thread(functools.partial(self.store.read, operation, *args, **kwargs))

    async def _retrying(self, function: Callable[..., T], *args: object) -> T:
        """Run ``function`` in the writer thread until the database takes it."""
        delay = 0.25
        while True:
            try:
                return await self._in_thread(function, *args)
            except StoreUnavailableError as exc:
                self._database_down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_S)

    def _database_up(self) -> None:
        if self.db_error is not None:
            log.info("database available again")
            self.db_error = None

    async def _commit(self, messages: list[RawMessage]) -> None:
        started = time.perf_counter()
        try:
            batch = await self._retrying(self._write, messages)
        except Exception:
            log.exception(
                "could not write a batch of %d messages; writing them one by one", len(messages)
            )
            kept = [message for message in messages if await self._commit_alone(message)]
            self._acknowledge([message.ack for message in kept if message.ack is not None])
        else:
            self._acknowledge([message.ack for message in messages if message.ack is not None])
            self._database_up()
            self._account(batch, time.perf_counter() - started)
        self.unacked.acknowledged()
        if self._new_topics:  # read after the writer thread finished with the batch
            topics, self._new_topics = self._new_topics, []
            self._follow_topics(topics)

    async def _commit_alone(self, message: RawMessage) -> bool:
        """Write one message; if even that fails, keep it as a dead letter saying why.

        Returns:
            False when the database took neither: the message stays unacknowledged.
        """
        started = time.perf_counter()
        try:
            batch = await self._retrying(self._write, [message])
        except Exception as exc:
            rejection = (
                Rejected(Reason.STORE_REJECTED, str(exc))
                if isinstance(exc, StoreError)
                else internal_error(exc)
            )
            batch = build_batch([Parsed(message, rejection)], presence=PresenceEngine())
            try:
                await self._retrying(self.store.write, batch)
            except Exception:
                log.exception(
                    "left a message on %s unacknowledged: the database takes neither it nor "
                    "its dead letter; the broker redelivers it on the next session",
                    message.topic[:200],
                )
                return False
        self._database_up()
        self._account(batch, time.perf_counter() - started)
        return True

    def _write(self, messages: list[RawMessage]) -> Batch:
        """Prepare and store one batch in one transaction (writer thread).

        If anything fails, the presence engine is put back as it was, so a retry applies
        each message once.
        """
        batch: Batch | None = None
        encoded = batch_pairs(messages) if self._session_id is not None else b""
        try:
            with self.store.transaction() as connection:
                batch = self._prepare(messages, connection)
                self.store.write_batch(connection, batch)
                if encoded:
                    window = self.unacked.with_batch(encoded)
                    record_unacked(connection, self._session_id or "", window, time.time())
                if self._worker_id is not None:
                    notify(connection, self._worker_id, batch_events(batch))
        except BaseException:
            if batch is not None:
                self.presence.restore(batch.presence_before)
            raise
        if encoded:
            self.unacked.committed(encoded)
        if len(self._known_info) > KNOWN_INFO_LIMIT:
            self._known_info.clear()
        self._known_info.update(batch.metric_info)
        if self._profiles is not None:
            new = self._profiles.new_topics(self._subscribed)
            self._subscribed += new
            self._new_topics += new
        return batch

    def _prepare(self, messages: list[RawMessage], connection: Connection) -> Batch:
        """Parse, look up what needs the database, then apply presence (writer thread)."""
        parsed = parse_all(
            messages, prefix=self._prefix, max_payload=self._max_payload, profiles=self._profiles
        )
        if self._shared:
            ids = {p.result.device_id for p in parsed if isinstance(p.result, Accepted)}
            self._reload(connection, sorted(ids))
        is_registered = None
        if not self._auto_register:
            ids = {p.result.device_id for p in parsed if isinstance(p.result, Accepted)}
            is_registered = self.store.registered(ids).__contains__
        duplicates = self._redelivered(parsed) if any(m.dup for m in messages) else set()
        batch = build_batch(
            parsed,
            presence=self.presence,
            is_registered=is_registered,
            already_stored=lambda item: id(item) in duplicates,
        )
        if batch.metric_info:  # units and names rarely change: write only what did
            known = self._known_info
            batch.metric_info = {k: v for k, v in batch.metric_info.items() if known.get(k) != v}
        return batch

    def _redelivered(self, parsed: list[Parsed]) -> set[int]:
        """Redelivered messages without their own ts whose readings are stored already, in
        the database or earlier in this batch (the ``id`` of each such item)."""
        duplicates: set[int] = set()
        earlier: set[tuple[str, Kind, frozenset[tuple[str, float]]]] = set()
        for item in parsed:
            result = item.result
            if not isinstance(result, Accepted) or result.timed:
                continue
            values = frozenset((metric, value) for metric, value, _ts in result.readings)
            key = (result.device_id, result.kind, values)
            if item.raw.dup and (key in earlier or self._stored_before(item.raw, result)):
                duplicates.add(id(item))
            earlier.add(key)
        return duplicates

    def _stored_before(self, raw: RawMessage, result: Accepted) -> bool:
        """Were the readings of this redelivered message without a ts stored already?"""
        since = raw.received_at - self._redelivery_window
        return self.store.has_readings(result.device_id, result.readings, since)

    def _reload(self, connection: Connection, device_ids: list[str]) -> None:
        """Lock ``device_ids`` for this transaction and load their stored presence."""
        stored = self.store.lock_presence(connection, device_ids)
        for device_id in device_ids:
            state = stored.get(device_id)
            if state is None:
                self.presence.devices.pop(device_id, None)
                continue
            if state.learned_interval is not None:
                # Heartbeats are spread over workers: keep learning from the stored interval.
                state.intervals.append(state.learned_interval)
            self.presence.load(device_id, state)

    async def _expire(self) -> None:
        if self._shared:
            if not self._is_leader():
                return
            transitions = await self._retrying(self._expire_shared, time.time())
        else:
            transitions = await self._in_thread(self.presence.expire, time.time())
            if transitions:
                await self._retrying(self.store.write_transitions, transitions)
        if transitions:
            self._database_up()
            self._log_transitions(transitions)

    def _expire_shared(self, now: float) -> list[Transition]:
        """Expire deadlines from the stored presence (the leader, for all workers): find
        the candidates without locks, then lock, reload and expire those."""
        candidates = PresenceEngine(
            default_timeout=self.presence.default_timeout,
            missed_intervals=self.presence.missed_intervals,
        )
        for device_id, state in self.store.presence_states(online_only=True).items():
            candidates.load(device_id, state)
        due = sorted(t.device_id for t in candidates.expire(now))
        if not due:
            return []
        with self.store.transaction() as connection:
            self._reload(connection, due)
            transitions = self.presence.expire(now, due)
            if transitions:
                self.store.write_transitions(transitions, connection)
        return transitions

    def _database_down(self, exc: StoreUnavailableError) -> None:
        reason = str(exc)
        if self.db_error is None:
            log.error(
                "database unavailable: %s; holding %d queued messages unacknowledged, retrying",
                reason,
                self.queue.qsize(),
            )
        self.db_error = reason

    def _account(self, batch: Batch, seconds: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.last_commit_seconds = seconds
        stats.messages_stored += batch.stored
        stats.by_type.update(batch.accepted_by_kind)
        for dead in batch.dead_letters:
            stats.dead_letters += 1
            stats.by_reason[dead.reason] += 1
            self._dead_letter_log.log(
                "dead letter on %s: %s (%s)", dead.topic[:200], dead.reason, dead.detail
            )
        self._log_transitions(batch.transitions)
        self.on_committed(batch)
        if self._metrics is not None:
            self._metrics.batch_size.observe(batch.stored + len(batch.dead_letters))
            self._metrics.commit_seconds.observe(seconds)
        self._publish(batch)

    def _publish(self, batch: Batch) -> None:
        """Remember recent raw messages and, if a dashboard listens, tell it what changed."""
        recent = self.recent
        for raw, message in batch.accepted:
            recent.add(message.device_id, raw.received_at, raw.topic, raw.payload)
        if self.events.subscribers:
            for kind, data in batch_events(batch):
                self.events.publish(kind, data)

    async def forget(self, device_id: str) -> bool:
        """Delete a device and its data (in the writer's thread, so presence stays consistent)."""

        def forget_now() -> bool:
            self.presence.devices.pop(device_id, None)
            return self.store.delete_device(device_id)

        deleted = await self._in_thread(forget_now)
        self.recent.forget(device_id)
        if deleted:
            self.events.publish("device_deleted", {"id": device_id})
        return deleted

    async def configure(
        self, device_id: str, values: dict[str, Any], status: Status | None
    ) -> bool:
        """Update a device's name, labels or heartbeat timeout, and optionally set its
        status by hand (reason ``manual``)."""

        def configure_now() -> tuple[bool, Transition | None]:
            found = (
                self.store.update_device(device_id, values)
                if values
                else bool(self.store.registered([device_id]))
            )
            if not found:
                return False, None
            with self.store.transaction() as connection:
                if self._shared:
                    self._reload(connection, [device_id])
                state = self.presence.devices.get(device_id)
                if state is None:
                    # A provisioned device that never connected has no presence yet.
                    return True, None
                if "heartbeat_timeout" in values:
                    state.heartbeat_timeout = values["heartbeat_timeout"]
                change = None
                if status is not None:
                    change = self.presence.set_manual(device_id, status, time.time())
                    if change is not None:
                        self.store.write_transitions([change], connection)
            return True, change

        found, change = await self._in_thread(configure_now)
        if change is not None:
            self._log_transitions([change])
            self.events.publish(
                "device", {"id": device_id, "status": str(change.status), "status_reason": "manual"}
            )
        return found

    def _log_transitions(self, transitions: list[Transition]) -> None:
        for change in transitions:
            self._presence_log.log(
                "device %s is %s (%s)%s",
                change.device_id,
                change.status,
                change.reason,
                f": {change.detail}" if change.detail else "",
            )


def batch_events(batch: Batch) -> list[Event]:
    """The live events a committed batch causes: one ``device`` event per device (status,
    last seen, the batch's latest values) and one ``dead_letter`` per rejected message."""
    latest: dict[str, dict[str, dict[str, float]]] = {}
    for device_id, ts, metrics in batch.samples:
        values = latest.setdefault(device_id, {})
        for metric, value in metrics.items():
            values[metric] = {"value": value, "ts": ts}
    reasons = {t.device_id: str(t.reason) for t in batch.transitions}
    events: list[Event] = []
    for device_id, update in batch.devices.items():
        event: dict[str, Any] = {
            "id": device_id,
            "status": str(update.status),
            "last_seen": update.last_seen,
            "last_message_type": str(update.last_message_type),
            "latest": latest.get(device_id, {}),
        }
        if device_id in reasons:
            event["status_reason"] = reasons[device_id]
        events.append(("device", event))
    for dead in batch.dead_letters:
        events.append(("dead_letter", {"reason": str(dead.reason), "topic": dead.topic}))
    return events
