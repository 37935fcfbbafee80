"""``GET /api/export``: any number of readings as CSV or JSON lines, streamed.

The readings are read a page of samples at a time (:class:`~mqtthub.store.queries.ExportPages`,
in a worker thread, never on the event loop) and written out as they come, so the
memory an export takes does not grow with its size.

CSV is RFC 4180 (``\\r\\n`` line ends, a field with a comma, quote or line break quoted,
quotes doubled) with the header ``device_id,metric,ts,value``. Device ids and metric names
are text a device chose: one that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return would be read as a formula by a spreadsheet, so such a field gets a
leading ``'`` (OWASP's advice; the JSON lines keep every string exactly). Values are
numbers and are never changed.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from mqtthub.messages import DEVICE_ID_PATTERN, METRIC_PATTERN
from mqtthub.store import queries
from mqtthub.store.database import Store
from mqtthub.timefmt import iso_utc
from mqtthub.web.api import StoreDep, parse_time

router = APIRouter()

#: Most device ids (or metric names) one export may name.
MAX_NAMES = 1000
#: Samples read per query: a few thousand readings per page, memory flat in between.
PAGE_SIZE = 2000
CSV_HEADER = b"device_id,metric,ts,value\r\n"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}

Names = Annotated[
    list[str] | None,
    Query(
        description="repeat it or give a comma-separated list; "
        f"at most {MAX_NAMES} names; default: all",
    ),
]


def csv_field(text: str) -> str:
    """``text`` as one CSV field: quoted when it must be, guarded against formulas."""
    if text.startswith(_FORMULA_START):
        text = "'" + text
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _names(values: list[str] | None, what: str, pattern: re.Pattern[str]) -> list[str] | None:
    """Repeated and comma-separated values as one list; 422 for a bad or excessive one."""
    if not values:
        return None
    names = sorted({name.strip() for value in values for name in value.split(",") if name.strip()})
    if len(names) > MAX_NAMES:
        raise HTTPException(422, f"{what}: at most {MAX_NAMES} names in one export")
    for name in names:
        if pattern.fullmatch(name) is None:
            raise HTTPException(422, f"{what}: {name[:80]!r} is not a valid name")
    return names or None


def _formatter(kind: str, epoch: bool) -> Callable[[list[queries.ExportRow]], bytes]:
    """A function that turns a page of samples into the bytes of its readings.

    Times go through ``iso_utc``, not the API's cached ``iso``: an export's millions of
    times would only churn that cache.
    """
    stamp: Callable[[float], str | float] = (lambda ts: ts) if epoch else iso_utc

    def as_csv(page: list[queries.ExportRow]) -> bytes:
        lines = []
        for device_id, ts, values in page:
            device = csv_field(device_id)
            at = repr(ts) if epoch else iso_utc(ts)
            for metric in sorted(values):
                lines.append(f"{device},{csv_field(metric)},{at},{values[metric]!r}\r\n")
        return "".join(lines).encode()

    def as_jsonl(page: list[queries.ExportRow]) -> bytes:
        dumps = orjson.dumps
        return b"".join(
            dumps(
                {"device_id": device_id, "metric": metric, "ts": stamp(ts), "value": values[metric]}
            )
            + b"\n"
            for device_id, ts, values in page
            for metric in sorted(values)
        )

    return as_csv if kind == "csv" else as_jsonl


def _filename(devices: list[str] | None, kind: str) -> str:
    """``mqtthub-<device | all | N-devices>-<UTC time>.<csv | jsonl>`` (no ``:`` in it)."""
    if devices is None:
        subject = "all"
    elif len(devices) == 1:
        subject = devices[0].replace(":", "_")
    else:
        subject = f"{len(devices)}-devices"
    return f"mqtthub-{subject}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.{kind}"


async def _stream(
    pages: queries.ExportPages,
    first: list[queries.ExportRow] | None,
    render: Callable[[list[queries.ExportRow]], bytes],
    header: bytes,
) -> AsyncIterator[bytes]:
    """The header, then page after page, each read and rendered in a worker thread."""
    try:
        if header:
            yield header
        page = first
        while page is not None:
            yield await run_in_threadpool(render, page)
            page = await run_in_threadpool(pages.next_page)
    finally:
        # A worker thread is never abandoned mid-query (anyio waits for it), so the
        # connection is idle here, also when the client went away.
        pages.close()


@router.get(
    "/export",
    tags=["devices"],
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/csv": {}, "application/x-ndjson": {}},
            "description": "the readings as an attachment, streamed",
        }
    },
)
async def export(
    store: StoreDep,
    device: Names = None,
    metric: Names = None,
    since: Annotated[str | None, Query(max_length=64, description="epoch seconds or ISO")] = None,
    until: Annotated[str | None, Query(max_length=64, description="epoch seconds or ISO")] = None,
    format: Annotated[Literal["csv", "jsonl"], Query(description="csv or jsonl")] = "csv",
    time_format: Annotated[
        Literal["iso", "epoch"], Query(description="ts as ISO 8601 UTC or epoch seconds")
    ] = "iso",
) -> StreamingResponse:
    """Every reading of the chosen devices and metrics in [since, until), any number of
    them, streamed as an attachment: CSV (``device_id,metric,ts,value``) or JSON lines.

    Ordered by device id, then time (oldest first), then metric name. Devices that do not
    exist contribute nothing. CSV fields a spreadsheet would run as a formula (starting
    with ``=``, ``+``, ``-`` or ``@``) get a leading ``'``; JSON lines are exact.
    """
    devices = _names(device, "device", DEVICE_ID_PATTERN)
    metrics = _names(metric, "metric", METRIC_PATTERN)
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if start is not None and end is not None and end <= start:
        raise HTTPException(422, "until must be after since")
    pages = _open(store, devices, metrics, start, end)
    try:
        first = await run_in_threadpool(pages.next_page)  # database errors: 503 before any byte
    except BaseException:
        pages.close()
        raise
    render = _formatter(format, time_format == "epoch")
    return StreamingResponse(
        _stream(pages, first, render, CSV_HEADER if format == "csv" else b""),
        media_type=_MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="{_filename(devices, format)}"',
            "Cache-Control": "no-store",
        },
    )


def _open(
    store: Store,
    devices: list[str] | None,
    metrics: list[str] | None,
    since: float | None,
    until: float | None,
) -> queries.ExportPages:
    """The pages of an export (nothing is read until the first page is asked for)."""
    return store.read(
        queries.ExportPages,
        device_ids=devices,
        metrics=metrics,
        since=since,
        until=until,
        page_size=PAGE_SIZE,
    )
