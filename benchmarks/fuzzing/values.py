"""Generators of well-formed documents with wrong values: timestamps, device ids in the
payload, status strings, metric names, 10,000 keys, payload sizes around the limit.
"""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from typing import Any

from fuzzing.model import ANY, DEAD, MIB, STORED, TOO_LARGE, Ctx, Message, dumps, topic


def _ts_cases(now: float) -> tuple[tuple[str, Any, str], ...]:
    later = now + 2 * 86400
    bad: list[Any] = [
        0, 1, 999_999_999, 999_999_999.999, -1, -1e308, 1e300, later, int(later * 1000),
        999_999_999_999, "", "yesterday", "2024-13-01T00:00:00Z", "2024-02-30",
        "2024-01-01T25:00:00", "9999-12-31T23:59:59+23:59", "0001-01-01", "1970-01-01T00:00:00Z",
        "2999-01-01T00:00:00Z", "T", "2024-01-01T00:00:00+25:00", True, False, [], {},
        [now], {"$date": now}, "1e9", "x" * 10_000,
    ]  # fmt: skip
    good: list[Any] = [
        1e9 + 1, now - 365 * 86400, now + 23 * 3600, int(now * 1000),
        datetime.fromtimestamp(now - 60, UTC).isoformat(),
    ]  # fmt: skip
    cases = [("sensor", ts, "invalid_timestamp") for ts in bad]
    cases += [("sensor", ts, STORED) for ts in good]
    cases += [("sensor", None, ANY)]  # "ts": null
    cases += [("status", 0, "invalid_timestamp"), ("heartbeat", "never", "invalid_timestamp")]
    return tuple(cases)


def gen_ts(ctx: Ctx) -> Message:
    """Timestamps of every wrong shape and at the edges of the accepted range."""
    kind, ts, expect = ctx.cycle(_ts_cases(ctx.run.now))
    doc: dict[str, Any] = {"ts": ts}
    if kind == "status":
        doc["status"] = "online"
    else:
        doc["t"] = 1
    return Message(topic(ctx.device(), kind), dumps(doc), expect)


def gen_mismatch(ctx: Ctx) -> Message:
    """A device_id in the payload that is not the topic's."""
    device = ctx.device()
    claims: list[tuple[Any, str]] = [
        ("other", "device_id_mismatch"),
        (device.upper(), "device_id_mismatch"),
        (device + " ", "device_id_mismatch"),
        (" " + device, "device_id_mismatch"),
        ("", "device_id_mismatch"),
        (5, "device_id_mismatch"),
        (True, "device_id_mismatch"),
        ([device], "device_id_mismatch"),
        ({"id": device}, "device_id_mismatch"),
        (device + "\u0000", "device_id_mismatch"),
        (device.replace("i", "\u0456"), "device_id_mismatch"),  # Cyrillic i
        (None, ANY),
        (device, STORED),
    ]
    claim, expect = ctx.cycle(claims)
    kind = ctx.rng.choice(("sensor", "sensor", "status", "heartbeat"))
    doc: dict[str, Any] = {"device_id": claim, "t": 1}
    if kind == "status":
        doc = {"device_id": claim, "status": "online"}
    if kind == "sensor" and ctx.rng.random() < 0.3:  # the second item of an array lies
        second = dict(doc)
        doc = [{"device_id": device, "t": 1, "ts": ctx.run.now - 5}, {**second, "ts": ctx.run.now}]
    return Message(topic(device, kind), dumps(doc), expect)


STATUS_CASES: tuple[tuple[bytes, str], ...] = (
    (b"online", STORED),
    (b"offline", STORED),
    (b'{"status":"online"}', STORED),
    (b'{"status":"offline"}', STORED),
    (b"ONLINE", ANY),
    (b"Offline", ANY),
    (b" online\n", ANY),
    (b'"online"', ANY),
    (b"\xc2\xa0online\xe2\x80\x83", ANY),  # no-break and em spaces
    (b'{"status":" Online "}', ANY),
    (b"onlin", "invalid_status"),
    (b"on line", "invalid_status"),
    (b"online!", "invalid_status"),
    (b"1", "invalid_status"),
    (b"true", "invalid_status"),
    (b"connected", "invalid_status"),
    (b"online\x00", "invalid_status"),
    (b"\xd0\xbenline", "invalid_status"),  # Cyrillic o
    (b"online" * 2000, "invalid_status"),
    (b'{"status":"unknown"}', "invalid_status"),
    (b'{"status":null}', "invalid_status"),
    (b'["online"]', "invalid_status"),
    (b"online offline", "invalid_status"),
    (b'"online', DEAD),  # unterminated JSON string
    (b'{"status":"online"', DEAD),
    (b'{"status":"online","device_id":"other"}', "device_id_mismatch"),
    (b"\xffonline", "invalid_utf8"),
)


def gen_status(ctx: Ctx) -> Message:
    """Status payloads of every shape: case, spaces, JSON strings, near misses."""
    payload, expect = ctx.cycle(STATUS_CASES)
    return Message(topic(ctx.device(), "status"), payload, expect)


BAD_METRICS = (
    "", " ", "a b", "a/b", "temp\u00b0C", "\u6e29\u5ea6", "x" * 65, "a\u0000b", "a\nb", "a\tb",
    "$SYS", "a+b", "a#b", "\U0001f321", "a,b", "a=b", 'a"b', "a'b", "a;DROP TABLE readings;--",
    "\ud800",
)  # fmt: skip

GOOD_METRICS = ("x" * 64, "a.b:c-d_e", "1", "UPPER")


def gen_metrics(ctx: Ctx) -> Message:
    """Metric names outside [A-Za-z0-9_.:-]{1,64}, incl. 10,000-60,000 character ones."""
    rng, device = ctx.rng, ctx.device()
    step = ctx.count % (len(BAD_METRICS) + len(GOOD_METRICS) + 6)
    if step < len(BAD_METRICS):
        name, expect = BAD_METRICS[step], "invalid_metric_name"
    elif step < len(BAD_METRICS) + len(GOOD_METRICS):
        name, expect = GOOD_METRICS[step - len(BAD_METRICS)], STORED
    elif step < len(BAD_METRICS) + len(GOOD_METRICS) + 5:  # long, unique, valid characters
        alphabet = string.ascii_letters + string.digits
        name = "".join(rng.choices(alphabet, k=rng.randint(10_000, 60_000)))
        expect = "invalid_metric_name"
    else:  # a long name on a string value is ignored, not invalid
        return Message(topic(device), dumps({"n" * 30_000: "text", "t": 1}), STORED)
    # json.dumps escapes every non-ASCII character: "\ud800" becomes a lone surrogate escape.
    body = b'{"t":1,' + json.dumps(name).encode() + b":2.5}"
    return Message(topic(device), body, expect)


def gen_manykeys(ctx: Ctx) -> Message:
    """Objects with 10,000 keys."""
    rng, device = ctx.rng, ctx.device()
    variant = ctx.cycle(("numbers", "strings", "last-invalid", "nulls", "random-names", "nested"))
    keys = [f"k{i}" for i in range(10_000)]
    if variant == "numbers":
        doc: dict[str, Any] = {k: i for i, k in enumerate(keys)}
        expect = STORED
    elif variant == "strings":
        doc, expect = {k: "v" for k in keys} | {"t": 1}, STORED
    elif variant == "last-invalid":
        doc = {k: 1 for k in keys[:-1]} | {"bad key": 1}
        expect = "invalid_metric_name"
    elif variant == "nulls":
        doc, expect = dict.fromkeys(keys), "no_readings"
    elif variant == "random-names":
        alphabet = string.ascii_letters + string.digits + "_.:-"
        doc = {"".join(rng.choices(alphabet, k=12)): 1 for _ in range(10_000)}
        expect = STORED
    else:
        doc, expect = {k: {"v": 1} for k in keys}, "no_readings"
    return Message(topic(device), dumps(doc), expect)


def gen_oversize(ctx: Ctx) -> Message:
    """Payloads just over MQTTHUB_MAX_PAYLOAD, exactly at it, and 2-3 MiB (every 20th)."""
    rng, limit, device = ctx.rng, ctx.run.max_payload, ctx.device()
    if ctx.count % 20 == 0:
        size = rng.randint(2 * MIB, 3 * MIB)
        payload = rng.choice((_padded(size), rng.randbytes(size)))
        return Message(topic(device), payload, TOO_LARGE)
    case = ctx.cycle(("over-1", "over-100", "exact", "status", "heartbeat", "over-1"))
    if case == "exact":
        return Message(topic(device), _padded(limit), STORED)
    size = limit + (100 if case == "over-100" else 1)
    kind = case if case in ("status", "heartbeat") else "sensor"
    return Message(topic(device, kind), _padded(size), "payload_too_large")


def _padded(size: int) -> bytes:
    """A valid sensor document of exactly ``size`` bytes."""
    head = b'{"t":1,"pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'
