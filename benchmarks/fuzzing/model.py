"""What the fuzz sends and expects: messages, expectations, per-kind generator state."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from suite.procs import TOPIC_PREFIX

PREFIX = TOPIC_PREFIX  # serve subscribes to bench/+/+
APP_PREFIX = "mqtt_app"
MAX_TOPIC = 65_535  # bytes: MQTT's length prefix
MIB = 1024 * 1024

# What should become of a message (else: the dead-letter reason it must get).
STORED = "stored"  # accepted and counted as stored
DEAD = "dead"  # a dead letter, whatever the reason
ANY = "any"  # stored or dead-lettered: not predictable from the README
DOWNLINK = "downlink"  # a downlink topic: received, handled by the downlink
UNDELIVERED = "undelivered"  # no subscription of serve matches the topic
# Larger than MQTTHUB_MAX_PAYLOAD by megabytes: a payload_too_large dead letter, or never
# delivered when serve announced an MQTT 5 Maximum Packet Size the broker honours.
TOO_LARGE = "payload_too_large or dropped by the broker"

VALID_DEVICES = 50  # valid messages go to valid-0 .. valid-49
DEVICES_PER_KIND = 8  # every other kind uses <tag>-0 .. <tag>-7
CANARY = "canary"


@dataclass(frozen=True, slots=True)
class Message:
    """One message to publish and what should become of it.

    Attributes:
        topic: the topic bytes (not always valid UTF-8: the broker may refuse them).
        payload: the payload bytes.
        expect: STORED, DEAD, ANY, DOWNLINK, UNDELIVERED or a dead-letter reason.
        seqs: the ``seq`` values a valid message carries (each must end up in readings).
        retain: publish with the retain flag.
        qos: 0 or 1; None lets the mix choose.
        copies: 2 sends it again with the DUP flag and the same packet id (QoS 1).
    """

    topic: bytes
    payload: bytes
    expect: str
    seqs: tuple[int, ...] = ()
    retain: bool = False
    qos: int | None = None
    copies: int = 1


@dataclass
class Run:
    """What every generator shares: the clock, the size limit and the ``seq`` counter."""

    now: float
    max_payload: int
    seqs: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def base(self) -> int:
        """Valid timestamps start an hour ago, one millisecond apart per seq."""
        return int(self.now) - 3600

    def ts(self, seq: int) -> float:
        """A unique, plausible device time for ``seq`` (epoch seconds)."""
        return self.base + seq / 1000


class Ctx:
    """One kind's generator state: its own random stream, device tag and message count."""

    def __init__(self, run: Run, seed: int, name: str, tag: str) -> None:
        self.run, self.tag, self.name = run, tag, name
        self.rng = random.Random(f"{seed}/{name}")
        self.count = 0
        self._children: dict[str, Ctx] = {}
        self._seed = seed

    def cycle(self, options: Any) -> Any:
        """Round-robin over ``options``: every case appears once per len(options) messages."""
        return options[self.count % len(options)]

    def device(self) -> str:
        """One of this kind's few device ids."""
        return f"{self.tag}-{self.rng.randrange(DEVICES_PER_KIND)}"

    def child(self, name: str) -> Ctx:
        """A generator of kind ``name`` whose devices carry this kind's tag."""
        if name not in self._children:
            self._children[name] = Ctx(self.run, self._seed, f"{self.name}/{name}", self.tag)
        child = self._children[name]
        child.count += 1
        return child


def topic(device: str, kind: str = "sensor") -> bytes:
    """``bench/<device>/<kind>``."""
    return f"{PREFIX}/{device}/{kind}".encode()


def dumps(value: Any) -> bytes:
    """Compact JSON bytes."""
    return orjson.dumps(value)


def reading(rng: random.Random, device: str, seq: int, ts: Any = None) -> dict[str, Any]:
    """A valid sensor document carrying ``seq`` (and ``ts`` when given)."""
    doc: dict[str, Any] = {"device_id": device} if rng.random() < 0.7 else {}
    doc |= {
        "seq": seq,
        "temperature": round(rng.uniform(-20, 40), 2),
        "humidity": round(rng.uniform(10, 90), 1),
        "rssi": rng.randint(-90, -30),
        "relay": rng.random() < 0.5,
        "firmware": "1.4.2",  # strings are ignored
    }
    if ts is not None:
        doc["ts"] = ts
    return doc


def iso_time(ts: float, rng: random.Random) -> str:
    """``ts`` in ISO 8601: +00:00, Z or +05:30, millisecond precision."""
    moment = datetime.fromtimestamp(ts, UTC)
    form = rng.randrange(3)
    if form == 1:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if form == 2:
        zone = timezone(timedelta(hours=5, minutes=30))
        return moment.astimezone(zone).isoformat(timespec="milliseconds")
    return moment.isoformat(timespec="milliseconds")
