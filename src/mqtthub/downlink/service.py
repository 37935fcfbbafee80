"""The downlink at run time: publish tasks and commands, follow receipts and replies."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from mqtthub.downlink.states import RECEIPT_STATES, CommandState, TaskState
from mqtthub.downlink.topics import Route, Routed, command_topic, task_topic
from mqtthub.errors import StoreUnavailableError
from mqtthub.events import EventBus
from mqtthub.ingest.writer import ExecuteWrite
from mqtthub.store import downlink as db
from mqtthub.transport.base import Transport

log = logging.getLogger("mqtthub.downlink")


class Downlink:
    """Tasks to people and commands to devices over the service's MQTT connection."""

    def __init__(
        self,
        *,
        execute_write: ExecuteWrite,
        transport: Transport,
        events: EventBus,
        prefix: str,
        app_prefix: str,
        is_leader: Callable[[], bool] | None = None,
        shared: bool = False,
    ) -> None:
        """Write through the single writer (``execute_write``), publish through
        ``transport``; :meth:`run` times out and expires while ``is_leader()`` (so once
        among workers sharing the database); ``shared``: other workers hear the same
        receipts and replies."""
        self._write = execute_write
        self.transport = transport
        self.events = events
        self.prefix = prefix
        self.app_prefix = app_prefix
        self._is_leader = is_leader or (lambda: True)
        self._shared = shared

    async def post_task(
        self, *, recipient: str, title: str, body: str, expires_in: int | None
    ) -> dict[str, Any]:
        """Store a task and publish it; it stays ``queued`` until the app's receipt."""
        now = time.time()
        row: dict[str, Any] = {
            "id": secrets.token_hex(8),
            "recipient": recipient,
            "title": title,
            "body": body,
            "created_at": now,
            "expires_at": now + expires_in if expires_in else None,
        }
        await self._write(db.create_task, row)
        await self._publish_task({**row, "state": TaskState.QUEUED})
        task = await self._write(db.get_task, row["id"])
        assert task is not None
        return task

    async def _publish_task(self, task: dict[str, Any]) -> None:
        payload = {
            "task_id": task["id"],
            "title": task["title"],
            "body": task["body"],
            "created_at": task["created_at"],
            "expires_at": task["expires_at"],
        }
        expiry = None
        if task["expires_at"] is not None:
            expiry = max(1, int(task["expires_at"] - time.time()))
        topic = task_topic(self.app_prefix, task["recipient"], task["id"])
        if self.transport.publish(topic, json.dumps(payload).encode(), expiry=expiry):
            await self._write(db.count_publish, task["id"])
        else:
            log.warning("task %s queued: not connected to the broker now", task["id"])

    async def post_command(
        self, *, device_id: str, command: str, params: dict[str, Any], reply_within: float
    ) -> dict[str, Any]:
        """Publish a command to a device; it completes with the device's reply or times out."""
        now = time.time()
        row: dict[str, Any] = {
            "id": secrets.token_hex(8),
            "device_id": device_id,
            "command": command,
            "params": json.dumps(params),
            "created_at": now,
            "deadline": now + reply_within,
        }
        await self._write(db.create_command, row)
        payload = {"command_id": row["id"], "command": command, "params": params}
        if not self.transport.publish(
            command_topic(self.prefix, device_id), json.dumps(payload).encode()
        ):
            log.warning("command %s not sent: not connected to the broker now", row["id"])
        return {
            **row,
            "params": params,
            "state": CommandState.SENT,
            "replied_at": None,
            "reply": None,
        }

    async def post_commands(
        self, *, device_ids: list[str], command: str, params: dict[str, Any], reply_within: float
    ) -> list[dict[str, Any]]:
        """Send one command to each of ``device_ids``: stored in one transaction, then
        published device by device. Each result has the device's ``command_id``, or an
        ``error`` when it could not be published (it then times out like any other)."""
        now = time.time()
        encoded = json.dumps(params)
        rows: list[dict[str, Any]] = [
            {
                "id": secrets.token_hex(8),
                "device_id": device_id,
                "command": command,
                "params": encoded,
                "created_at": now,
                "deadline": now + reply_within,
            }
            for device_id in device_ids
        ]
        if rows:
            await self._write(db.create_commands, rows)
        results = []
        for row in rows:
            payload = {"command_id": row["id"], "command": command, "params": params}
            topic = command_topic(self.prefix, row["device_id"])
            sent = self.transport.publish(topic, json.dumps(payload).encode())
            results.append(
                {
                    "device_id": row["device_id"],
                    "command_id": row["id"],
                    "state": CommandState.SENT,
                    "error": None if sent else "not connected to the broker: not published",
                }
            )
        if any(result["error"] for result in results):
            log.warning("command %s: not connected to the broker, some not sent", command)
        return results

    async def handle(self, routed: Routed, payload: bytes) -> None:
        """A receipt, reply or app status arrived (stored before it is acknowledged).

        With several workers each one receives these; a receipt or reply changes a task or
        command only once (the first), so it is recorded once."""
        now = time.time()
        if routed.route is Route.TASK_RECEIPT:
            state = _receipt_state(payload)
            # With other workers, the one that stored it first may not be this one: tell
            # this worker's dashboards all the same.
            if (
                await self._write(db.receipt, routed.subject, routed.item, state, now)
                or self._shared
            ):
                self.events.publish("task", {"id": routed.item, "state": state})
        elif routed.route is Route.COMMAND_REPLY:
            body = payload[:4096].decode("utf-8", errors="replace")
            if await self._write(db.reply, routed.subject, routed.item, body, now) or self._shared:
                self.events.publish("command", {"id": routed.item, "state": CommandState.REPLIED})
        elif (
            routed.route is Route.APP_STATUS
            and payload.strip().lower() == b"online"
            and self._is_leader()  # every worker hears it; the leader re-sends
        ):
            await self._republish(routed.subject, now)

    async def _republish(self, recipient: str, now: float) -> None:
        """An app came online: send what it missed (it ignores task ids it has seen)."""
        for task in await self._write(db.pending_tasks, recipient, now):
            await self._publish_task(task)

    async def run(self) -> None:
        """Once a second: expire tasks, time out commands."""
        while True:
            await asyncio.sleep(1.0)
            if not self._is_leader():
                continue
            now = time.time()
            try:
                await self._write(db.expire_tasks, now)
                await self._write(db.time_out_commands, now)
            except StoreUnavailableError as exc:
                # The database is down: the writer reports that; try again next second.
                # Anything else is a bug and ends this task (the service is supervised).
                log.debug("downlink housekeeping failed: %s", exc)


def _receipt_state(payload: bytes) -> TaskState:
    """``delivered`` unless the receipt says ``{"state": "seen"}`` or ``{"state": "done"}``
    (any other payload, malformed or nested beyond what a parser takes, is a plain
    receipt)."""
    try:
        document = orjson.loads(payload or b"{}")
    except orjson.JSONDecodeError:
        return TaskState.DELIVERED
    state = document.get("state") if isinstance(document, dict) else None
    if isinstance(state, str) and state in RECEIPT_STATES:
        return TaskState(state)
    return TaskState.DELIVERED
