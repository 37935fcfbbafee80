"""Pure parsing and validation of device topics and payloads (no I/O).

Topics are ``{prefix}/{device_id}/{kind}`` with kind ``status``, ``sensor`` or
``heartbeat``. :func:`parse` turns one MQTT message into an :class:`Accepted` message or a
:class:`Rejected` one whose :class:`Reason` is stable and machine-readable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import FrozenInstanceError, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

import orjson

# Ids of 1-64 characters; "." and ".." are refused (they are path segments in URLs).
DEVICE_ID_PATTERN = re.compile(r"(?!\.\.?$)[A-Za-z0-9_.:-]{1,64}")
MAX_DEVICE_ID = 64
METRIC_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_METRIC_NAME = 64
RESERVED_KEYS = frozenset({"device_id", "ts", "status"})
# Epoch values at or above this are milliseconds (1e11 s is the year 5138).
MILLISECONDS_THRESHOLD = 1e11
# Earliest plausible device timestamp: 2001-09-09 (1e9 s). Smaller values are usually
# seconds since boot from a device without a real-time clock.
EARLIEST_TS = 1e9
MAX_CLOCK_AHEAD_S = 24 * 3600


class Kind(StrEnum):
    """What a device message carries, from the last topic level."""

    STATUS = "status"
    SENSOR = "sensor"
    HEARTBEAT = "heartbeat"


_KINDS = {kind.value: kind for kind in Kind}


class Reason(StrEnum):
    """Why a message went to dead letters (stable codes for APIs and metrics)."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NON_FINITE_NUMBER = "non_finite_number"
    INVALID_TYPE = "invalid_type"
    INVALID_TIMESTAMP = "invalid_timestamp"
    INVALID_METRIC_NAME = "invalid_metric_name"
    NO_READINGS = "no_readings"
    INVALID_STATUS = "invalid_status"
    BAD_TOPIC = "bad_topic"
    BAD_DEVICE_ID = "bad_device_id"
    DEVICE_ID_MISMATCH = "device_id_mismatch"
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
    UNKNOWN_DEVICE = "unknown_device"
    STORE_REJECTED = "store_rejected"
    INTERNAL_ERROR = "internal_error"


class Status(StrEnum):
    """A device's reported connection status."""

    ONLINE = "online"
    OFFLINE = "offline"


#: One numeric value of one metric at one time: ``(metric, value, ts)``, ts in epoch
#: seconds UTC. A plain tuple because the parser makes millions of them.
Reading = tuple[str, float, float]
#: All values one device reported for one time: ``(device_id, ts, {metric: value})``, the
#: metrics in payload order. What the store keeps as one row (see ``store.samples``); a
#: plain tuple because there is one per message.
Sample = tuple[str, float, dict[str, float]]


class Accepted:
    """A valid device message (immutable).

    Attributes:
        device_id: from the topic.
        kind: status, sensor or heartbeat.
        ts: when the device says it happened, else when the server received it.
        readings: numeric values (sensor messages, and numbers in heartbeats), one
            ``(metric, value, ts)`` per value in payload order.
        status: the reported status, for status messages.
        timed: True when the payload carried its own ``ts``.
        samples: the same values grouped by time, one :data:`Sample` per distinct ts (a
            metric repeated at one time keeps its first value, as the store keeps the
            first delivery): what the pipeline stores.

    The parser builds the samples straight from the decoded JSON (``sample=`` for the usual
    message, one object at one time) and ``readings`` are derived only when asked for;
    built from ``readings`` (tests do), ``samples`` is derived.
    """

    __slots__ = ("_readings", "_sample", "_samples", "device_id", "kind", "status", "timed", "ts")

    device_id: str
    kind: Kind
    ts: float
    status: Status | None
    timed: bool
    _readings: tuple[Reading, ...] | None
    _samples: tuple[Sample, ...] | None
    _sample: Sample | None

    def __init__(
        self,
        device_id: str,
        kind: Kind,
        ts: float,
        readings: Sequence[Reading] | None = None,
        status: Status | None = None,
        timed: bool = False,
        *,
        samples: tuple[Sample, ...] | None = None,
        sample: Sample | None = None,
    ) -> None:
        """Make a message from its ``readings`` or, as the parser does, its ``samples``."""
        if readings is None and samples is None and sample is None:
            readings = ()
        _set = object.__setattr__
        _set(self, "device_id", device_id)
        _set(self, "kind", kind)
        _set(self, "ts", ts)
        _set(self, "status", status)
        _set(self, "timed", timed)
        _set(self, "_readings", None if readings is None else tuple(readings))
        _set(self, "_samples", samples)
        # One sample is kept without a tuple around it: one object less per message for
        # the garbage collector to count and traverse while the batch lives.
        _set(self, "_sample", sample)

    @property
    def readings(self) -> tuple[Reading, ...]:
        """The values as ``(metric, value, ts)``, in payload order."""
        readings = self._readings
        if readings is None:
            readings = tuple(
                (metric, value, ts)
                for _device_id, ts, metrics in self.samples
                for metric, value in metrics.items()
            )
            object.__setattr__(self, "_readings", readings)
        return readings

    @property
    def samples(self) -> tuple[Sample, ...]:
        """The values grouped by time: one ``(device_id, ts, {metric: value})`` per ts."""
        samples = self._samples
        if samples is None:
            if self._sample is not None:
                return (self._sample,)
            samples = group_readings(self.device_id, self.readings)
            object.__setattr__(self, "_samples", samples)
        return samples

    def _key(self) -> tuple[object, ...]:
        return (self.device_id, self.kind, self.ts, self.readings, self.status, self.timed)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Accepted)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Accepted(device_id={self.device_id!r}, kind={self.kind!r}, ts={self.ts!r}, "
            f"readings={self.readings!r}, status={self.status!r}, timed={self.timed!r})"
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


def group_readings(device_id: str, readings: Sequence[Reading]) -> tuple[Sample, ...]:
    """Group readings by time, in order of first appearance; a metric repeated at one
    time keeps its first value (as the store keeps the first delivery)."""
    if not readings:
        return ()
    by_ts: dict[float, dict[str, float]] = {}
    for metric, value, at in readings:
        by_ts.setdefault(at, {}).setdefault(metric, value)
    return tuple((device_id, at, values) for at, values in by_ts.items())


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that cannot be accepted, with a reason code and a human detail."""

    reason: Reason
    detail: str
    device_id: str | None = None
    kind: Kind | None = None


class _InvalidPayloadError(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def subscriptions(prefix: str) -> tuple[str, ...]:
    """The topic filters ``serve`` subscribes to for a topic prefix.

    One filter, ``{prefix}/+/+``, covers status, sensor and heartbeat and also brings in
    messages of unknown types so they land in dead letters instead of vanishing. (Three
    overlapping filters would make MQTT 5 brokers deliver some messages twice.)
    """
    return (f"{prefix}/+/+",)


def max_packet_size(max_payload: int) -> int:
    """The MQTT 5 Maximum Packet Size ``serve`` announces for ``MQTTHUB_MAX_PAYLOAD``.

    Payloads up to one more ``max_payload`` over the limit still arrive and become
    ``payload_too_large`` dead letters that an operator can see; the broker drops larger
    packets instead of sending them (so a 30 MB publish is never read into memory). The
    65,600 bytes of headroom cover the longest topic and the packet's own fields.
    """
    return min(2 * max_payload + 65_600, 268_435_455)


def parse(
    topic: str, payload: bytes, *, received_at: float, prefix: str, max_payload: int
) -> Accepted | Rejected:
    """Validate one MQTT message from a device.

    Args:
        topic: the MQTT topic, e.g. ``devices/esp8266/sensor``.
        payload: the raw payload bytes.
        received_at: server receive time in epoch seconds, used when the payload has no ts.
        prefix: the configured topic prefix (``devices``).
        max_payload: the largest accepted payload in bytes.
    """
    route = _ROUTES.get(topic)  # topics repeat: split and check each one once
    if route is None or route[0] != prefix:
        routed = _route(topic, prefix)
        if isinstance(routed, Rejected):
            return routed
        route = routed
    _prefix, device_id, kind = route
    if len(payload) > max_payload:
        return Rejected(
            Reason.PAYLOAD_TOO_LARGE,
            f"payload is {len(payload)} bytes, limit is {max_payload} (MQTTHUB_MAX_PAYLOAD)",
            device_id,
            kind,
        )
    try:
        if kind is Kind.SENSOR:
            return _parse_sensor(device_id, payload, received_at)
        if kind is Kind.STATUS:
            return _parse_status(device_id, payload, received_at)
        return _parse_heartbeat(device_id, payload, received_at)
    except _InvalidPayloadError as invalid:
        return Rejected(invalid.reason, invalid.detail, device_id, kind)


#: topic -> (prefix, device_id, kind) of topics already seen (valid ones only, so at most
#: 65,536 topics of at most a prefix, a 64-character id and a kind each).
_ROUTES: dict[str, tuple[str, str, Kind]] = {}
_MAX_ROUTES = 65536


def _route(topic: str, prefix: str) -> tuple[str, str, Kind] | Rejected:
    """The device id and kind of ``topic``, or why it is refused (cached when valid)."""
    levels = topic.split("/")
    prefix_levels = prefix.count("/") + 1
    if len(levels) != prefix_levels + 2 or "/".join(levels[:prefix_levels]) != prefix:
        return Rejected(
            Reason.BAD_TOPIC, f"topic {topic!r:.200} is not {prefix}/<device_id>/<type>"
        )
    device_id, kind_name = levels[prefix_levels], levels[prefix_levels + 1]
    if not valid_device_id(device_id):
        return Rejected(
            Reason.BAD_DEVICE_ID,
            f"device id {device_id!r:.100} must match [A-Za-z0-9_.:-]{{1,64}} "
            "and not be '.' or '..'",
        )
    kind = _KINDS.get(kind_name)  # a dict lookup: Kind(name) costs ~10% of the writer
    if kind is None:
        return Rejected(
            Reason.UNKNOWN_MESSAGE_TYPE,
            f"message type {kind_name!r:.80} is not one of status, sensor, heartbeat",
            device_id,
        )
    if len(_ROUTES) >= _MAX_ROUTES:
        _ROUTES.clear()
    route = _ROUTES[topic] = (prefix, device_id, kind)
    return route


def _parse_sensor(device_id: str, payload: bytes, received_at: float) -> Accepted:
    document = _load_json(payload)
    if document.__class__ is dict:  # the usual message: one object, one time
        if document.get("device_id", device_id) != device_id:
            _check_device_id(device_id, document)
        ts = received_at if document.get("ts") is None else _timestamp(document, received_at)
        metrics = _metrics(document)
        if not metrics:
            raise _InvalidPayloadError(
                Reason.NO_READINGS, "no numeric or boolean values in the payload"
            )
        sample = (device_id, ts, metrics)
        return Accepted(device_id, Kind.SENSOR, ts, timed="ts" in document, sample=sample)
    items = document if isinstance(document, list) else [document]
    if not items:
        raise _InvalidPayloadError(Reason.NO_READINGS, "empty array")
    readings: list[Reading] = []
    latest = None
    for item in items:
        if not isinstance(item, dict):
            raise _InvalidPayloadError(
                Reason.INVALID_TYPE,
                f"sensor payload must be an object or an array of objects, got {_kind(item)}",
            )
        _check_device_id(device_id, item)
        ts = _timestamp(item, received_at)
        latest = ts if latest is None else max(latest, ts)
        readings.extend((metric, value, ts) for metric, value in _metrics(item).items())
    if not readings:
        raise _InvalidPayloadError(
            Reason.NO_READINGS, "no numeric or boolean values in the payload"
        )
    assert latest is not None
    timed = any("ts" in item for item in items)
    return Accepted(device_id, Kind.SENSOR, latest, readings, timed=timed)


def _parse_status(device_id: str, payload: bytes, received_at: float) -> Accepted:
    text = _decode(payload).strip()
    value: Any = text
    ts = received_at
    timed = False
    if text.startswith(("{", '"')):
        document = _load_json(payload)
        if isinstance(document, dict):
            _check_device_id(device_id, document)
            ts = _timestamp(document, received_at)
            value = document.get("status")
            timed = "ts" in document
        else:
            value = document
    if not isinstance(value, str) or value.strip().lower() not in Status.__members__.values():
        raise _InvalidPayloadError(
            Reason.INVALID_STATUS, f"status must be 'online' or 'offline', got {value!r:.80}"
        )
    status = Status(value.strip().lower())
    return Accepted(device_id, Kind.STATUS, ts, status=status, timed=timed)


def _parse_heartbeat(device_id: str, payload: bytes, received_at: float) -> Accepted:
    """Any payload is a heartbeat; a JSON object also contributes its numbers as readings."""
    if not payload.lstrip().startswith(b"{"):
        return Accepted(device_id, Kind.HEARTBEAT, received_at)
    document = _load_json(payload)
    if not isinstance(document, dict):
        return Accepted(device_id, Kind.HEARTBEAT, received_at)
    _check_device_id(device_id, document)
    ts = _timestamp(document, received_at)
    metrics = _metrics(document)
    if not metrics:
        return Accepted(device_id, Kind.HEARTBEAT, ts, (), timed="ts" in document)
    sample = (device_id, ts, metrics)
    return Accepted(device_id, Kind.HEARTBEAT, ts, timed="ts" in document, sample=sample)


def _decode(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _InvalidPayloadError(
            Reason.INVALID_UTF8, f"payload is not UTF-8 ({exc.reason})"
        ) from None


def _load_json(payload: bytes) -> Any:
    """Parse JSON quickly; on failure, find out precisely why for the dead letter."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    text = _decode(payload)
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except _InvalidPayloadError:
        raise
    except ValueError as exc:
        raise _InvalidPayloadError(Reason.INVALID_JSON, f"payload is not JSON: {exc}") from None
    except RecursionError:
        raise _InvalidPayloadError(
            Reason.INVALID_JSON, "payload is JSON nested too deeply (over 1,000 levels)"
        ) from None
    _check_finite(document)
    return document


def _reject_constant(name: str) -> Any:
    raise _InvalidPayloadError(Reason.NON_FINITE_NUMBER, f"{name} is not a finite number")


def _check_finite(value: Any) -> None:
    """Reject numbers JSON parsed as infinite (1e999) or too large to be a float."""
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item)
    elif isinstance(value, list):
        for item in value:
            _check_finite(item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _InvalidPayloadError(Reason.NON_FINITE_NUMBER, "a number overflows to infinity")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        raise _InvalidPayloadError(Reason.NON_FINITE_NUMBER, "an integer is too large to store")


def _check_device_id(device_id: str, document: dict[str, Any]) -> None:
    claimed = document.get("device_id")
    if claimed is not None and claimed != device_id:
        raise _InvalidPayloadError(
            Reason.DEVICE_ID_MISMATCH,
            f"payload device_id {claimed!r:.80} does not match topic device id {device_id!r}",
        )


#: Metric names already found valid (a set lookup instead of a regular expression per
#: value; cleared when full, so memory stays bounded).
_VALID_METRICS: set[str] = set()
_MAX_VALID_METRICS = 4096


def is_metric_name(name: str) -> bool:
    """True when ``name`` is a valid metric name: ``[A-Za-z0-9_.:-]{1,64}``."""
    return len(name) <= MAX_METRIC_NAME and METRIC_PATTERN.fullmatch(name) is not None


def _valid_metric(name: str) -> bool:
    if not is_metric_name(name):
        return False
    if len(_VALID_METRICS) >= _MAX_VALID_METRICS:
        _VALID_METRICS.clear()
    _VALID_METRICS.add(name)
    return True


def valid_device_id(device_id: str) -> bool:
    """True when ``device_id`` matches ``[A-Za-z0-9_.:-]{1,64}`` and is not ``.`` or ``..``."""
    return len(device_id) <= MAX_DEVICE_ID and _valid_short_id(device_id)


@lru_cache(maxsize=65536)
def _valid_short_id(device_id: str) -> bool:
    # Only ids of at most MAX_DEVICE_ID characters reach the cache: bounded memory.
    return DEVICE_ID_PATTERN.fullmatch(device_id) is not None


_NUMBERS = (int, float)


def _metrics(document: dict[str, Any]) -> dict[str, float]:
    """The numeric and boolean values of one object as floats, in payload order (one pass
    from the decoded JSON to what the store keeps)."""
    metrics: dict[str, float] = {}
    valid = _VALID_METRICS
    for key, value in document.items():
        cls = type(value)
        if cls is not float:  # exact types first: isinstance with a union costs ~0.1 µs
            if cls is int or cls is bool:
                value = float(value)
            elif cls is str or not isinstance(value, _NUMBERS):
                continue
            else:
                value = float(value)
        if key in valid:
            metrics[key] = value
        elif key in RESERVED_KEYS:
            continue
        elif _valid_metric(key):
            metrics[key] = value
        else:
            raise _InvalidPayloadError(
                Reason.INVALID_METRIC_NAME, f"metric name {key!r:.80} must match [A-Za-z0-9_.:-]"
            )
    return metrics


def _timestamp(document: dict[str, Any], received_at: float) -> float:
    raw = document.get("ts")
    if raw is None:
        return received_at
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _InvalidPayloadError(
            Reason.INVALID_TIMESTAMP, f"ts must be a number or ISO 8601, got {raw!r:.80}"
        )
    if isinstance(raw, str):
        ts = _iso_timestamp(raw)
    else:
        ts = raw / 1000.0 if raw >= MILLISECONDS_THRESHOLD else float(raw)
    if not EARLIEST_TS <= ts <= received_at + MAX_CLOCK_AHEAD_S:
        raise _InvalidPayloadError(
            Reason.INVALID_TIMESTAMP,
            f"ts {raw!r:.80} is not a plausible time (before 2001-09-09 or more than a day ahead; "
            "a device without a clock should omit ts)",
        )
    return ts


def _iso_timestamp(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _InvalidPayloadError(
            Reason.INVALID_TIMESTAMP, f"ts {text!r:.80} is not ISO 8601"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else "null"
    )
