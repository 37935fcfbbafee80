"""The read API under ``/api``: devices, readings, stats and dead letters."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from mqtthub.messages import DEVICE_ID_PATTERN
from mqtthub.store import queries
from mqtthub.store.database import Store
from mqtthub.web.runtime import Runtime

router = APIRouter()


def get_store(request: Request) -> Store:
    """The application's store."""
    store: Store = request.app.state.store
    return store


def get_runtime(request: Request) -> Runtime:
    """The application's live runtime state."""
    runtime: Runtime = request.app.state.runtime
    return runtime


StoreDep = Annotated[Store, Depends(get_store)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Limit = Annotated[int, Query(ge=1, le=10000, description="at most this many items")]
Offset = Annotated[int, Query(ge=0, description="skip this many items")]


class LatestValue(BaseModel):
    """The newest value of one metric."""

    value: float
    ts: str


class Device(BaseModel):
    """A device in the registry. Times are ISO 8601 UTC."""

    id: str
    status: Literal["online", "offline"]
    first_seen: str
    last_seen: str
    last_message_type: str
    status_changed_at: str
    status_reason: str | None
    heartbeat_interval: float | None
    heartbeat_timeout: float | None


class DeviceDetail(Device):
    """A device with its newest value of each metric."""

    latest: dict[str, LatestValue]


class PresenceEvent(BaseModel):
    """One presence transition with its reason."""

    at: str
    status: Literal["online", "offline"]
    reason: str
    detail: str


class ReadingOut(BaseModel):
    """One stored reading."""

    metric: str
    ts: str
    value: float


class DeadLetterOut(BaseModel):
    """A rejected message, with its reason; ``payload`` is the raw bytes as UTF-8 text."""

    id: int
    received_at: str
    topic: str
    reason: str
    detail: str
    device_id: str | None
    payload: str
    payload_base64: str
    payload_size: int


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a ``Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str | None, name: str) -> float | None:
    """Accept epoch seconds or ISO 8601 in query parameters."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"{name} must be epoch seconds or ISO 8601") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _device(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("first_seen", "last_seen", "status_changed_at"):
        row[key] = iso(row[key])
    return row


def _checked_id(device_id: str) -> str:
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise HTTPException(404, "no such device")
    return device_id


@router.get("/devices", response_model=list[Device], tags=["devices"])
def list_devices(
    store: StoreDep,
    status: Literal["online", "offline"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """All devices ordered by id; ``?status=online`` filters."""
    rows = queries.list_devices(store.engine, status=status, limit=limit, offset=offset)
    return [_device(row) for row in rows]


@router.get("/devices/{device_id}", response_model=DeviceDetail, tags=["devices"])
def get_device(device_id: str, store: StoreDep) -> dict[str, Any]:
    """One device: status, first and last seen, and ``latest`` value per metric."""
    row = queries.get_device(store.engine, _checked_id(device_id))
    if row is None:
        raise HTTPException(404, "no such device")
    row["latest"] = {m: {"value": v["value"], "ts": iso(v["ts"])} for m, v in row["latest"].items()}
    return _device(row)


@router.get("/devices/{device_id}/readings", response_model=list[ReadingOut], tags=["devices"])
def get_readings(
    device_id: str,
    store: StoreDep,
    metric: str | None = None,
    since: Annotated[str | None, Query(description="epoch seconds or ISO 8601")] = None,
    until: Annotated[str | None, Query(description="epoch seconds or ISO 8601")] = None,
    limit: Limit = 1000,
) -> list[dict[str, Any]]:
    """A device's readings, newest first."""
    rows = queries.device_readings(
        store.engine,
        _checked_id(device_id),
        metric=metric,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
        limit=limit,
    )
    return [{"metric": r["metric"], "ts": iso(r["ts"]), "value": r["value"]} for r in rows]


@router.get("/devices/{device_id}/events", response_model=list[PresenceEvent], tags=["devices"])
def get_device_events(
    device_id: str, store: StoreDep, limit: Limit = 100, offset: Offset = 0
) -> list[dict[str, Any]]:
    """A device's presence transitions (online/offline with the reason), newest first."""
    if queries.get_device(store.engine, _checked_id(device_id)) is None:
        raise HTTPException(404, "no such device")
    rows = queries.device_events(store.engine, device_id, limit=limit, offset=offset)
    for row in rows:
        row["at"] = iso(row["at"])
    return rows


@router.get("/connection", tags=["health"])
def get_connection(runtime: RuntimeDep) -> dict[str, Any]:
    """The MQTT connection now, its last 50 events (newest first) and counts by reason."""
    link = runtime.link()
    return {
        "state": link.phase,
        "reason": link.reason,
        "protocol": link.protocol,
        "broker": link.broker,
        "since": iso(link.since),
        **runtime.connection(),
    }


@router.get("/stats", tags=["health"])
def get_stats(store: StoreDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Message counters since start, queue depth and devices by status."""
    stats = runtime.stats.as_dict()
    stats["queue_depth"] = runtime.queue_depth()
    try:
        stats["devices"] = queries.count_devices(store.engine)
    except SQLAlchemyError:
        stats["devices"] = None  # the counters above still help while the database is down
    return stats


@router.get("/dead-letters", response_model=list[DeadLetterOut], tags=["dead letters"])
def get_dead_letters(
    store: StoreDep, reason: str | None = None, limit: Limit = 100, offset: Offset = 0
) -> list[dict[str, Any]]:
    """Rejected messages, newest first, with the reason and the raw payload."""
    rows = queries.list_dead_letters(store.engine, reason=reason, limit=limit, offset=offset)
    out = []
    for row in rows:
        payload = bytes(row.pop("payload"))
        row["received_at"] = iso(row["received_at"])
        row["payload"] = payload.decode("utf-8", errors="replace")
        row["payload_base64"] = base64.b64encode(payload).decode("ascii")
        out.append(row)
    return out
