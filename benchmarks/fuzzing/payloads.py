"""Generators of valid messages and of broken documents: mutations, random bytes,
invalid UTF-8, deep nesting, non-finite and huge numbers, wrong types, empty payloads.

Each generator takes its kind's :class:`~fuzzing.model.Ctx` and returns one
:class:`~fuzzing.model.Message` with the outcome the README promises for it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from fuzzing.model import (
    ANY,
    DEAD,
    STORED,
    VALID_DEVICES,
    Ctx,
    Message,
    dumps,
    iso_time,
    reading,
    topic,
)


def gen_valid(ctx: Ctx, device: str | None = None) -> Message:
    """Valid sensor (flat, ts in s/ms/ISO, arrays), heartbeat and status messages."""
    run, rng = ctx.run, ctx.rng
    device = device or f"valid-{rng.randrange(VALID_DEVICES)}"
    roll = rng.random()
    if roll < 0.08:
        if rng.random() < 0.5:
            return Message(topic(device, "status"), rng.choice((b"online", b"offline")), STORED)
        status = {"device_id": device, "status": rng.choice(("online", "offline"))}
        return Message(topic(device, "status"), dumps(status), STORED)
    if roll < 0.15:
        payload = rng.choice((b"", b"1", b"alive", b"ok\n", b"[1,2]"))
        return Message(topic(device, "heartbeat"), payload, STORED)
    if roll < 0.25:
        seq = next(run.seqs)
        doc: dict[str, Any] = {"seq": seq, "uptime": rng.randrange(10**6)}
        if rng.random() < 0.5:
            doc["ts"] = run.ts(seq)
        return Message(topic(device, "heartbeat"), dumps(doc), STORED, (seq,))
    if roll < 0.35:  # an array of readings, each with its own time
        seqs = tuple(next(run.seqs) for _ in range(rng.randint(2, 3)))
        items = [reading(rng, device, s, run.ts(s)) for s in seqs]
        return Message(topic(device), dumps(items), STORED, seqs)
    seq = next(run.seqs)
    form = rng.random()
    ts: Any = None
    if form < 0.3:
        ts = run.ts(seq)
    elif form < 0.5:
        ts = round(run.ts(seq) * 1000)
    elif form < 0.7:
        ts = iso_time(run.ts(seq), rng)
    return Message(topic(device), dumps(reading(rng, device, seq, ts)), STORED, (seq,))


def _flip(rng: random.Random, data: bytearray) -> bytearray:
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return data


def _bitflip(rng: random.Random, data: bytearray) -> bytearray:
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return data


def _truncate(rng: random.Random, data: bytearray) -> bytearray:
    return data[: rng.randrange(len(data))]


def _duplicate(rng: random.Random, data: bytearray) -> bytearray:
    if rng.random() < 0.5:
        return data + data
    start = rng.randrange(len(data))
    piece = data[start : start + rng.randint(1, 40)]
    at = rng.randrange(len(data))
    return data[:at] + piece * rng.randint(1, 50) + data[at:]


def _insert(rng: random.Random, data: bytearray) -> bytearray:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]


def _delete(rng: random.Random, data: bytearray) -> bytearray:
    start = rng.randrange(len(data))
    return data[:start] + data[start + rng.randint(1, 20) :]


def _structure(rng: random.Random, data: bytearray) -> bytearray:
    marks = [i for i, byte in enumerate(data) if byte in b'{}[]:,"']
    if marks:
        data[rng.choice(marks)] = rng.choice(b'{}[]:,"0-e.')
    return data


MUTATIONS = (_flip, _bitflip, _truncate, _duplicate, _insert, _delete, _structure)


def gen_mutate(ctx: Ctx) -> Message:
    """Valid payloads with bytes flipped, truncated, duplicated, inserted or deleted."""
    rng, device = ctx.rng, ctx.device()
    seq = rng.randrange(10**6)  # not from the valid counter: a mutant proves nothing
    shape = rng.randrange(4)
    if shape == 0:
        kind, doc = "sensor", reading(rng, device, seq, ctx.run.ts(seq))
    elif shape == 1:
        kind, doc = "sensor", [reading(rng, device, seq + i, ctx.run.ts(seq + i)) for i in (0, 1)]
    elif shape == 2:
        kind, doc = "status", {"device_id": device, "status": "online"}
    else:
        kind, doc = "heartbeat", {"uptime": seq, "ts": ctx.run.ts(seq)}
    mutation = ctx.cycle(MUTATIONS)
    payload = bytes(mutation(rng, bytearray(dumps(doc))))
    return Message(topic(device, kind), payload, ANY)


def gen_random(ctx: Ctx) -> Message:
    """Random bytes, 0 B to 16 KiB."""
    rng = ctx.rng
    size = rng.choice((rng.randint(0, 64), rng.randint(64, 1024), rng.randint(1024, 16384)))
    kind = ctx.cycle(("sensor", "status", "sensor", "heartbeat"))
    expect = ANY if kind == "heartbeat" else DEAD
    return Message(topic(ctx.device(), kind), rng.randbytes(size), expect)


BAD_UTF8 = (
    b"\xff",
    b"\xfe\xff",
    b"\xc0\xaf",  # overlong "/"
    b"\xe0\x80\xaf",  # overlong, 3 bytes
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # 5-byte form
    b"\x80",  # lone continuation byte
    b"\xc3",  # truncated sequence
    b"\xe2\x82",
)

UTF8_PLACES: tuple[tuple[str, Callable[[bytes], bytes], str], ...] = (
    ("sensor", lambda b: b'{"t":1,"x":"' + b + b'"}', "invalid_utf8"),
    ("sensor", lambda b: b'{"' + b + b'":1}', "invalid_utf8"),
    ("sensor", lambda b: b'{"t":1}' + b, "invalid_utf8"),
    ("sensor", lambda b: b + b'{"t":1}', "invalid_utf8"),
    ("status", lambda b: b"online" + b, "invalid_utf8"),
    ("status", lambda b: b'{"status":"online","x":"' + b + b'"}', "invalid_utf8"),
    ("heartbeat", lambda b: b'{"t":1,"x":"' + b + b'"}', ANY),
    ("heartbeat", lambda b: b"alive" + b, STORED),  # any non-object payload is a heartbeat
)


def gen_utf8(ctx: Ctx) -> Message:
    """Invalid UTF-8 in values, keys, around the document and in plain text."""
    kind, build, expect = ctx.cycle(UTF8_PLACES)
    return Message(topic(ctx.device(), kind), build(ctx.rng.choice(BAD_UTF8)), expect)


def nested(depth: int, shape: str, closed: bool) -> bytes:
    if shape == "array":
        return b"[" * depth + (b"]" * depth if closed else b"")
    return b'{"a":' * depth + (b"1" + b"}" * depth if closed else b"")


def gen_nested(ctx: Ctx) -> Message:
    """Arrays and objects nested 1,000-5,000 levels, and 100,000 levels (every 40th)."""
    rng = ctx.rng
    depth = 100_000 if ctx.count % 40 == 0 else rng.choice((1000, 1023, 1024, 1025, 1100, 5000))
    shape, closed = rng.choice(("array", "object")), rng.random() < 0.8
    body = nested(depth, shape, closed)
    case = ctx.cycle(("sensor", "inside", "status", "heartbeat", "array-of-objects"))
    device = ctx.device()
    if case == "inside":  # a real reading next to a deep value
        return Message(topic(device), b'{"t":1,"x":' + body + b"}", ANY)
    if case == "array-of-objects":
        half = depth // 2
        return Message(topic(device), b'[{"a":' * half + b"1" + b"}]" * half, DEAD)
    if case == "heartbeat":
        expect = STORED if shape == "array" else ANY  # not an object: any payload is fine
        return Message(topic(device, "heartbeat"), body, expect)
    return Message(topic(device, case), body, DEAD)


NONFINITE = (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1E+400", b"2e308")
NOT_JSON_NUMBERS = (b"nan", b"-NaN", b"+Infinity", b"inf", b"NaNa", b"Infinity1", b"0x10")

NONFINITE_PLACES: tuple[tuple[str, Callable[[bytes], bytes]], ...] = (
    ("sensor", lambda t: b'{"t":1,"x":' + t + b"}"),
    ("sensor", lambda t: b'{"t":1,"ts":' + t + b"}"),
    ("sensor", lambda t: b'{"t":1,"x":[1,' + t + b"]}"),
    ("sensor", lambda t: b'{"t":1,"x":{"y":' + t + b"}}"),
    ("sensor", lambda t: b'[{"t":1},{"t":' + t + b"}]"),
    ("status", lambda t: b'{"status":"online","x":' + t + b"}"),
    ("heartbeat", lambda t: b'{"x":' + t + b"}"),
)


def gen_nonfinite(ctx: Ctx) -> Message:
    """NaN, Infinity and overflowing numbers (1e999) in values, ts, lists, arrays."""
    rng, device = ctx.rng, ctx.device()
    roll = rng.random()
    if roll < 0.15:  # not JSON at all
        return Message(topic(device), b'{"t":1,"x":' + rng.choice(NOT_JSON_NUMBERS) + b"}", DEAD)
    if roll < 0.2:  # a string that merely says NaN is an ignored string
        return Message(topic(device), b'{"t":1,"x":"NaN"}', STORED)
    kind, build = ctx.cycle(NONFINITE_PLACES)
    return Message(topic(device, kind), build(rng.choice(NONFINITE)), "non_finite_number")


HUGE_INTS: tuple[tuple[str, str], ...] = (
    (str(2**63 - 1), STORED),
    (str(-(2**63)), STORED),
    ("1.7976931348623157e308", STORED),
    ("-0", STORED),
    (str(2**64 - 1), ANY),
    (str(2**64), ANY),
    (str(10**30), ANY),
    (str(-(10**30)), ANY),
    (str(10**308), ANY),
    ("1e-400", ANY),
    (str(10**309), DEAD),  # no float can hold it
    (str(10**400), DEAD),
    (str(-(10**400)), DEAD),
    ("9" * 4300, DEAD),
    ("9" * 5000, DEAD),
    ("1" + "0" * 20000, DEAD),
)


def gen_hugeint(ctx: Ctx) -> Message:
    """Integers from 2**63 to 20,000 digits, as values and as ts."""
    number, expect = ctx.cycle(HUGE_INTS)
    device = ctx.device()
    place = ctx.rng.randrange(4)
    if place == 0 and expect == DEAD:
        return Message(topic(device), b'{"t":1,"ts":' + number.encode() + b"}", DEAD)
    if place == 1:
        return Message(topic(device, "heartbeat"), b'{"x":' + number.encode() + b"}", expect)
    return Message(topic(device), b'{"x":' + number.encode() + b"}", expect)


TYPE_CASES: tuple[tuple[str, bytes, str], ...] = (
    ("sensor", b'"hello"', "invalid_type"),
    ("sensor", b"5", "invalid_type"),
    ("sensor", b"null", "invalid_type"),
    ("sensor", b"true", "invalid_type"),
    ("sensor", b"[1,2]", "invalid_type"),
    ("sensor", b'[[{"t":1}]]', "invalid_type"),
    ("sensor", b'[{"t":1},5]', "invalid_type"),
    ("sensor", b"[]", "no_readings"),
    ("sensor", b"{}", "no_readings"),
    ("sensor", b'{"a":"x","b":null,"c":{},"d":[]}', "no_readings"),
    ("sensor", b'{"t":[1,2]}', "no_readings"),
    ("sensor", b'{"t":"5"}', "no_readings"),
    ("sensor", b'{"t":{"value":5}}', "no_readings"),
    ("status", b'{"status":5}', "invalid_status"),
    ("status", b'{"status":["online"]}', "invalid_status"),
    ("status", b'{"status":{"v":"online"}}', "invalid_status"),
    ("status", b'{"status":true}', "invalid_status"),
    ("status", b"{}", "invalid_status"),
    ("status", b"5", "invalid_status"),
    ("status", b"null", "invalid_status"),
    ("status", b"[]", "invalid_status"),
    ("heartbeat", b"[1,2]", STORED),
    ("heartbeat", b'"x"', STORED),
    ("heartbeat", b"5", STORED),
    ("heartbeat", b'{"x":"y"}', STORED),
    ("heartbeat", b'{"x":{"y":1}}', STORED),
)


def gen_types(ctx: Ctx) -> Message:
    """Wrong JSON types: scalars, arrays of scalars, objects without readings."""
    kind, payload, expect = ctx.cycle(TYPE_CASES)
    return Message(topic(ctx.device(), kind), payload, expect)


EMPTY_CASES: tuple[tuple[str, bytes, str], ...] = (
    ("sensor", b"", DEAD),
    ("status", b"", DEAD),
    ("heartbeat", b"", STORED),
    ("sensor", b" \n\t", DEAD),
    ("status", b" ", DEAD),
    ("heartbeat", b"\n", STORED),
)


def gen_empty(ctx: Ctx) -> Message:
    """Empty and whitespace-only payloads."""
    kind, payload, expect = ctx.cycle(EMPTY_CASES)
    return Message(topic(ctx.device(), kind), payload, expect)
