"""Export of any size, cursor pages of readings: the API in-process on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store.database import Store
from mqtthub.web import export
from mqtthub.web.api import decode_cursor
from mqtthub.web.app import create_app
from support.inprocess import InProcessApi, simple_runtime

T0 = 1_790_000_000.0
TOKEN = "export-token"


@contextmanager
def api_on(store: Store, **options: Any) -> Iterator[InProcessApi]:
    """``create_app`` over ``store``, driven through httpx's ASGI transport."""
    app = create_app(store=store, runtime=simple_runtime(), **{"api_token": None, **options})
    with asyncio.Runner() as runner:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
        )
        try:
            yield InProcessApi(client, runner, store)
        finally:
            runner.run(client.aclose())


def write(store: Store, *messages: tuple[str, dict[str, Any]]) -> None:
    """Store sensor messages ``(device_id, payload with ts)`` as serve would."""
    raw = [
        RawMessage(f"devices/{device}/sensor", json.dumps(body).encode(), 1, False, body["ts"])
        for device, body in messages
    ]
    parsed = parse_all(raw, prefix="devices", max_payload=65536)
    store.write(build_batch(parsed, presence=PresenceEngine()))


def all_pages(api: InProcessApi, path: str, **params: Any) -> tuple[list[Any], int]:
    """Every reading by following X-Next-Cursor; and how many pages it took."""
    readings: list[Any] = []
    pages = 0
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = api.get(path, params=query)
        assert answer.status_code == 200, answer.text
        pages += 1
        readings += [(r["metric"], r["ts"], r["value"]) for r in answer.json()]
        cursor = answer.headers.get("x-next-cursor")
        if cursor is None:
            assert "link" not in answer.headers
            return readings, pages
        assert answer.headers["link"].endswith('; rel="next"')
        assert f"cursor={cursor}" in answer.headers["link"]


@pytest.fixture
def api(store: Store) -> Iterator[InProcessApi]:
    """The HTTP API over ``store``."""
    with api_on(store) as client:
        yield client


def test_cursor_pages_list_every_reading_once(api: InProcessApi) -> None:
    """Following the cursor lists each reading exactly once, newest first, in pages of
    ``limit``; the last page has no cursor, and a page's body is the same list as before."""
    write(api.store, *(("p1", {"ts": T0 + i, "a": i, "b": -i, "c": i / 2}) for i in range(40)))
    write(api.store, *(("p1", {"ts": T0 + 40 + i, "b": i}) for i in range(5)))  # one value
    for limit in (1, 7, 25, 124, 125, 1000):
        readings, pages = all_pages(api, "/api/devices/p1/readings", limit=limit)
        assert len(readings) == 125
        assert len(set(readings)) == 125
        assert pages == -(-125 // limit)
        times = [ts for _m, ts, _v in readings]
        assert times == sorted(times, reverse=True)
    unpaged = api.get("/api/devices/p1/readings", params={"limit": 10000}).json()
    assert [(r["metric"], r["ts"], r["value"]) for r in unpaged] == readings


def test_cursor_pages_stay_exact_while_readings_arrive(api: InProcessApi) -> None:
    """Readings stored between pages shift nothing: each reading there when the listing
    began is listed once, newer ones are not (they are before the first page), and late
    older ones still ahead of the cursor are listed when it gets there."""
    write(api.store, *(("q1", {"ts": T0 + i, "t": i, "h": i}) for i in range(0, 100, 2)))
    seen: list[tuple[str, str, float]] = []
    expected_late: set[float] = set()
    cursor = None
    late = iter(range(1, 100, 2))  # odd times, oldest first: arrive after the even ones
    while True:
        params: dict[str, Any] = {"limit": 9, **({"cursor": cursor} if cursor else {})}
        answer = api.get("/api/devices/q1/readings", params=params)
        seen += [(r["metric"], r["ts"], r["value"]) for r in answer.json()]
        cursor = answer.headers.get("x-next-cursor")
        if cursor is None:
            break
        write(api.store, ("q1", {"ts": T0 + 1000 + len(seen), "t": -1}))  # newer
        odd = next(late, None)
        if odd is not None:
            write(api.store, ("q1", {"ts": T0 + odd, "t": odd, "h": odd}))
            if T0 + odd < decode_cursor(cursor)[0]:
                expected_late.add(float(odd))
    assert len(seen) == len(set(seen))
    values = sorted(v for _m, _ts, v in seen)
    assert -1 not in values
    assert values == sorted([float(i) for i in range(0, 100, 2)] * 2 + [*expected_late] * 2)
    assert expected_late  # the test did insert behind the cursor


def test_cursor_with_metric_filter_and_bad_cursors(api: InProcessApi) -> None:
    """A metric's readings page the same way; a cursor that was not given is a 422."""
    write(api.store, *(("m1", {"ts": T0 + i, "t": i, "h": i}) for i in range(30)))
    readings, pages = all_pages(api, "/api/devices/m1/readings", metric="t", limit=8)
    assert [v for _m, _ts, v in readings] == [float(i) for i in reversed(range(30))]
    assert pages == 4
    for bad in ("nope", "W10", "WzEsMl0", "x" * 500, "WyJhIiwiYiJd"):
        answer = api.get("/api/devices/m1/readings", params={"cursor": bad})
        assert answer.status_code == 422, bad
        assert answer.json()["detail"]


def parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_export_csv_and_jsonl_with_filters(api: InProcessApi) -> None:
    """The export has a header and every reading of the chosen devices, metrics and time
    range, ordered by device, time and metric; JSON lines carry the same readings."""
    write(api.store, *(("e1", {"ts": T0 + i, "t": i + 0.5, "h": -i}) for i in range(10)))
    write(api.store, *(("e2", {"ts": T0 + i, "t": 2.0 * i}) for i in range(5)))
    write(api.store, ("e3", {"ts": T0, "h": 1}))
    answer = api.get("/api/export")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="mqtthub-all-')
    assert disposition.endswith('.csv"')
    rows = parse_csv(answer.text)
    assert rows[0] == ["device_id", "metric", "ts", "value"]
    assert len(rows) == 1 + 20 + 5 + 1
    assert rows[1:4] == [
        ["e1", "h", "2026-09-21T14:13:20Z", "0.0"],
        ["e1", "t", "2026-09-21T14:13:20Z", "0.5"],
        ["e1", "h", "2026-09-21T14:13:21Z", "-1.0"],
    ]
    picked = api.get(
        "/api/export",
        params={
            "device": ["e2,e1", "ghost"],
            "metric": "t",
            "since": str(T0 + 2),
            "until": "2026-09-21T14:13:24Z",
            "format": "jsonl",
            "time_format": "epoch",
        },
    )
    assert picked.status_code == 200
    assert picked.headers["content-type"] == "application/x-ndjson"
    assert 'filename="mqtthub-3-devices-' in picked.headers["content-disposition"]
    lines = [json.loads(line) for line in picked.text.splitlines()]
    assert [(x["device_id"], x["ts"], x["value"]) for x in lines] == [
        ("e1", T0 + 2, 2.5),
        ("e1", T0 + 3, 3.5),
        ("e2", T0 + 2, 4.0),
        ("e2", T0 + 3, 6.0),
    ]
    one = api.get("/api/export", params={"device": "e3"})
    assert 'filename="mqtthub-e3-' in one.headers["content-disposition"]
    assert parse_csv(one.text)[1:] == [["e3", "h", "2026-09-21T14:13:20Z", "1.0"]]
    empty = api.get("/api/export", params={"device": "ghost"})
    assert empty.status_code == 200
    assert empty.text == "device_id,metric,ts,value\r\n"


def test_export_pages_through_many_devices_and_samples(
    api: InProcessApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages smaller than a device's samples, devices with no readings in the range, and
    pages that span devices: every reading comes out once, in order."""
    monkeypatch.setattr(export, "PAGE_SIZE", 7)
    for n in range(6):
        write(api.store, *((f"d{n}", {"ts": T0 + i, "v": n * 100 + i}) for i in range(n * 4)))
    rows = parse_csv(api.get("/api/export", params={"time_format": "epoch"}).text)[1:]
    expected = [
        [f"d{n}", "v", repr(T0 + i), repr(float(n * 100 + i))]
        for n in range(6)
        for i in range(n * 4)
    ]
    assert rows == expected
    ranged = parse_csv(api.get("/api/export", params={"since": T0 + 10, "until": T0 + 13}).text)
    assert [(r[0], r[3]) for r in ranged[1:]] == [
        (f"d{n}", repr(float(n * 100 + i))) for n in (3, 4, 5) for i in (10, 11, 12) if i < n * 4
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"format": "xlsx"},
        {"since": "nan"},
        {"until": "-1"},
        {"since": str(T0 + 10), "until": str(T0)},
        {"device": "bad id!"},
        {"device": ",".join(f"d{n}" for n in range(1001))},
        {"metric": 'a"b'},
        {"time_format": "excel"},
    ],
)
def test_export_refuses_bad_parameters(api: InProcessApi, params: dict[str, str]) -> None:
    """Bad formats, times, names and too many names are a 422 with a message."""
    answer = api.get("/api/export", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


def test_csv_quotes_and_guards_device_supplied_text() -> None:
    """Fields with commas, quotes or line breaks are quoted; a field a spreadsheet would
    run as a formula starts with an apostrophe; plain names stay as they are."""
    assert export.csv_field("temp") == "temp"
    assert export.csv_field("a,b") == '"a,b"'
    assert export.csv_field('say "hi"') == '"say ""hi"""'
    assert export.csv_field("line\nbreak") == '"line\nbreak"'
    for formula in ("=1+1", "+1", "-A1", "@SUM(A1)", "\tx", '=HYPERLINK("x","y")'):
        guarded = export.csv_field(formula)
        assert next(csv.reader([guarded]))[0] == "'" + formula
    assert parse_csv(export.csv_field('=cmd|" /C calc"!A0') + "\r\n")[0][0].startswith("'=")


def test_csv_guard_applies_to_device_ids(api: InProcessApi) -> None:
    """A device id that starts with '-' (allowed by MQTT) cannot become a formula; values,
    negative ones too, stay numbers."""
    write(api.store, ("-A1", {"ts": T0, "t": -3.5}))
    rows = parse_csv(api.get("/api/export").text)
    assert rows[1] == ["'-A1", "t", "2026-09-21T14:13:20Z", "-3.5"]
    line = api.get("/api/export", params={"format": "jsonl"}).text
    assert json.loads(line)["device_id"] == "-A1"


def test_export_needs_the_token(api: InProcessApi) -> None:
    """With MQTTHUB_API_TOKEN set, the export is a 401 without it."""
    with api_on(api.store, api_token=SecretStr(TOKEN)) as guarded:
        assert guarded.get("/api/export").status_code == 401
        answer = guarded.get("/api/export", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200
