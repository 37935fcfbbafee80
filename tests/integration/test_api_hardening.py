"""Hostile input and operator mistakes at the HTTP API, against the app built in-process on
a real SQLite store (and, where the process matters, a real ``serve``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from mqtthub.config import load_settings
from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store import downlink as db
from support.inprocess import InProcessApi, in_process_api, simple_runtime
from support.mosquitto import MosquittoBroker, mosquitto_pub
from support.serve import device, serve_for, wait_until

TOKEN = "hardening-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[InProcessApi]:
    """The app without a token, with one device ``d1`` that sent a reading."""
    with in_process_api(tmp_path) as client:
        store_reading(client, "d1", '{"t": 1}')
        yield client


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[InProcessApi]:
    """The app with an API token and a 1 KiB body cap."""
    with in_process_api(tmp_path, api_token=SecretStr(TOKEN), max_request_body=1024) as client:
        yield client


def store_reading(api: InProcessApi, device_id: str, payload: str) -> None:
    """Write one sensor message through the real parsing and batching code."""
    message = RawMessage(f"devices/{device_id}/sensor", payload.encode(), 1, False, time.time())
    batch = build_batch(
        parse_all([message], prefix="devices", max_payload=65536), presence=PresenceEngine()
    )
    api.store.write(batch)


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ... {}}}`` with ``depth`` objects."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# --- 1. the device list never shows credentials ------------------------------------------


def test_device_list_does_not_show_password_hashes_or_endpoints(tmp_path: Path) -> None:
    """A provisioned device's password hash and broker endpoint are not in GET /api/devices."""
    runtime = simple_runtime()
    runtime.device_endpoint = "mqtt://broker.example:1883"
    with in_process_api(tmp_path, runtime=runtime) as api:
        created = api.request("POST", "/api/devices", json={"id": "prov1"})
        assert created.status_code == 201
        assert created.json()["publish_topics"] == [  # what the generated ACL allows
            "devices/prov1/status",
            "devices/prov1/sensor",
            "devices/prov1/heartbeat",
            "devices/prov1/command/+/reply",
        ]
        listed = api.get("/api/devices")
        assert [d["id"] for d in listed.json()] == ["prov1"]
        for item in (listed.json()[0], api.get("/api/devices/prov1").json()):
            assert "mqtt_password_hash" not in item
            assert "broker_endpoint" not in item
        assert "$7$" not in listed.text
        assert "broker.example" not in listed.text


# --- 2. Host header allow-list -----------------------------------------------------------


def test_foreign_host_header_is_refused_naming_the_setting(api: InProcessApi) -> None:
    """A request for Host: attacker.example (DNS rebinding) gets 400 naming the setting."""
    refused = api.get("/api/devices", headers={"Host": "attacker.example"})
    assert refused.status_code == 400
    assert "MQTTHUB_ALLOWED_HOSTS" in refused.json()["detail"]
    assert api.get("/", headers={"Host": "attacker.example:8000"}).status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8000", "LOCALHOST", "[::1]:8000"])
def test_loopback_host_headers_are_served_on_any_port(api: InProcessApi, host: str) -> None:
    """The loopback names work with or without a port."""
    assert api.get("/api/devices", headers={"Host": host}).status_code == 200


def test_allowed_hosts_setting_adds_names(tmp_path: Path) -> None:
    """MQTTHUB_ALLOWED_HOSTS and a specific MQTTHUB_HTTP_HOST are served; others are not."""
    settings = load_settings(
        http_host="192.0.2.10", api_token=TOKEN, allowed_hosts="hub.example, 2001:db8::1"
    )
    with in_process_api(
        tmp_path, api_token=settings.api_token, allowed_hosts=settings.trusted_hosts
    ) as api:
        for host in ("hub.example", "HUB.example:443", "192.0.2.10:8000", "[2001:db8::1]"):
            assert api.get("/api/devices", headers={**BEARER, "Host": host}).status_code == 200
        assert api.get("/api/devices", headers={**BEARER, "Host": "other.example"}).status_code == (
            400
        )


def test_non_loopback_address_without_token_is_a_problem_for_serve_only() -> None:
    """Listening on 0.0.0.0 without MQTTHUB_API_TOKEN is refused, naming both variables;
    the same settings still load for commands that serve no API (doctor, listen)."""
    problem = load_settings(http_host="0.0.0.0").exposure_problem()
    assert problem is not None
    assert "MQTTHUB_API_TOKEN" in problem
    assert "MQTTHUB_HTTP_HOST" in problem
    assert load_settings(http_host="0.0.0.0", api_token=TOKEN).exposure_problem() is None
    assert load_settings(http_host="127.0.0.2").exposure_problem() is None


def test_serve_refuses_to_listen_publicly_without_a_token(tmp_path: Path) -> None:
    """`serve` with MQTTHUB_HTTP_HOST=0.0.0.0 and no token exits 2 before listening."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
    result = subprocess.run(
        [sys.executable, "-m", "mqtthub", "serve"],
        env={**clean, "MQTTHUB_HTTP_HOST": "0.0.0.0"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "MQTTHUB_API_TOKEN" in result.stderr
    assert "MQTTHUB_HTTP_HOST" in result.stderr
    assert "Traceback" not in result.stderr


# --- 3. body cap and token before the body -----------------------------------------------


def test_declared_oversized_body_is_refused_with_413(guarded: InProcessApi) -> None:
    """A Content-Length over MQTTHUB_MAX_REQUEST_BODY is refused, token or not."""
    body = json.dumps({"recipient": "r1", "title": "t", "body": "x" * 2000})
    for headers in ({}, BEARER):
        refused = guarded.request("POST", "/api/tasks", content=body, headers=headers)
        assert refused.status_code == 413
        assert "MQTTHUB_MAX_REQUEST_BODY" in refused.json()["detail"]


def test_streamed_oversized_body_is_refused_with_413(guarded: InProcessApi) -> None:
    """A chunked body without Content-Length is counted and refused once over the cap."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"recipient": "r1", "title": "t", "body": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    refused = guarded.request(
        "POST",
        "/api/tasks",
        content=chunks(),
        headers={**BEARER, "Content-Type": "application/json"},
    )
    assert refused.status_code == 413
    assert "MQTTHUB_MAX_REQUEST_BODY" in refused.json()["detail"]


def test_token_is_checked_before_the_body_is_read(guarded: InProcessApi) -> None:
    """Without the token a POST is refused with 401 and not one byte of its body is read."""
    read = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            read.append(1)
            yield b"x" * 100

    refused = guarded.request("POST", "/api/tasks", content=chunks())
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["detail"] == (
        "missing or wrong API token: send Authorization: Bearer <MQTTHUB_API_TOKEN>"
    )
    assert read == []


def test_token_protects_every_api_path_but_not_docs_or_health(guarded: InProcessApi) -> None:
    """/api/* needs the token (any scheme spelling), /healthz and /openapi.json do not."""
    assert guarded.get("/api/devices").status_code == 401
    assert guarded.get("/api/no-such-route").status_code == 401
    assert guarded.get("/api/stream").status_code == 401
    wrong = guarded.get("/api/devices", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = guarded.get("/api/devices", headers={"Authorization": f"bearer {TOKEN}"})
    assert right.status_code == 200
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/openapi.json").status_code == 200


def test_guard_answers_carry_the_security_headers(guarded: InProcessApi) -> None:
    """401, 400 and 413 answers have the Content-Security-Policy like every other."""
    answers = [
        guarded.get("/api/devices"),
        guarded.get("/api/devices", headers={"Host": "attacker.example"}),
        guarded.request("POST", "/api/tasks", content=b"x" * 2000, headers=BEARER),
    ]
    for answer in answers:
        assert "script-src 'self'" in answer.headers["content-security-policy"]


# --- 4. hostile query parameters give 422, not 500 ---------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/devices", {"offset": str(2**63)}),
        ("/api/devices", {"offset": "-1"}),
        ("/api/devices", {"q": "a\x00b"}),
        ("/api/dead-letters", {"offset": str(2**63)}),
        ("/api/dead-letters", {"reason": "x" * 1000}),
        ("/api/tasks", {"offset": str(2**63)}),
        ("/api/tasks", {"recipient": "x" * 1000}),
        ("/api/devices/d1/events", {"offset": str(2**63)}),
        ("/api/devices/d1/series", {"metric": "t", "bucket": "inf"}),
        ("/api/devices/d1/series", {"metric": "t", "bucket": "nan"}),
        ("/api/devices/d1/series", {"metric": "t", "bucket": "1e308"}),
        ("/api/devices/d1/series", {"metric": "t", "since": "-inf"}),
        ("/api/devices/d1/series", {"metric": "t", "since": "nan"}),
        ("/api/devices/d1/series", {"metric": "t", "until": "1e400"}),
        ("/api/devices/d1/series", {"metric": "t", "until": "9999-12-31T23:59:59-14:00"}),
        ("/api/devices/d1/series", {"metric": "x" * 65}),
        ("/api/devices/d1/readings", {"since": "nan"}),
        ("/api/devices/d1/readings", {"until": "inf"}),
        ("/api/devices/d1/readings", {"since": "-1"}),
        ("/api/devices/d1/readings", {"since": "0001-01-01T00:00:00+14:00"}),
        ("/api/devices/d1/readings", {"metric": "x" * 5000}),
        ("/api/devices/d1/readings", {"limit": str(2**64)}),
        ("/api/devices/d1/commands", {"limit": "1e400"}),
    ],
)
def test_hostile_query_values_are_422_with_a_message(
    api: InProcessApi, path: str, params: dict[str, str]
) -> None:
    """Huge, infinite, NaN or out-of-range values are refused with 422 and a message."""
    answer = api.get(path, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


def test_series_accepts_the_epoch_as_since(api: InProcessApi) -> None:
    """since=0 means 1970, not "the default hour"."""
    answer = api.get("/api/devices/d1/series", params={"metric": "t", "since": "0"})
    assert answer.status_code == 200
    assert sum(point["count"] for point in answer.json()) == 1


def test_command_timeout_of_infinity_is_422(api: InProcessApi) -> None:
    """A timeout of 1e400 (infinity in JSON) is a 422 whose body is valid JSON."""
    answer = api.request(
        "POST",
        "/api/devices/d1/commands",
        content=b'{"command": "reboot", "timeout": 1e400}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "timeout"]


# --- 5. command params depth and size ----------------------------------------------------


def test_deeply_nested_command_params_are_refused(api: InProcessApi) -> None:
    """params nested 900 deep are refused with 422 before anything is stored or sent."""
    answer = api.request(
        "POST", "/api/devices/d1/commands", json={"command": "x", "params": nested(900)}
    )
    assert answer.status_code == 422
    assert "deeper than 32" in answer.text
    big = {"blob": "x" * 20000}
    answer = api.request("POST", "/api/devices/d1/commands", json={"command": "x", "params": big})
    assert answer.status_code == 422
    assert "larger than" in answer.text


def test_a_stored_command_that_cannot_be_read_does_not_break_the_list(
    api: InProcessApi,
) -> None:
    """A stored row with undecodable params shows params null; the other rows still show."""
    now = time.time()
    rows = [
        ("c1", json.dumps({"ok": 1})),
        ("c2", json.dumps(nested(900))),
        ("c3", "{not json"),
        ("c4", "[1, 2]"),
    ]
    for n, (command_id, params) in enumerate(rows):
        db.create_command(
            api.store.engine,
            {
                "id": command_id,
                "device_id": "d1",
                "command": "x",
                "params": params,
                "created_at": now + n,
                "deadline": now + 60,
            },
        )
    answer = api.get("/api/devices/d1/commands")
    assert answer.status_code == 200
    params = {c["id"]: c["params"] for c in answer.json()}
    assert params == {"c1": {"ok": 1}, "c2": None, "c3": None, "c4": None}


# --- 6. labels cap ------------------------------------------------------------------------


def test_too_many_labels_are_refused(api: InProcessApi) -> None:
    """A PATCH with 65 labels is 422 (20,000 labels, 4.3 MB, used to be accepted)."""
    labels = {f"k{n}": "v" for n in range(65)}
    answer = api.request("PATCH", "/api/devices/d1", json={"labels": labels})
    assert answer.status_code == 422
    assert "64" in answer.text


def test_patch_of_a_provisioned_device_that_never_connected(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """PATCH of a device registered by POST /api/devices answers 200 with the change."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        assert serve.http.post("/api/devices", json={"id": "fresh1"}).status_code == 201
        patched = serve.http.patch("/api/devices/fresh1", json={"name": "Pump"})
        assert patched.status_code == 200, patched.text
        assert patched.json()["name"] == "Pump"
        assert device(serve, "fresh1")["name"] == "Pump"  # type: ignore[index]


# --- the live stream with a token, on a real serve ---------------------------------------


def test_live_stream_works_with_the_token(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """/api/stream answers 401 without the token and streams events with it."""
    with serve_for(mosquitto.port, tmp_path / "serve", MQTTHUB_API_TOKEN=TOKEN) as serve:
        assert serve.get("/api/stream").status_code == 401
        with httpx.stream("GET", f"{serve.base_url}/api/stream", headers=BEARER) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"
            mosquitto_pub(mosquitto, "devices/live9/sensor", '{"t": 1}')
            found = wait_until(
                lambda: "live9" in next(lines), timeout=15, what="a device event for live9"
            )
            assert found
