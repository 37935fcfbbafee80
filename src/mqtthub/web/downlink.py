"""Downlink and provisioning routes: tasks, device commands, device registration."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from mqtthub.broker_config import (
    device_publish_topics,
    hash_password,
    new_password,
    provisioning_refusal,
)
from mqtthub.downlink.states import CommandState, TaskState
from mqtthub.errors import StoreConflictError
from mqtthub.store import downlink as db
from mqtthub.store import queries
from mqtthub.web.api import ONE_LINE, Limit, Offset, RuntimeDep, StoreDep, checked_id, iso

router = APIRouter()
Recipient = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class TaskIn(BaseModel):
    """A task for a person's desktop app."""

    model_config = ConfigDict(extra="forbid")

    recipient: Recipient
    title: Annotated[str, Field(min_length=1, max_length=200, pattern=ONE_LINE)]
    body: Annotated[str, Field(max_length=10000, pattern=r"^[^\x00]*$")] = ""
    expires_in: Annotated[int, Field(gt=0, le=30 * 86400)] | None = None


class TaskOut(BaseModel):
    """A task and where it is in its life: queued -> delivered -> seen -> done, or expired.

    Each ``*_at`` is when the task reached that state; a receipt may skip states (``done``
    straight from ``queued``), whose times then stay null.
    """

    id: str
    recipient: str
    title: str
    body: str
    state: TaskState
    created_at: str
    expires_at: str | None
    delivered_at: str | None
    seen_at: str | None
    done_at: str | None
    publishes: int


class CommandIn(BaseModel):
    """A command for a device."""

    model_config = ConfigDict(extra="forbid")

    command: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    params: dict[str, Any] = Field(
        default={},
        description=f"a JSON object, nested at most {db.MAX_PARAMS_DEPTH} deep, "
        f"at most {db.MAX_PARAMS_BYTES} bytes as JSON",
    )
    timeout: Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)] = 30.0

    @field_validator("params")
    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if db.nesting_depth(params) > db.MAX_PARAMS_DEPTH:
            raise ValueError(f"params nest deeper than {db.MAX_PARAMS_DEPTH} levels")
        if len(json.dumps(params).encode()) > db.MAX_PARAMS_BYTES:
            raise ValueError(f"params are larger than {db.MAX_PARAMS_BYTES} bytes as JSON")
        return params


class CommandOut(BaseModel):
    """A command and its outcome: sent -> replied, or timeout."""

    id: str
    device_id: str
    command: str
    params: dict[str, Any] | None = Field(
        description="as sent; null when the stored value cannot be read back"
    )
    state: CommandState
    created_at: str
    deadline: str
    replied_at: str | None
    reply: str | None


#: Most devices one ``POST /api/commands`` may address.
MAX_BATCH_DEVICES = 1000
LabelKey = Annotated[str, Field(min_length=1, max_length=64, pattern=ONE_LINE)]
LabelValue = Annotated[str, Field(max_length=256, pattern=ONE_LINE)]


class BatchCommandIn(CommandIn):
    """A command for every device whose labels include all of ``labels``."""

    labels: Annotated[
        dict[LabelKey, LabelValue],
        Field(
            min_length=1,
            max_length=64,
            description="the label selector: devices with all of these labels (at least one; "
            "an empty selector would address the whole fleet)",
        ),
    ]
    dry_run: bool = Field(default=False, description="only list the matching devices; send nothing")


class BatchResult(BaseModel):
    """What happened for one device: its command's id, or why it was not sent."""

    device_id: str
    command_id: str | None
    state: CommandState | None
    error: str | None


class BatchOut(BaseModel):
    """The devices the selector matched and each one's result."""

    matched: int
    sent: int
    failed: int
    dry_run: bool
    results: list[BatchResult]


class DeviceIn(BaseModel):
    """A device to register before it connects."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            description="ASCII letters, digits, '_', '-' and '.'; not '.' or '..', not the "
            "backend's MQTT username, 'mqtthub' or anything starting with 'mqtthub-'.",
        ),
    ]
    name: Annotated[str, Field(max_length=128, pattern=ONE_LINE)] | None = None


class Provisioned(BaseModel):
    """A registered device's MQTT credentials: the password is shown this once."""

    device_id: str
    username: str
    password: str
    broker_url: str
    publish_topics: list[str]  # exactly what the generated broker ACL lets it publish to
    command_topic: str


#: A task's times, shown in ISO 8601.
TASK_TIMES = ("created_at", "expires_at", "delivered_at", "seen_at", "done_at")


def _times(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if row.get(key) is not None:
            row[key] = iso(row[key])
    return row


def _downlink(runtime: Any) -> Any:
    if runtime.downlink is None:
        raise HTTPException(503, "downlink not available")
    return runtime.downlink


@router.post("/tasks", response_model=TaskOut, status_code=201, tags=["tasks"])
async def post_task(task: TaskIn, runtime: RuntimeDep) -> dict[str, Any]:
    """Store a task and publish it at QoS 1 to ``mqtt_app/tasks/{recipient}/{task_id}``."""
    created = await _downlink(runtime).post_task(
        recipient=task.recipient, title=task.title, body=task.body, expires_in=task.expires_in
    )
    return _times(created, *TASK_TIMES)


@router.get("/tasks", response_model=list[TaskOut], tags=["tasks"])
def get_tasks(
    store: StoreDep,
    recipient: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = None,
    state: TaskState | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Tasks, newest first; ``state`` filters by one state (queued, delivered, seen, done,
    expired)."""
    rows = store.read(db.list_tasks, recipient=recipient, state=state, limit=limit, offset=offset)
    return [_times(r, *TASK_TIMES) for r in rows]


@router.post(
    "/devices/{device_id}/commands", response_model=CommandOut, status_code=201, tags=["devices"]
)
async def post_command(device_id: str, command: CommandIn, runtime: RuntimeDep) -> dict[str, Any]:
    """Publish a command to ``devices/{id}/command``; the device replies on
    ``devices/{id}/command/{command_id}/reply``."""
    sent = await _downlink(runtime).post_command(
        device_id=checked_id(device_id),
        command=command.command,
        params=command.params,
        reply_within=command.timeout,
    )
    return _times(sent, "created_at", "deadline", "replied_at")


@router.post("/commands", response_model=BatchOut, tags=["devices"])
async def post_batch_command(
    batch: BatchCommandIn, store: StoreDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Send a command to every device whose labels include all of ``labels`` (each gets
    its own command id, followed like a single command: ``GET /api/devices/{id}/commands``).

    422 when the selector matches more than 1,000 devices (nothing is sent then).
    """
    downlink = _downlink(runtime)
    matched = await run_in_threadpool(store.read, queries.devices_matching, batch.labels)
    if len(matched) > MAX_BATCH_DEVICES:
        raise HTTPException(
            422,
            f"the selector matches {len(matched)} devices; one call may address at most "
            f"{MAX_BATCH_DEVICES}: narrow the selector with another label (nothing was sent)",
        )
    if batch.dry_run:
        results = [
            {"device_id": d, "command_id": None, "state": None, "error": None} for d in matched
        ]
    else:
        results = await downlink.post_commands(
            device_ids=matched,
            command=batch.command,
            params=batch.params,
            reply_within=batch.timeout,
        )
    failed = sum(1 for result in results if result["error"])
    return {
        "matched": len(matched),
        "sent": 0 if batch.dry_run else len(results) - failed,
        "failed": failed,
        "dry_run": batch.dry_run,
        "results": results,
    }


@router.get("/devices/{device_id}/commands", response_model=list[CommandOut], tags=["devices"])
def get_commands(
    device_id: str, store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """A device's commands, newest first."""
    rows = store.read(db.list_commands, checked_id(device_id), limit=limit)
    return [_times(r, "created_at", "deadline", "replied_at") for r in rows]


@router.post("/devices", response_model=Provisioned, status_code=201, tags=["devices"])
async def provision_device(
    device: DeviceIn, store: StoreDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Register a device and return its MQTT credentials once (only a hash is kept).

    422 when the id cannot be a broker username (it would break the broker's password
    file or ACL, or is the backend's own name) or a dashboard URL segment.
    """
    refusal = provisioning_refusal(device.id, reserved=runtime.reserved_ids)
    if refusal is not None:
        raise HTTPException(422, refusal)
    password = new_password()
    row = {
        "id": device.id,
        "name": device.name,
        "status": "offline",
        "first_seen": 0.0,
        "last_seen": 0.0,
        "last_message_type": "none",
        "status_changed_at": 0.0,
        "status_reason": None,
        "broker_endpoint": runtime.device_endpoint,
        "mqtt_password_hash": hash_password(password),
    }
    try:
        created = await runtime.execute_write(db.provision, row)
    except StoreConflictError:
        created = False
    if not created:
        raise HTTPException(409, f"device {device.id} already exists")
    prefix = runtime.topic_prefix
    return {
        "device_id": device.id,
        "username": device.id,
        "password": password,
        "broker_url": runtime.device_endpoint,
        "publish_topics": device_publish_topics(prefix, device.id),
        "command_topic": f"{prefix}/{device.id}/command",
    }
