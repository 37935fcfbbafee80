"""Alerts at run time: evaluate every stored batch and the clock, store, notify.

The writer hands each committed batch to :meth:`Alerts.after_batch` (on the event loop);
the evaluator looks at its samples and dead letters through an index by metric, so
ingest pays a dictionary lookup per value (see ``benchmarks/alerts_cost.py``). Offline
and no-data conditions come from the stored devices, by the leader when several workers
share the database; each worker evaluates the metric conditions of the messages it stores.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from mqtthub.alerts.notify import Notifier
from mqtthub.alerts.rules import Change, Evaluator
from mqtthub.errors import StoreError
from mqtthub.events import EventBus
from mqtthub.ingest.writer import ExecuteWrite
from mqtthub.pipeline import Batch
from mqtthub.store import alerts as db
from mqtthub.store.database import Store

log = logging.getLogger("mqtthub.alerts")
TICK_S = 1.0
FACTS_EVERY_S = 5.0  # how often offline / no-data conditions read the devices


class Alerts:
    """The service's alert rules, evaluated as data arrives."""

    def __init__(
        self,
        *,
        store: Store,
        execute_write: ExecuteWrite,
        notifier: Notifier,
        events: EventBus,
        is_leader: Callable[[], bool],
    ) -> None:
        """Read through ``store``, write through ``execute_write``; nothing runs until
        :meth:`load` and :meth:`run`."""
        self._store = store
        self._write = execute_write
        self.notifier = notifier
        self._events = events
        self._is_leader = is_leader
        self.evaluator = Evaluator()
        self._rules: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Future[None]] = set()

    async def load(self) -> None:
        """Read the rules, the devices' labels and the open alerts."""
        await self.reload()
        labels = await asyncio.to_thread(self._store.read, db.device_labels)
        for device_id, device_labels in labels.items():
            self.evaluator.set_labels(device_id, device_labels)
        self.evaluator.restore_firing(await asyncio.to_thread(self._store.read, db.open_alerts))

    async def reload(self) -> None:
        """Read the rules again (after one was created, changed or deleted)."""
        rows = await asyncio.to_thread(self._store.read, db.list_rules)
        self._rules = {row["id"]: row for row in rows}
        self.evaluator.set_rules(db.rule_of(row) for row in rows if row["enabled"])

    def set_labels(self, device_id: str, labels: Mapping[str, str]) -> None:
        """A device's labels changed (rules by label follow at once)."""
        self.evaluator.set_labels(device_id, labels)

    def after_batch(self, batch: Batch) -> None:
        """Evaluate a committed batch (on the event loop; cheap when no rule applies)."""
        changes = self.evaluator.readings(batch.samples)
        if batch.dead_letters:
            changes += self.evaluator.dead_letters(
                (dead.device_id, dead.received_at) for dead in batch.dead_letters
            )
        if changes:
            self._spawn(self._apply(changes))

    async def run(self) -> None:
        """Once a second: what the clock decides; repeated notifications (the leader)."""
        next_facts = 0.0
        try:
            while True:
                await asyncio.sleep(TICK_S)
                now = time.time()
                facts = None
                if self._is_leader() and now >= next_facts and self.evaluator.rules:
                    next_facts = now + FACTS_EVERY_S
                    facts = await self._read(db.device_facts)
                changes = self.evaluator.tick(now, facts)
                if changes:
                    await self._apply(changes)
                if self._is_leader():
                    for alert in await self._due(now):
                        rule = self._rules.get(alert["rule_id"])
                        if rule is not None:
                            repeat = {**alert, "at": now, "detail": "still firing"}
                            self._spawn(self.notifier.send(repeat, rule))
        finally:
            for task in self._tasks:
                task.cancel()
            await self.notifier.close()

    async def _read(self, query: Callable[..., Any]) -> Any:
        try:
            return await asyncio.to_thread(self._store.read, query)
        except StoreError as exc:  # the writer reports outages; try again later
            log.debug("alerts could not read the database: %s", exc)
            return None

    async def _due(self, now: float) -> list[dict[str, Any]]:
        try:
            return await self._write(db.due_repeats, now)
        except StoreError as exc:
            log.debug("alerts could not read repeats: %s", exc)
            return []

    async def _apply(self, changes: list[Change]) -> None:
        """Store the changes; notify and tell dashboards about those that really happened."""
        try:
            changed = await self._write(db.apply_changes, changes)
        except StoreError as exc:
            log.warning("could not store %d alert changes: %s", len(changes), exc)
            return
        for alert in changed:
            rule = self._rules.get(alert["rule_id"])
            log.info(
                "alert %s on %s is %s: %s",
                rule["name"] if rule else alert["rule_id"],
                alert["device_id"],
                alert["state"],
                alert["detail"],
            )
            self._events.publish("alert", alert)
            if rule is not None:
                self._spawn(self.notifier.send(alert, rule))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("alert work failed", exc_info=task.exception())
