"""The mix: every kind with its share, the sending order, and how a topic is traced back
to the kind that made it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fuzzing.model import APP_PREFIX, CANARY, MAX_TOPIC, PREFIX, STORED, Ctx, Message, Run, topic
from fuzzing.payloads import (
    gen_empty,
    gen_hugeint,
    gen_mutate,
    gen_nested,
    gen_nonfinite,
    gen_random,
    gen_types,
    gen_utf8,
    gen_valid,
)
from fuzzing.topics import gen_longid, gen_receipts, gen_topics, gen_unicode, gen_unktype
from fuzzing.values import gen_manykeys, gen_metrics, gen_mismatch, gen_oversize, gen_status, gen_ts


def _inner(ctx: Ctx, kind: str) -> Message:
    """A message of ``kind`` from its generator, on ``ctx``'s child of that name."""
    if kind == "valid":
        return gen_valid(ctx.child("valid"), ctx.device())
    makers = {
        "types": gen_types,
        "nonfinite": gen_nonfinite,
        "random": gen_random,
        "mutate": gen_mutate,
    }
    return makers[kind](ctx.child(kind))


def gen_retained(ctx: Ctx) -> Message:
    """Valid and hostile messages with the retain flag set (a few topics, replaced often)."""
    inner = ctx.cycle(("valid", "valid", "types", "nonfinite", "random", "empty"))
    if inner == "empty":  # an empty retained message clears the topic's retained message
        message = Message(topic(ctx.device(), "heartbeat"), b"", STORED)
    else:
        message = _inner(ctx, inner)
    return Message(message.topic, message.payload, message.expect, message.seqs, retain=True)


def gen_dup(ctx: Ctx) -> Message:
    """QoS 1 messages sent twice with the same packet id, the second with DUP set."""
    message = _inner(ctx, ctx.cycle(("valid", "valid", "valid", "nonfinite", "types", "mutate")))
    return Message(message.topic, message.payload, message.expect, message.seqs, qos=1, copies=2)


@dataclass(frozen=True)
class KindSpec:
    """One generator: its name, device tag(s), share of the messages and minimum count."""

    name: str
    tags: tuple[str, ...]
    share: float
    minimum: int
    make: Callable[[Ctx], Message]


KINDS = (
    KindSpec("valid", ("valid",), 0.0, 0, gen_valid),  # whatever the others leave
    KindSpec("mutate", ("mut",), 0.12, 70, gen_mutate),
    KindSpec("random", ("rand",), 0.05, 20, gen_random),
    KindSpec("utf8", ("utf8",), 0.03, 40, gen_utf8),
    KindSpec("nonfinite", ("nan",), 0.03, 50, gen_nonfinite),
    KindSpec("hugeint", ("huge",), 0.02, 32, gen_hugeint),
    KindSpec("types", ("type",), 0.03, 52, gen_types),
    KindSpec("ts", ("ts",), 0.03, 70, gen_ts),
    KindSpec("mismatch", ("mis",), 0.02, 26, gen_mismatch),
    KindSpec("unktype", ("unk",), 0.02, 38, gen_unktype),
    KindSpec("status", ("stat",), 0.03, 54, gen_status),
    KindSpec("metrics", ("metric",), 0.02, 60, gen_metrics),
    KindSpec("empty", ("empty",), 0.02, 12, gen_empty),
    KindSpec("unicode", ("uni", "ctl"), 0.01, 44, gen_unicode),
    KindSpec("topics", ("top",), 0.01, 30, gen_topics),
    KindSpec("receipts", ("rcpt",), 0.01, 48, gen_receipts),
    KindSpec("retained", ("ret",), 0.01, 24, gen_retained),
    KindSpec("dup", ("dup",), 0.02, 24, gen_dup),
    KindSpec("nested", ("nested",), 0.005, 40, gen_nested),
    KindSpec("longid", ("long",), 0.0025, 16, gen_longid),
    KindSpec("manykeys", ("keys",), 0.0003, 12, gen_manykeys),
    KindSpec("oversize", ("big",), 0.0003, 6, gen_oversize),
)

KIND_BY_NAME = {kind.name: kind for kind in KINDS}
KIND_BY_TAG = {tag: kind.name for kind in KINDS for tag in kind.tags}


def plan_counts(messages: int, skip: frozenset[str]) -> dict[str, int]:
    """How many messages each kind makes; valid ones fill up to ``messages``."""
    counts = {
        kind.name: max(kind.minimum, round(kind.share * messages))
        for kind in KINDS
        if kind.name != "valid" and kind.name not in skip
    }
    counts["valid"] = max(0, messages - sum(counts.values()))
    return counts


def schedule(messages: int, seed: int, skip: frozenset[str]) -> list[str]:
    """The kind of each message in sending order: every kind spread over the whole run."""
    names = [name for name, count in plan_counts(messages, skip).items() for _ in range(count)]
    random.Random(f"{seed}/mix").shuffle(names)
    return names


def generate(config: dict[str, Any]) -> Iterator[tuple[str, Message, int]]:
    """(kind, message, qos) for the whole run, deterministic from the seed."""
    run = Run(now=config["now"], max_payload=config["max_payload"])
    seed = config["seed"]
    contexts = {kind.name: Ctx(run, seed, kind.name, kind.tags[0]) for kind in KINDS}
    mix = random.Random(f"{seed}/qos")
    for name in schedule(config["messages"], seed, frozenset(config["skip"])):
        ctx = contexts[name]
        message = KIND_BY_NAME[name].make(ctx)
        ctx.count += 1
        qos = message.qos if message.qos is not None else mix.randrange(2)
        if len(message.topic) > MAX_TOPIC:
            raise ValueError(f"{name}: topic of {len(message.topic)} bytes")
        yield name, message, qos


def classify(topic_head: str) -> str:
    """The kind that made a message, from its topic (the device id starts with a tag)."""
    if topic_head.startswith(APP_PREFIX + "/"):
        return "receipts"
    levels = topic_head.split("/")
    device = levels[1] if len(levels) > 1 else ""
    if device in ("", ".", ".."):
        return "topics"
    return KIND_BY_TAG.get(device.split("-", 1)[0], CANARY if device == CANARY else "unknown")


def is_downlink(topic_head: str) -> bool:
    """True for topics serve routes to the downlink (receipts, replies, app status, echo)."""
    if topic_head.startswith(APP_PREFIX + "/"):
        return True
    levels = topic_head.split("/")
    return len(levels) >= 3 and levels[0] == PREFIX and levels[2] == "command"


def broker_may_refuse(name: bytes) -> bool:
    """Topics MQTT brokers may answer with a disconnect: controls, bad UTF-8, wildcards."""
    try:
        text = name.decode()
    except UnicodeDecodeError:
        return True
    if name.count(b"/") > 200:  # Mosquitto 2.0 refuses deeper topic hierarchies
        return True
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "+#\ufffe\uffff" for c in text)
