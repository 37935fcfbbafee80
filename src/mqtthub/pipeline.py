"""Route parsed messages into one batch of database work (pure, no I/O).

A batch holds everything one transaction writes: device updates (registration, presence,
last seen), samples (a device's readings grouped by time), and dead letters for what was
rejected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mqtthub.messages import (
    Accepted,
    Kind,
    Reason,
    Rejected,
    Status,
    parse,
)
from mqtthub.messages import Sample as Sample  # the parser builds samples from the JSON
from mqtthub.presence import DeviceState, PresenceEngine, Transition
from mqtthub.profiles import Profiles
from mqtthub.profiles.base import MetricInfo

# Dead letters keep at most this much of an oversized payload, a topic and a detail.
DEAD_LETTER_PAYLOAD_LIMIT = 4096
DEAD_LETTER_TOPIC_LIMIT = 512
DEAD_LETTER_DETAIL_LIMIT = 1024


@dataclass(slots=True)
class RawMessage:
    """One message as received from the broker.

    Attributes:
        topic: the MQTT topic.
        payload: the raw payload.
        qos: the delivery QoS.
        retain: True when the broker delivered it from its retained store.
        received_at: server receive time, epoch seconds.
        ack: resolved once the message's batch is committed; the transport then sends
            the acknowledgement (None for QoS 0 messages that need none).
        dup: True when the broker marks this as a redelivery of an earlier attempt.
        failure: set when handling the message already failed before the writer
            (e.g. a receipt that raised); it becomes an ``internal_error`` dead letter.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: float
    ack: Any = None
    dup: bool = False
    failure: str | None = None


@dataclass(slots=True)
class DeviceUpdate:
    """What a batch learned about one device (status as the presence engine ends it)."""

    device_id: str
    first_seen: float
    last_seen: float
    last_message_type: Kind
    status: Status
    heartbeat_interval: float | None = None
    status_ts: float | None = None
    last_heartbeat: float | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message to keep, with its reason."""

    received_at: float
    topic: str
    payload: bytes
    payload_size: int
    reason: Reason
    detail: str
    device_id: str | None


@dataclass(slots=True)
class Batch:
    """Everything one transaction writes, plus counts for the stats.

    Attributes:
        samples: readings to store, one :data:`Sample` per device and time, in arrival
            order (a sensor message usually gives one; an array of timed objects one per
            distinct time).
        presence_before: each device's presence before this batch touched it, so that a
            batch the database refuses can be undone in the presence engine.
    """

    devices: dict[str, DeviceUpdate] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    accepted_by_kind: Counter[str] = field(default_factory=Counter)
    accepted: list[tuple[RawMessage, Accepted]] = field(default_factory=list)
    presence_before: dict[str, DeviceState | None] = field(default_factory=dict)
    metric_info: dict[tuple[str, str], MetricInfo] = field(default_factory=dict)

    @property
    def stored(self) -> int:
        """Messages this batch stores (not counting dead letters)."""
        return len(self.accepted)

    @property
    def readings(self) -> list[tuple[str, str, float, float]]:
        """The samples as ``(device_id, metric, ts, value)`` rows, one per value."""
        return [
            (device_id, metric, ts, value)
            for device_id, ts, metrics in self.samples
            for metric, value in metrics.items()
        ]


@dataclass(frozen=True, slots=True)
class Parsed:
    """A raw message with its parse result.

    Attributes:
        result: what to store, the dead letter, or None when the message only told
            something about metrics (``info``) or nothing to store (a discovery config).
        info: units and names of metrics, of the result's device or ``info_device``.
    """

    raw: RawMessage
    result: Accepted | Rejected | None
    info: Mapping[str, MetricInfo] | None = None  # None, not {}: no dict per message
    info_device: str | None = None


def parse_all(
    messages: Sequence[RawMessage],
    *,
    prefix: str,
    max_payload: int,
    profiles: Profiles | None = None,
) -> list[Parsed]:
    """Parse every message of a batch; whatever one message raises rejects only that one.

    With ``profiles`` (``MQTTHUB_PROFILES``), each message is read by the first profile
    that reads its topic; without, by mqtthub's own parser (the default profile alone).
    """
    if profiles is not None:
        return [_decode(message, profiles, max_payload) for message in messages]
    parsed: list[Parsed] = []
    append = parsed.append
    for message in messages:  # one loop, no call per message: this runs ~20,000 times/s
        if message.failure is not None:
            append(Parsed(message, Rejected(Reason.INTERNAL_ERROR, message.failure)))
            continue
        try:
            result = parse(
                message.topic,
                message.payload,
                received_at=message.received_at,
                prefix=prefix,
                max_payload=max_payload,
            )
        except Exception as exc:  # a parser bug or a bomb must not end the batch
            result = internal_error(exc)
        append(Parsed(message, result))
    return parsed


def _decode(message: RawMessage, profiles: Profiles, max_payload: int) -> Parsed:
    if message.failure is not None:
        return Parsed(message, Rejected(Reason.INTERNAL_ERROR, message.failure))
    try:
        decoded = profiles.decode(
            message.topic, message.payload, received_at=message.received_at, max_payload=max_payload
        )
    except Exception as exc:  # a profile's bug or a bomb must not end the batch
        return Parsed(message, internal_error(exc))
    return Parsed(message, decoded.result, decoded.info, decoded.device_id)


def internal_error(exc: BaseException, device_id: str | None = None) -> Rejected:
    """The rejection for a message whose handling raised ``exc`` (names the exception type)."""
    return Rejected(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {str(exc)[:300]}", device_id)


def build_batch(
    parsed: Sequence[Parsed],
    *,
    presence: PresenceEngine,
    is_registered: Callable[[str], bool] | None = None,
    already_stored: Callable[[Parsed], bool] | None = None,
) -> Batch:
    """Turn parsed messages into one batch of database work.

    Args:
        parsed: messages in arrival order.
        presence: the presence engine; it sees every accepted message in order.
        is_registered: when given (auto-registration off), messages from devices it
            does not know become ``unknown_device`` dead letters.
        already_stored: tells whether a redelivered message's readings were stored
            before; those readings are skipped (presence still counts the message).
    """
    batch = Batch()
    for item in parsed:
        result = item.result
        if item.info and not isinstance(result, Rejected):
            device_id = result.device_id if result is not None else item.info_device
            if device_id is not None:
                for metric, info in item.info.items():
                    batch.metric_info[(device_id, metric)] = info
        if result is None:
            continue  # nothing to store (a discovery config, a unit)
        if isinstance(result, Accepted) and is_registered and not is_registered(result.device_id):
            result = Rejected(
                Reason.UNKNOWN_DEVICE,
                f"device {result.device_id!r} is not registered (MQTTHUB_AUTO_REGISTER=false)",
                result.device_id,
                result.kind,
            )
        if isinstance(result, Accepted):
            try:
                duplicate = already_stored is not None and already_stored(item)
                _apply(batch, item.raw, result, presence, store_readings=not duplicate)
                continue
            except Exception as exc:  # one message's failure is its own dead letter
                result = internal_error(exc, result.device_id)
        batch.dead_letters.append(_dead_letter(item.raw, result))
    return batch


def _apply(
    batch: Batch,
    raw: RawMessage,
    message: Accepted,
    presence: PresenceEngine,
    *,
    store_readings: bool,
) -> None:
    device_id = message.device_id
    if device_id not in batch.presence_before:
        batch.presence_before[device_id] = presence.snapshot(device_id)
    # Presence first: if it raises, this message has changed nothing in the batch yet.
    transition = presence.observe(message, received_at=raw.received_at, retained=raw.retain)
    batch.accepted_by_kind[message.kind] += 1
    batch.accepted.append((raw, message))
    if transition is not None:
        batch.transitions.append(transition)
    state = presence.devices[device_id]
    update = batch.devices.get(device_id)
    if update is None:
        batch.devices[device_id] = DeviceUpdate(
            device_id,
            raw.received_at,
            raw.received_at,
            message.kind,
            state.status,
            state.learned_interval,
            state.status_ts,
            state.last_heartbeat,
        )
    else:
        if not raw.retain:
            update.last_seen = max(update.last_seen, raw.received_at)
        update.last_message_type = message.kind
        update.status = state.status
        update.heartbeat_interval = state.learned_interval
        update.status_ts = state.status_ts
        update.last_heartbeat = state.last_heartbeat
    if store_readings:
        batch.samples.extend(message.samples)


def _dead_letter(raw: RawMessage, rejected: Rejected) -> DeadLetter:
    return DeadLetter(
        received_at=raw.received_at,
        topic=_clip(raw.topic, DEAD_LETTER_TOPIC_LIMIT),
        payload=raw.payload[:DEAD_LETTER_PAYLOAD_LIMIT]
        if rejected.reason is Reason.PAYLOAD_TOO_LARGE
        else raw.payload,
        payload_size=len(raw.payload),
        reason=rejected.reason,
        detail=_clip(rejected.detail, DEAD_LETTER_DETAIL_LIMIT),
        device_id=rejected.device_id,
    )


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
