"""The read API under ``/api``: devices, readings, stats and dead letters."""

from __future__ import annotations

import base64
import json
import math
import os
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from mqtthub.errors import StoreError
from mqtthub.messages import DEVICE_ID_PATTERN, METRIC_PATTERN, Status
from mqtthub.stats import combine
from mqtthub.store import queries
from mqtthub.store.database import Store
from mqtthub.timefmt import iso_utc
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
Offset = Annotated[int, Query(ge=0, le=10**9, description="skip this many items")]
#: Latest time a query may name: 9999-12-31T23:59:59Z, the last second ISO 8601 can write.
MAX_TIME = 253402300799.0
#: A metric name as devices may send it (see mqtthub.messages).
METRIC = f"^{METRIC_PATTERN.pattern}$"
#: One line of text: no NUL or other control characters (PostgreSQL refuses NUL).
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
Metric = Annotated[str, Query(pattern=METRIC, description="metric name")]
Time = Annotated[str | None, Query(max_length=64, description="epoch seconds or ISO 8601")]


class LatestValue(BaseModel):
    """The newest value of one metric, with its unit and display name when firmware
    announced them (Home Assistant discovery, Tasmota, Homie, a mapping file)."""

    value: float
    ts: str
    unit: str | None = None
    name: str | None = None


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
    name: str | None
    labels: dict[str, str]


class DeviceDetail(Device):
    """A device with its newest value of each metric."""

    latest: dict[str, LatestValue]


class DeviceListItem(Device):
    """A device in a list; ``latest`` only with ``?latest=true``."""

    latest: dict[str, LatestValue] | None = None


class DevicePatch(BaseModel):
    """Fields an operator may change; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=128, pattern=ONE_LINE)] | None = None
    labels: (
        Annotated[
            dict[
                Annotated[str, Field(min_length=1, max_length=64, pattern=ONE_LINE)],
                Annotated[str, Field(max_length=256, pattern=ONE_LINE)],
            ],
            Field(max_length=64, description="at most 64 labels"),
        ]
        | None
    ) = None
    heartbeat_timeout: Annotated[float, Field(gt=0, le=30 * 86400, allow_inf_nan=False)] | None = (
        None
    )
    status: Literal["online", "offline"] | None = None


class SeriesPoint(BaseModel):
    """One bucket of a downsampled series."""

    ts: str
    min: float
    avg: float
    max: float
    count: int


class RecentMessage(BaseModel):
    """A raw message as received (payload as UTF-8 text, at most 2 KiB)."""

    received_at: str
    topic: str
    payload: str


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


#: :func:`~mqtthub.timefmt.iso_utc` with a cache: the API renders the same times often.
iso = lru_cache(maxsize=65536)(iso_utc)


def parse_time(value: str | None, name: str) -> float | None:
    """Accept epoch seconds or ISO 8601 in query parameters, from 1970 to the year 9999.

    Raises:
        HTTPException: 422 naming the parameter for anything else (NaN and infinities too).
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            seconds = moment.timestamp()
        except (ValueError, OverflowError):
            seconds = math.nan
    if not 0 <= seconds <= MAX_TIME:  # also false for NaN
        raise HTTPException(
            422, f"{name} must be epoch seconds or ISO 8601 between 1970 and the year 9999"
        )
    return seconds


def _device(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("first_seen", "last_seen", "status_changed_at"):
        row[key] = iso(row[key])
    row["labels"] = json.loads(row["labels"]) if row.get("labels") else {}
    if "latest" in row:
        row["latest"] = {m: {**v, "ts": iso(v["ts"])} for m, v in row["latest"].items()}
    return row


def checked_id(device_id: str) -> str:
    """``device_id`` from a URL; 404 when it cannot be a device id."""
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise HTTPException(404, "no such device")
    return device_id


@router.get("/devices", response_model=list[DeviceListItem], tags=["devices"])
def list_devices(
    store: StoreDep,
    status: Literal["online", "offline"] | None = None,
    q: Annotated[
        str | None, Query(max_length=64, pattern=ONE_LINE, description="id or name contains")
    ] = None,
    latest: Annotated[bool, Query(description="include each device's latest values")] = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Devices ordered by id; filter by ``status`` and ``q``. ``X-Total-Count`` has the total."""
    rows, total = store.read(
        queries.list_devices,
        status=status,
        search=q,
        limit=limit,
        offset=offset,
        with_latest=latest,
    )
    # Serialised directly: validating 5,000 devices against the model costs more than the
    # query (the model above still documents the shape in OpenAPI).
    return Response(
        orjson.dumps([_device(row) for row in rows], option=orjson.OPT_NON_STR_KEYS),
        media_type="application/json",
        headers={"X-Total-Count": str(total)},
    )


@router.get("/devices/{device_id}", response_model=DeviceDetail, tags=["devices"])
def get_device(device_id: str, store: StoreDep) -> dict[str, Any]:
    """One device: status, first and last seen, and ``latest`` value per metric."""
    row = store.read(queries.get_device, checked_id(device_id))
    if row is None:
        raise HTTPException(404, "no such device")
    return _device(row)


def encode_cursor(ts: float, metric: str) -> str:
    """An opaque cursor for the reading (ts, metric): URL-safe, the time exact."""
    return base64.urlsafe_b64encode(orjson.dumps([ts, metric])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (ts, metric) of a cursor :func:`encode_cursor` made.

    Raises:
        HTTPException: 422 for anything else.
    """
    try:
        ts, metric = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(ts, int | float) and not isinstance(ts, bool) and isinstance(metric, str):
            return float(ts), metric
    except (ValueError, TypeError):
        pass
    raise HTTPException(422, "cursor is not one this API gave: use X-Next-Cursor as it came")


@router.get(
    "/devices/{device_id}/readings",
    response_model=list[ReadingOut],
    tags=["devices"],
    responses={
        200: {
            "headers": {
                "X-Next-Cursor": {"description": "pass as ?cursor= for the next page"},
                "Link": {"description": 'the next page\'s URL, rel="next"'},
            }
        }
    },
)
def get_readings(
    device_id: str,
    store: StoreDep,
    request: Request,
    response: Response,
    metric: Annotated[str | None, Query(pattern=METRIC, description="metric name")] = None,
    since: Time = None,
    until: Time = None,
    limit: Limit = 1000,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="X-Next-Cursor of the previous page: continue there"),
    ] = None,
) -> list[dict[str, Any]]:
    """A device's readings, newest first (metrics by name at one time). When more follow,
    ``X-Next-Cursor`` (and a ``Link`` header with ``rel="next"``) says where the next page
    starts: pass it as ``cursor`` with the same filters. Pages never overlap or skip a
    reading, also while new readings arrive."""
    rows = store.read(
        queries.device_readings,
        checked_id(device_id),
        metric=metric,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
        limit=limit + 1,  # one more: is there a next page?
        after=decode_cursor(cursor) if cursor is not None else None,
    )
    if len(rows) > limit:
        del rows[limit:]
        following = encode_cursor(rows[-1]["ts"], rows[-1]["metric"])
        response.headers["X-Next-Cursor"] = following
        next_url = request.url.include_query_params(cursor=following)
        response.headers["Link"] = f'<{next_url.path}?{next_url.query}>; rel="next"'
    return [{"metric": r["metric"], "ts": iso(r["ts"]), "value": r["value"]} for r in rows]


@router.get("/devices/{device_id}/events", response_model=list[PresenceEvent], tags=["devices"])
def get_device_events(
    device_id: str, store: StoreDep, limit: Limit = 100, offset: Offset = 0
) -> list[dict[str, Any]]:
    """A device's presence transitions (online/offline with the reason), newest first."""
    if store.read(queries.get_device, checked_id(device_id)) is None:
        raise HTTPException(404, "no such device")
    rows = store.read(queries.device_events, device_id, limit=limit, offset=offset)
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


@router.get("/devices/{device_id}/series", response_model=list[SeriesPoint], tags=["devices"])
def get_series(
    device_id: str,
    store: StoreDep,
    metric: Metric,
    since: Annotated[
        str | None, Query(max_length=64, description="epoch seconds or ISO 8601; default 1 h ago")
    ] = None,
    until: Annotated[
        str | None, Query(max_length=64, description="epoch seconds or ISO 8601; default now")
    ] = None,
    bucket: Annotated[
        float | None,
        Query(gt=0, le=MAX_TIME, allow_inf_nan=False, description="seconds; default: ~500 points"),
    ] = None,
) -> list[dict[str, Any]]:
    """``metric`` downsampled to min/avg/max per bucket, oldest first."""
    end = parse_time(until, "until")
    end = time.time() if end is None else end
    start = parse_time(since, "since")
    start = max(0.0, end - 3600) if start is None else start
    if end <= start:
        raise HTTPException(422, "until must be after since")
    width = bucket or max(1.0, (end - start) / 500)
    if (end - start) / width > 20000:
        raise HTTPException(422, "too many buckets: choose a larger bucket")
    rows = store.read(
        queries.device_series,
        checked_id(device_id),
        metric=metric,
        since=start,
        until=end,
        bucket=width,
    )
    for row in rows:
        row["ts"] = iso(row["ts"])
    return rows


@router.get("/devices/{device_id}/messages", response_model=list[RecentMessage], tags=["devices"])
def get_recent_messages(device_id: str, runtime: RuntimeDep) -> list[dict[str, Any]]:
    """The device's last raw messages seen by this process, newest first."""
    messages = runtime.recent.of(checked_id(device_id))
    return [{**m, "received_at": iso(m["received_at"])} for m in messages]


@router.delete("/devices/{device_id}", status_code=204, tags=["devices"])
async def delete_device(device_id: str, runtime: RuntimeDep) -> Response:
    """Remove a device with its readings, events and dead letters."""
    if not await runtime.forget_device(checked_id(device_id)):
        raise HTTPException(404, "no such device")
    return Response(status_code=204)


@router.patch("/devices/{device_id}", response_model=DeviceDetail, tags=["devices"])
async def patch_device(
    device_id: str, patch: DevicePatch, runtime: RuntimeDep, store: StoreDep
) -> dict[str, Any]:
    """Set name, labels or heartbeat timeout; ``status`` sets presence by hand (``manual``)."""
    values: dict[str, Any] = patch.model_dump(exclude_unset=True, exclude={"status"})
    if "labels" in values:
        values["labels"] = json.dumps(values["labels"]) if values["labels"] is not None else None
    status = Status(patch.status) if patch.status else None
    if not await runtime.configure_device(checked_id(device_id), values, status):
        raise HTTPException(404, "no such device")
    return await run_in_threadpool(get_device, device_id, store)  # off the event loop


@router.get("/stats", tags=["health"])
def get_stats(store: StoreDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Message counters since start, queue depth, devices by status and ``storage``
    (``database_bytes``, ``oldest_reading``); with several workers, summed over all of
    them (``workers`` lists each one)."""
    stats = runtime.stats.as_dict()
    stats["queue_depth"] = runtime.queue_depth()
    if runtime.worker_id is not None:
        stats = _all_workers(runtime, stats)
    try:
        stats["devices"] = store.read(queries.count_devices)
        stats["storage"] = store.read(queries.storage_stats)
    except StoreError:
        stats["devices"] = None  # the counters above still help while the database is down
        stats["storage"] = None
    if stats["storage"] is not None and stats["storage"]["oldest_reading"] is not None:
        stats["storage"]["oldest_reading"] = iso(stats["storage"]["oldest_reading"])
    return stats


def _all_workers(runtime: Runtime, own: dict[str, Any]) -> dict[str, Any]:
    """This worker's counters plus those the other live workers stored."""
    others = runtime.other_workers()  # empty while the database is down
    total = combine([own, *(row["stats"] for row in others)])
    listed = [(runtime.worker_id, runtime.is_leader(), {**own, "pid": os.getpid()})]
    listed += [(row["id"], row["leader"], row["stats"]) for row in others]
    total["workers"] = [
        {
            "id": worker_id,
            "leader": leader,
            **{key: counters.get(key, 0) for key in _WORKER_FIELDS},
        }
        for worker_id, leader, counters in listed
    ]
    return total


_WORKER_FIELDS = (
    "pid",
    "started_at",
    "messages_received",
    "messages_stored",
    "dead_letters",
    "queue_depth",
    "by_type",
)


@router.get("/dead-letters", response_model=list[DeadLetterOut], tags=["dead letters"])
def get_dead_letters(
    store: StoreDep,
    reason: Annotated[str | None, Query(pattern=r"^[a-z_]{1,64}$")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Rejected messages, newest first, with the reason and the raw payload."""
    rows = store.read(queries.list_dead_letters, reason=reason, limit=limit, offset=offset)
    out = []
    for row in rows:
        payload = bytes(row.pop("payload"))
        row["received_at"] = iso(row["received_at"])
        row["payload"] = payload.decode("utf-8", errors="replace")
        row["payload_base64"] = base64.b64encode(payload).decode("ascii")
        out.append(row)
    return out
