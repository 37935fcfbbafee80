"""Which kind of message a topic carries, for the downlink side (pure, no I/O).

Device telemetry: ``{prefix}/{id}/{status|sensor|heartbeat}``. Downlink:

* ``{prefix}/{id}/command`` -- commands mqtthub publishes (its own echo is ignored);
* ``{prefix}/{id}/command/{command_id}/reply`` -- a device's reply;
* ``{app}/tasks/{recipient}/{task_id}`` -- tasks mqtthub publishes to people;
* ``{app}/tasks/{recipient}/{task_id}/ack`` -- an app's receipt;
* ``{app}/status/{recipient}`` -- an app's ``online`` / ``offline`` (its will).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Route(StrEnum):
    """Where a message goes."""

    DEVICE = "device"
    OWN_COMMAND = "own_command"
    COMMAND_REPLY = "command_reply"
    OWN_TASK = "own_task"
    TASK_RECEIPT = "task_receipt"
    APP_STATUS = "app_status"


@dataclass(frozen=True, slots=True)
class Routed:
    """A topic's route and the ids in it."""

    route: Route
    subject: str = ""  # device id or recipient
    item: str = ""  # command id or task id


_TELEMETRY = Routed(Route.DEVICE)


def route(topic: str, *, prefix: str, app_prefix: str) -> Routed:
    """Classify ``topic``; anything not downlink is device telemetry."""
    levels = topic.split("/")
    if topic.startswith(app_prefix + "/"):
        rest = levels[app_prefix.count("/") + 1 :]
        if len(rest) == 4 and rest[0] == "tasks" and rest[3] == "ack":
            return Routed(Route.TASK_RECEIPT, rest[1], rest[2])
        if len(rest) == 3 and rest[0] == "tasks":
            return Routed(Route.OWN_TASK, rest[1], rest[2])
        if len(rest) == 2 and rest[0] == "status":
            return Routed(Route.APP_STATUS, rest[1])
    if topic.startswith(prefix + "/"):
        rest = levels[prefix.count("/") + 1 :]
        if len(rest) == 2 and rest[1] == "command":
            return Routed(Route.OWN_COMMAND, rest[0])
        if len(rest) == 4 and rest[1] == "command" and rest[3] == "reply":
            return Routed(Route.COMMAND_REPLY, rest[0], rest[2])
    return _TELEMETRY


def subscriptions(prefix: str, app_prefix: str) -> tuple[str, ...]:
    """The downlink filters ``serve`` subscribes to, besides device telemetry."""
    return (
        f"{prefix}/+/command/+/reply",
        f"{app_prefix}/tasks/+/+/ack",
        f"{app_prefix}/status/+",
    )


def task_topic(app_prefix: str, recipient: str, task_id: str) -> str:
    """Where a task for ``recipient`` is published."""
    return f"{app_prefix}/tasks/{recipient}/{task_id}"


def command_topic(prefix: str, device_id: str) -> str:
    """Where commands for a device are published."""
    return f"{prefix}/{device_id}/command"
