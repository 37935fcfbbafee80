"""Generators of hostile topics: unknown types, 60,000-character and non-ASCII device
ids, control characters, extra levels, and downlink topics with hostile payloads.
"""

from __future__ import annotations

import string

from fuzzing.model import (
    ANY,
    APP_PREFIX,
    DEAD,
    DEVICES_PER_KIND,
    DOWNLINK,
    MAX_TOPIC,
    PREFIX,
    STORED,
    UNDELIVERED,
    Ctx,
    Message,
    topic,
)
from fuzzing.payloads import nested

UNKNOWN_TYPES = (
    "foo", "Sensor", "SENSOR", "sensors", "status ", " heartbeat", "heartbeat2", "telemetry",
    "x" * 1000, "h\u00e9artbeat", "\u0441\u0435\u043d\u0441\u043e\u0440", "data", "reply",
    "ack", "\U0001f642", "sensor.", ".", "..", "",
)  # fmt: skip


def gen_unktype(ctx: Ctx) -> Message:
    """Message types other than status, sensor and heartbeat."""
    kind = ctx.cycle(UNKNOWN_TYPES)
    return Message(topic(ctx.device(), kind), b'{"t":1}', "unknown_message_type")


def gen_longid(ctx: Ctx) -> Message:
    """Device ids of 60,000 characters (up to the 65,535-byte topic limit), and 64/65."""
    rng = ctx.rng
    case = ctx.cycle(("60k", "unique", "unique", "accents", "max-topic", "64", "65", "status"))
    kind = "status" if case == "status" else "sensor"
    expect = "bad_device_id"
    if case in ("60k", "status"):
        device = "long-" + "a" * 59_995
    elif case == "unique":  # a fresh 60,000-character id each time
        device = "long-" + "".join(rng.choices(string.ascii_lowercase, k=59_995))
    elif case == "accents":
        device = "long-" + "\u00e9" * 20_000
    elif case == "max-topic":
        device = "long-" + "b" * (MAX_TOPIC - len(f"{PREFIX}//sensor") - 5)
    elif case == "64":
        device, expect = "long-" + "c" * 59, STORED
    else:
        device = "long-" + "d" * 60
    payload = b"online" if kind == "status" else b'{"t":1}'
    return Message(topic(device, kind), payload, expect)


def gen_topics(ctx: Ctx) -> Message:
    """Extra, missing and empty topic levels; downlink-looking topics."""
    device = ctx.device()
    cases: tuple[tuple[str, str], ...] = (
        (f"{PREFIX}/{device}/sensor/extra", UNDELIVERED),
        (f"{PREFIX}/{device}/sensor/", UNDELIVERED),
        (f"{PREFIX}/{device}/a/b/c/d/e", UNDELIVERED),
        (f"/{PREFIX}/{device}/sensor", UNDELIVERED),
        (PREFIX, UNDELIVERED),
        (f"{PREFIX}/{device}", UNDELIVERED),
        (f"{PREFIX}/{device}/sensor" + "/x" * 500, UNDELIVERED),
        (f"${PREFIX}/{device}/sensor", UNDELIVERED),
        (f"{PREFIX}//sensor", "bad_device_id"),
        (f"{PREFIX}//", "bad_device_id"),
        (f"{PREFIX}/{device}/", "unknown_message_type"),
        (f"{PREFIX}/./sensor", ANY),
        (f"{PREFIX}/../sensor", ANY),
        (f"{PREFIX}/{device}/command", DOWNLINK),  # serve's own command topic
        (f"{PREFIX}/{device}/command/c1/reply", DOWNLINK),
    )
    name, expect = ctx.cycle(cases)
    return Message(name.encode(), b'{"t":1}', expect)


def gen_unicode(ctx: Ctx) -> Message:
    """Non-ASCII device ids, and control characters anywhere in the topic."""
    n = ctx.rng.randrange(DEVICES_PER_KIND)
    cases: tuple[tuple[bytes, str], ...] = (
        (topic("uni-\u00fc"), "bad_device_id"),
        (topic("uni-\u65e5\u672c\u8a9e"), "bad_device_id"),
        (topic("uni-\U0001f642"), "bad_device_id"),
        (topic("uni-\u200b"), "bad_device_id"),  # zero-width space
        (topic("uni-\u202eevil"), "bad_device_id"),  # right-to-left override
        (topic("uni-\ufeff"), "bad_device_id"),
        (topic("uni-e\u0301"), "bad_device_id"),
        (topic("uni-\uff56\uff41\uff4c\uff49\uff44"), "bad_device_id"),  # full-width
        (topic(f"uni-{n}", "s\u00e9nsor"), "unknown_message_type"),
        # Control characters, NUL, invalid UTF-8 and wildcards: Mosquitto 2.0 drops the
        # connection (sent on their own connection; delivered ones must be dead letters).
        (topic(f"ctl-{n}\x01"), "bad_device_id"),
        (topic(f"ctl-{n}\x1b[31mred"), "bad_device_id"),
        (topic(f"ctl-{n}\x7f"), "bad_device_id"),
        (topic(f"ctl-{n}\u0085"), "bad_device_id"),
        (topic(f"ctl-{n}\t"), "bad_device_id"),
        (topic(f"ctl-{n}\r\n"), "bad_device_id"),
        (topic(f"ctl-{n}\x00"), "bad_device_id"),
        (topic(f"ctl-{n}\uffff"), "bad_device_id"),
        (topic(f"ctl-{n}", "sensor\n"), "unknown_message_type"),
        (f"{PREFIX}/ctl-{n}\udc80/sensor".encode(errors="surrogateescape"), "bad_device_id"),
        (f"{PREFIX}/ctl-".encode() + b"\xed\xa0\x80/sensor", "bad_device_id"),  # surrogate
        (f"{PREFIX}/+/sensor".encode(), "bad_device_id"),
        (f"{PREFIX}/#".encode(), DEAD),
    )
    name, expect = ctx.cycle(cases)
    return Message(name, b'{"t":1}', expect)


def gen_receipts(ctx: Ctx) -> Message:
    """Task receipts, command replies and app status with hostile payloads and ids."""
    rng = ctx.rng
    recipient = rng.choice(("61016968", "r" * 30_000, "\u00e9\u00e8", "rcpt-1"))
    task = rng.choice(("0123456789abcdef", "t" * 1000, "\U0001f642"))
    where = ctx.cycle(("ack", "ack", "reply", "status"))
    if where == "ack":
        name = f"{APP_PREFIX}/tasks/{recipient}/{task}/ack"
    elif where == "reply":
        name = f"{PREFIX}/rcpt-{rng.randrange(DEVICES_PER_KIND)}/command/{task}/reply"
    else:
        name = f"{APP_PREFIX}/status/{recipient}"
    payloads = (
        nested(1100, "array", closed=True),
        nested(1100, "object", closed=True),
        nested(5000, "array", closed=False),
        b'{"state":"done"}',
        b'{"state":{"$gt":""}}',
        b'{"state":"done"' + b"," * 1000,
        b"online",
        b"",
        b'{"state":NaN}',
        b'{"state":' + b"9" * 5000 + b"}",
        b'{"state":"\xff"}',
        rng.randbytes(rng.randint(1, 2048)),
    )
    payload = ctx.cycle(payloads)
    if ctx.count % 50 == 0:
        payload = nested(100_000, rng.choice(("array", "object")), closed=True)
    return Message(name.encode(), payload, DOWNLINK)
