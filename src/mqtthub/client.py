"""``mqtthub.client``: the parts a desktop or terminal app needs to receive tasks.

A well-behaved task client, built on mqtthub's own connection layer::

    listener = TaskListener(
        settings=load_settings(),          # broker URL, TLS, credentials as for serve
        recipient="61016968",
        on_task=lambda task: print(task["title"]),
    )
    await listener.run()                   # until listener.close()

What it does for you, and what hand-rolled desktop MQTT services get wrong:

* a **unique client id per running instance** (``mqtthub-listen-<recipient>-<random>``),
  so two copies of the app never kick each other off the broker;
* reconnects with **jittered exponential backoff** (no fixed 5 s timer), keepalive 60 s,
  and reports every connect and disconnect with its reason (``on_event``);
* announces itself: ``online`` on ``{app}/status/{recipient}`` once subscribed, and a
  last will ``offline`` there, so the backend re-sends the tasks it missed;
* **each task once**: tasks arrive on ``{app}/tasks/{recipient}/{task_id}``; the task ids
  already shown are kept in ``state_dir`` so a re-sent task is not shown again, and a
  receipt ``{"state": "delivered"}`` goes to ``.../{task_id}/ack`` for every copy (so the
  backend stops re-sending);
* **receipts people give**: :meth:`TaskListener.receipt` sends ``seen`` or ``done``; with
  ``on_receipt`` the listener also follows the receipts of the recipient's other copies
  (on ``.../{task_id}/ack``), so a task marked done on one machine shows done on another.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mqtthub.config import Settings, build_ssl_context
from mqtthub.transport.backoff import Backoff
from mqtthub.transport.client import MqttTransport
from mqtthub.transport.connection import Ack
from mqtthub.transport.history import ConnectionEvent

__all__ = ["TaskListener", "check_recipient"]

log = logging.getLogger("mqtthub.client")


def check_recipient(recipient: str) -> None:
    """Raise ValueError unless ``recipient`` is one topic level (no ``/``, ``+``, ``#``)."""
    if not recipient or any(c in recipient for c in "/+#"):
        raise ValueError(f"a recipient is one topic level (no /, + or #): {recipient!r}")


class TaskListener:
    """Receives the tasks of one recipient and acknowledges them."""

    def __init__(
        self,
        *,
        settings: Settings,
        recipient: str,
        on_task: Callable[[dict[str, Any]], None],
        on_event: Callable[[ConnectionEvent], None] | None = None,
        state_dir: Path | None = None,
        on_receipt: Callable[[str, str], None] | None = None,
        app_name: str = "listen",
        on_online: Callable[[], None] | None = None,
        keeps_tasks: bool = False,
    ) -> None:
        """Prepare the listener; :meth:`run` connects.

        Args:
            settings: broker URL, TLS, credentials and MQTT version (as for ``serve``);
                ``app_prefix``.
            recipient: whose tasks to receive (e.g. an employee number).
            on_task: called once per new task with its JSON object.
            on_event: called for every connect, refusal and disconnect.
            state_dir: where to remember the task ids already shown (default ~/.mqtthub).
            on_receipt: if given, also receive every receipt sent for this recipient's
                tasks (by any copy of the app, this one included) as ``(task_id, state)``.
            app_name: the middle part of the client id (``mqtthub-<app_name>-...``).
            on_online: called each time the listener is subscribed and has said ``online``.
            keeps_tasks: the app stores each task itself and sends ``delivered`` with
                :meth:`receipt` once it is stored (the inbox): then every copy that arrives
                goes to ``on_task``, nothing is kept in ``state_dir`` and no receipt is
                sent on arrival, so a task the app could not store is re-sent by the
                server at the next ``online`` instead of being lost.
        """
        check_recipient(recipient)
        self.recipient = recipient
        self._prefix = settings.app_prefix
        self._on_task = on_task
        self._on_receipt = on_receipt
        self._on_online = on_online
        self._keeps_tasks = keeps_tasks
        state_dir = state_dir or Path.home() / ".mqtthub"
        self._seen_path = state_dir / f"seen-tasks-{recipient}.txt"
        self._seen = set() if keeps_tasks else self._load_seen()
        self._status_topic = f"{self._prefix}/status/{recipient}"
        topics = [f"{self._prefix}/tasks/{recipient}/+"]
        if on_receipt is not None:
            topics.append(f"{self._prefix}/tasks/{recipient}/+/ack")
        self.transport = MqttTransport(
            endpoint=settings.broker,
            ssl_context=build_ssl_context(settings) if settings.broker.tls else None,
            client_id=f"mqtthub-{app_name}-{recipient}-{os.urandom(3).hex()}",
            topics=tuple(topics),
            handler=self._on_message,
            keepalive=settings.keepalive,
            backoff=Backoff(stable_after=settings.keepalive),
            on_event=on_event,
            mqtt_version=settings.mqtt_version,
            will=(self._status_topic, b"offline"),
            on_subscribed=self._announce,
        )

    @property
    def client_id(self) -> str:
        """This instance's MQTT client id."""
        return self.transport.client_id

    async def run(self) -> None:
        """Stay connected and receive tasks until :meth:`close`."""
        await self.transport.run()

    async def close(self) -> None:
        """Say ``offline`` and disconnect."""
        self.transport.publish(self._status_topic, b"offline")
        await self.transport.close()

    def receipt(self, task_id: str, state: str) -> bool:
        """Send a receipt (``delivered``, ``seen`` or ``done``) for one of this recipient's
        tasks; False when not connected now (send it again once connected)."""
        topic = f"{self._prefix}/tasks/{self.recipient}/{task_id}/ack"
        return self.transport.publish(topic, json.dumps({"state": state}).encode())

    async def _announce(self) -> None:
        self.transport.publish(self._status_topic, b"online")
        if self._on_online is not None:
            self._on_online()

    def _on_message(
        self, topic: str, payload: bytes, _qos: int, _retain: bool, _dup: bool, ack: Ack | None
    ) -> None:
        try:
            if topic.endswith("/ack"):
                self._take_receipt(topic, payload)
            else:
                self._take_task(topic, payload)
        finally:
            if ack is not None:
                self.transport.acknowledge([ack])

    def _take_task(self, topic: str, payload: bytes) -> None:
        task_id = topic.rsplit("/", 1)[-1]
        try:
            task = json.loads(payload)
        except ValueError:
            log.warning("ignoring a task that is not JSON on %s", topic)
            return
        if not isinstance(task, dict):
            return
        if self._keeps_tasks:
            self._on_task(task)
            return
        if task_id not in self._seen:
            self._remember(task_id)
            self._on_task(task)
        self.receipt(task_id, "delivered")

    def _take_receipt(self, topic: str, payload: bytes) -> None:
        task_id = topic.split("/")[-2]
        try:
            state = json.loads(payload).get("state")
        except (ValueError, AttributeError):
            return
        if isinstance(state, str) and self._on_receipt is not None:
            self._on_receipt(task_id, state)

    def _load_seen(self) -> set[str]:
        try:
            return set(self._seen_path.read_text().split())
        except OSError:
            return set()

    def _remember(self, task_id: str) -> None:
        self._seen.add(task_id)
        self._seen_path.parent.mkdir(parents=True, exist_ok=True)
        with self._seen_path.open("a") as seen:
            seen.write(task_id + "\n")
