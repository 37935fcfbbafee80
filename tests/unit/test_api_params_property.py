"""Property tests: no query parameter value, however hostile, makes a GET route answer 5xx.

Every GET route and its parameters come from the app's own OpenAPI document, so a new
route or parameter is covered without editing this file. The app runs in-process on a
real SQLite store holding a device with readings, a dead letter, a task and a command.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store import downlink as db
from mqtthub.store.database import Store
from mqtthub.web.app import create_app
from support.inprocess import InProcessApi, in_process_api, simple_runtime

#: Never finishes by design (Server-Sent Events); its parameters are none anyway.
ENDLESS = {"/api/stream"}

huge_ints = st.integers(min_value=-(2**80), max_value=2**80).map(str)
floats = st.floats(allow_nan=True, allow_infinity=True).map(repr)
edges = st.sampled_from(
    [
        "0", "-0", "-1", "1e400", "-1e400", "1e308", "5e-324", "nan", "NaN", "inf", "-inf",
        "Infinity", "2147483648", "9223372036854775807", "9223372036854775808",
        "-9223372036854775809", "253402300800", "1e12",
    ]
)  # fmt: skip
oddities = st.sampled_from(
    ["", " 1", "1 ", "1_000", "0x10", "true", "null", "\x00", "%", "_", "\\", "'", "t"]
)
offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
iso_dates = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.none() | offsets
).map(datetime.isoformat)
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
long_text = st.integers(min_value=60, max_value=3000).map(lambda n: "x" * n)
values = st.one_of(edges, edges, huge_ints, floats, iso_dates, oddities, text, long_text)
# Mostly the seeded device, so the query parameters get past the device id check.
device_ids = st.one_of(st.just("d1"), st.sampled_from(["nobody", "a" * 65, "..", "%00"]), text)


def seed(api: InProcessApi) -> None:
    """A device ``d1`` with readings and a dead letter, a task and a command."""
    now = time.time()
    messages = [
        RawMessage("devices/d1/sensor", json.dumps({"t": n, "h": 40 + n}).encode(), 1, False, now)
        for n in range(5)
    ]
    messages.append(RawMessage("devices/d1/sensor", b"{broken", 1, False, now))
    batch = build_batch(
        parse_all(messages, prefix="devices", max_payload=65536), presence=PresenceEngine()
    )
    api.store.write(batch)
    db.create_task(
        api.store.engine,
        {"id": "t1", "recipient": "r1", "title": "t", "body": "", "created_at": now,
         "expires_at": None},
    )  # fmt: skip
    db.create_command(
        api.store.engine,
        {"id": "c1", "device_id": "d1", "command": "x", "params": "{}", "created_at": now,
         "deadline": now + 30},
    )  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApi]:
    """One app and database for all examples (the GET routes only read)."""
    with in_process_api(tmp_path_factory.mktemp("property")) as client:
        seed(client)
        yield client


def plausible(schema: dict[str, Any]) -> list[str]:
    """Values a parameter's OpenAPI schema allows (enums, booleans, bounds, default), so a
    hostile value for one parameter is not always masked by a refused other one."""
    found = []
    for part in [schema, *schema.get("anyOf", [])]:
        found += [str(value) for value in part.get("enum", [])]
        found += ["true", "false"] if part.get("type") == "boolean" else []
        found += [str(part[key]) for key in ("minimum", "maximum") if key in part]
    if schema.get("default") is not None:
        found.append(str(schema["default"]).lower())
    return found


def get_routes() -> list[tuple[str, list[str], dict[str, list[str]]]]:
    """(path, path parameters, query parameters with plausible values) of every GET route
    in the OpenAPI."""
    unused = Store(create_engine("sqlite://"))  # the document needs no database
    document = create_app(store=unused, runtime=simple_runtime(), api_token=None).openapi()
    routes = []
    for path, operations in document["paths"].items():
        if "get" not in operations or path in ENDLESS:
            continue
        parameters = operations["get"].get("parameters", [])
        in_path = [p["name"] for p in parameters if p["in"] == "path"]
        in_query = {p["name"]: plausible(p["schema"]) for p in parameters if p["in"] == "query"}
        routes.append((path, in_path, in_query))
    return routes


ROUTES = get_routes()


def test_the_routes_were_found() -> None:
    """The OpenAPI lists the routes this property covers, with their parameters."""
    paths = {path: query for path, _, query in ROUTES}
    assert {"limit", "offset", "q", "status", "latest"} <= set(paths["/api/devices"])
    assert {"metric", "since", "until", "bucket"} <= set(paths["/api/devices/{device_id}/series"])
    assert len(paths) >= 10


@pytest.mark.parametrize(("path", "in_path", "in_query"), ROUTES, ids=[r[0] for r in ROUTES])
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_query_value_gives_a_server_error(
    api: InProcessApi,
    path: str,
    in_path: list[str],
    in_query: dict[str, list[str]],
    data: st.DataObject,
) -> None:
    """Any mix of hostile values for a route's query parameters answers 2xx or 4xx."""
    url = path
    for name in in_path:
        url = url.replace("{" + name + "}", quote(data.draw(device_ids, label=name), safe=""))
    params: dict[str, Any] = {}
    for name, allowed in in_query.items():
        if data.draw(st.booleans(), label=f"send {name}"):
            choices = st.one_of(st.sampled_from(allowed), values) if allowed else values
            params[name] = data.draw(choices, label=name)
    answer = api.get(url, params=params)
    assert answer.status_code < 500, (url, params, answer.text)
