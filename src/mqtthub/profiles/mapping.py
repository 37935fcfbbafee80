"""A mapping file for any other vendor's JSON topics (``MQTTHUB_MAPPINGS=path``, TOML).

Each ``[[mapping]]`` entry describes one kind of topic::

    [[mapping]]
    topic = "acme/{device}/telemetry"   # {device}: one whole level; + and # allowed
    kind = "sensor"                     # sensor, heartbeat or status
    metrics = { temperature = "env.temp", humidity = "$.env.hum", first = "values[0]" }
    # flatten = true                    # instead of metrics: every number, dotted names
    units = { temperature = "°C", humidity = "%" }
    names = { temperature = "Outdoor temperature" }
    timestamp = "meta.time"             # optional; without it, the receive time
    timestamp_format = "epoch"          # auto (default), epoch, epoch_ms, iso8601,
                                        # or a strftime format: "%d/%m/%Y %H:%M:%S"
    timezone = "Europe/Berlin"          # for times without an offset (default UTC)

    [[mapping]]
    topic = "acme/{device}/presence"
    kind = "status"
    online = ["up", "1"]                # payloads meaning online (default "online")
    offline = ["down", "0"]             # payloads meaning offline (default "offline")
    status = "state"                    # optional: the JSON path of the value instead

JSON paths are dotted keys with ``[n]`` array indexes and an optional leading ``$.``;
``$`` alone is the whole payload (a bare number). A path that is missing from a payload
gives no reading; a path whose value is an object or array gives its numbers flattened
under the metric's name; numbers written as strings are read. ``auto`` timestamps are
epoch seconds or milliseconds (numbers, as mqtthub's ``ts``) or ISO 8601 (strings).
Payloads are compared with ``online``/``offline`` ignoring case. A status without a
timestamp is untimed (an ``offline`` counts as the device's last will). A heartbeat
entry without metrics, flatten or timestamp accepts any payload. The first entry whose
topic matches a message decodes it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from mqtthub.errors import ConfigError
from mqtthub.messages import Accepted, Kind, Reason, Status, is_metric_name
from mqtthub.profiles.base import Decoded, MetricInfo
from mqtthub.profiles.flatten import (
    PayloadError,
    decode_text,
    epoch_ts,
    flatten,
    guarded,
    load_json,
    local_iso_ts,
    metric_info,
    moment_ts,
    number_value,
    text_value,
)

#: A parsed JSON path: keys and array indexes from the document's root.
Path = tuple[str | int, ...]
DEVICE = "{device}"
_KINDS = {kind.value: kind for kind in Kind}
_FORMATS = ("auto", "epoch", "epoch_ms", "iso8601")
_KEYS = {
    "topic", "kind", "metrics", "flatten", "units", "names", "timestamp",
    "timestamp_format", "timezone", "online", "offline", "status",
}  # fmt: skip
_STATUS_ONLY = ("online", "offline", "status")
_READINGS_ONLY = ("metrics", "flatten", "units", "names")
_PATH_PART = re.compile(r"([^.\[\]]*)((?:\[\d+\])*)")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``[[mapping]]`` entry, checked (see the module docstring for its keys)."""

    topic: tuple[str, ...]
    kind: Kind
    metrics: tuple[tuple[str, Path], ...] = ()
    flatten: bool = False
    info: Mapping[str, MetricInfo] | None = None
    timestamp: Path | None = None
    timestamp_format: str = "auto"
    timezone: tzinfo = UTC
    online: frozenset[str] = frozenset({"online"})
    offline: frozenset[str] = frozenset({"offline"})
    status: Path | None = None

    def subscription(self) -> str:
        """The topic filter: the pattern with ``{device}`` as ``+``."""
        return "/".join("+" if level == DEVICE else level for level in self.topic)

    def device_in(self, levels: list[str]) -> str | None:
        """The device id when the topic's ``levels`` match the pattern, else None."""
        for index, part in enumerate(self.topic):
            if part == "#":
                break
            if index >= len(levels) or part not in ("+", DEVICE, levels[index]):
                return None
        else:
            if len(levels) != len(self.topic):
                return None
        return levels[self.topic.index(DEVICE)]


class MappingProfile:
    """The topics of a mapping file (made by :func:`load_mappings`)."""

    name = "mapping"

    def __init__(self, entries: tuple[Entry, ...]) -> None:
        """Decode with ``entries``, the first matching one winning."""
        self.entries = entries

    def subscriptions(self) -> tuple[str, ...]:
        """One filter per entry, without repeats."""
        return tuple(dict.fromkeys(entry.subscription() for entry in self.entries))

    def decode(
        self, topic: str, payload: bytes, *, received_at: float, max_payload: int
    ) -> Decoded | None:
        """The message read by the first entry whose topic matches; None when none does."""
        match = self._match(topic)
        if match is None:
            return None
        entry, device_id = match
        return guarded(
            lambda: (
                Decoded(_status(entry, device_id, payload, received_at))
                if entry.kind is Kind.STATUS
                else _readings(entry, device_id, payload, received_at)
            ),
            device_id=device_id,
            kind=entry.kind,
            payload=payload,
            max_payload=max_payload,
        )

    def _match(self, topic: str) -> tuple[Entry, str] | None:
        levels = topic.split("/")
        for entry in self.entries:
            device_id = entry.device_in(levels)
            if device_id is not None:
                return entry, device_id
        return None


def _readings(entry: Entry, device_id: str, payload: bytes, received_at: float) -> Decoded:
    if not (entry.metrics or entry.flatten or entry.timestamp):
        return Decoded(Accepted(device_id, entry.kind, received_at))  # any payload
    document = load_json(payload)
    ts, timed = _time(entry, document, received_at)
    if entry.flatten:
        skip = () if entry.timestamp is None else (".".join(map(str, entry.timestamp)),)
        metrics = flatten(document, skip=skip)
    else:
        metrics = {}
        for name, path in entry.metrics:
            for metric, value in _values(name, _resolve(document, path)).items():
                metrics.setdefault(metric, value)
    if entry.kind is Kind.SENSOR and not metrics:
        raise PayloadError(Reason.NO_READINGS, "none of the mapped values is in the payload")
    samples = ((device_id, ts, metrics),) if metrics else ()
    info = {m: i for m, i in (entry.info or {}).items() if m in metrics}
    return Decoded(Accepted(device_id, entry.kind, ts, timed=timed, samples=samples), info)


def _values(name: str, value: Any) -> dict[str, float]:
    """The readings of one mapped value (a numeric string is a number; NaN is skipped)."""
    if value is _MISSING:
        return {}
    if isinstance(value, str):
        try:
            number = text_value(value)
        except PayloadError:
            return {}
        return {} if number is None else {name: number}
    return flatten(value, prefix=name)


def _status(entry: Entry, device_id: str, payload: bytes, received_at: float) -> Accepted:
    if entry.status is None:
        text, ts, timed = decode_text(payload), received_at, False
    else:
        document = load_json(payload)
        ts, timed = _time(entry, document, received_at)
        value = _resolve(document, entry.status)
        text = "" if value is _MISSING else _as_text(value)
    said = text.strip().casefold()
    if said in entry.online:
        status = Status.ONLINE
    elif said in entry.offline:
        status = Status.OFFLINE
    else:
        raise PayloadError(
            Reason.INVALID_STATUS,
            f"status {text!r:.80} is none of the mapping's online/offline payloads",
        )
    return Accepted(device_id, Kind.STATUS, ts, status=status, timed=timed)


def _time(entry: Entry, document: Any, received_at: float) -> tuple[float, bool]:
    """The payload's time and True, or the receive time and False when it has none."""
    raw = _MISSING if entry.timestamp is None else _resolve(document, entry.timestamp)
    if raw is _MISSING or raw is None:
        return received_at, False
    fmt = entry.timestamp_format
    if fmt in ("epoch", "epoch_ms") or (fmt == "auto" and not isinstance(raw, str)):
        if isinstance(raw, str):
            raw = number_value(raw)
        milliseconds = None if fmt == "auto" else fmt == "epoch_ms"
        return epoch_ts(raw, received_at=received_at, milliseconds=milliseconds), True
    if fmt in ("auto", "iso8601"):
        return local_iso_ts(raw, timezone=entry.timezone, received_at=received_at), True
    try:
        moment = datetime.strptime(raw, fmt) if isinstance(raw, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise PayloadError(Reason.INVALID_TIMESTAMP, f"time {raw!r:.80} does not match {fmt!r}")
    return moment_ts(moment, raw=raw, timezone=entry.timezone, received_at=received_at), True


def _resolve(document: Any, path: Path) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(document, list) or step >= len(document):
                return _MISSING
            document = document[step]
        elif isinstance(document, dict) and step in document:
            document = document[step]
        else:
            return _MISSING
    return document


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


# -- loading ---------------------------------------------------------------------------


def load_mappings(text: str, *, source: str = "MQTTHUB_MAPPINGS") -> MappingProfile:
    """Read a mapping file's TOML ``text``.

    Args:
        text: the file's content.
        source: how errors name the file (e.g. ``MQTTHUB_MAPPINGS=/etc/mqtthub/map.toml``).

    Raises:
        ConfigError: the TOML is invalid, or an entry is (the message names the entry
            by its number and topic, and the key).
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    extra = set(document) - {"mapping"}
    entries = document.get("mapping")
    if extra or not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"{source}: expected [[mapping]] entries only"
            + (f", found {', '.join(sorted(extra))}" if extra else "")
        )
    loaded = []
    for number, raw in enumerate(entries, start=1):
        where = f"{source}: [[mapping]] #{number}"
        if isinstance(raw, dict) and isinstance(raw.get("topic"), str):
            where += f" (topic {raw['topic']!r})"
        try:
            loaded.append(_entry(raw))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return MappingProfile(tuple(loaded))


def _entry(raw: Any) -> Entry:
    if not isinstance(raw, dict):
        raise ValueError("must be a table")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_KEYS))})")
    kind_name = raw.get("kind")
    kind = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}")
    misplaced = [k for k in (_READINGS_ONLY if kind is Kind.STATUS else _STATUS_ONLY) if k in raw]
    if misplaced:
        raise ValueError(f"{misplaced[0]!r} does not belong in a {kind} entry")
    metrics = tuple(
        (_metric_name(name, "metrics"), _path(path, f"metrics.{name}"))
        for name, path in _table(raw, "metrics").items()
    )
    flat = raw.get("flatten", False)
    if not isinstance(flat, bool) or (flat and metrics):
        raise ValueError("flatten must be true or false, and not be combined with metrics")
    if kind is Kind.SENSOR and not (metrics or flat):
        raise ValueError('a sensor entry needs metrics = { name = "json.path" } or flatten = true')
    timestamp = _path(raw["timestamp"], "timestamp") if "timestamp" in raw else None
    status = _path(raw["status"], "status") if "status" in raw else None
    if kind is Kind.STATUS and timestamp is not None and status is None:
        raise ValueError('a status entry with a timestamp needs status = "json.path"')
    return Entry(
        topic=_topic(raw.get("topic")),
        kind=kind,
        metrics=metrics,
        flatten=flat,
        info=_info(raw, {name for name, _path in metrics} if metrics else None),
        timestamp=timestamp,
        timestamp_format=_format(raw.get("timestamp_format", "auto")),
        timezone=_zone(raw.get("timezone", "UTC")),
        online=_payloads(raw, "online"),
        offline=_payloads(raw, "offline"),
        status=status,
    )


def _topic(pattern: Any) -> tuple[str, ...]:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError('topic must be a topic pattern such as "vendor/{device}/data"')
    levels = tuple(pattern.split("/"))
    for index, level in enumerate(levels):
        if level in ("+", DEVICE) or (level == "#" and index == len(levels) - 1):
            continue
        if any(char in level for char in "+#{}"):
            raise ValueError(
                f"topic level {level!r} is not allowed: +, # and {{device}} must each be "
                "a whole level, # the last one"
            )
    if levels.count(DEVICE) != 1:
        raise ValueError("topic must have exactly one {device} level")
    return levels


def _path(text: Any, key: str) -> Path:
    """A JSON path such as ``env.temp``, ``$.values[0]`` or ``$``."""
    error = ValueError(f'{key}: {text!r} is not a JSON path such as "env.temp" or "list[0].x"')
    if not isinstance(text, str) or not text:
        raise error
    body = text
    if text.startswith("$"):  # $ alone, $.key..., $[n]...
        body = text[2:] if text.startswith("$.") else text[1:]
        if text == "$." or (body[:1] not in ("", "[") and not text.startswith("$.")):
            raise error
    steps: list[str | int] = []
    for position, part in enumerate(body.split(".") if body else ()):
        match = _PATH_PART.fullmatch(part)
        if match is None or not (match[1] or (position == 0 and match[2])):
            raise error
        if match[1]:
            steps.append(match[1])
        steps.extend(int(index) for index in re.findall(r"\d+", match[2]))
    return tuple(steps)


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    table = raw.get(key, {})
    if not isinstance(table, dict):
        raise ValueError(f'{key} must be a table such as {key} = {{ temperature = "..." }}')
    return table


def _metric_name(name: str, key: str) -> str:
    if not is_metric_name(name):
        raise ValueError(f"{key}: {name!r} is not a metric name ([A-Za-z0-9_.:-], 1-64)")
    return name


def _info(raw: dict[str, Any], known: set[str] | None) -> dict[str, MetricInfo]:
    """Units and display names by metric (``known``: the metrics they may name)."""
    info: dict[str, dict[str, str]] = {}
    for key, field in (("units", "unit"), ("names", "name")):
        for metric, value in _table(raw, key).items():
            _metric_name(metric, key)
            if not isinstance(value, str):
                raise ValueError(f"{key}.{metric} must be a string")
            if known is not None and metric not in known:
                raise ValueError(f"{key}.{metric} names a metric that metrics does not define")
            info.setdefault(metric, {})[field] = value
    return {metric: metric_info(**fields) for metric, fields in info.items()}


def _format(fmt: Any) -> str:
    if not isinstance(fmt, str) or (fmt not in _FORMATS and "%" not in fmt):
        raise ValueError(
            f"timestamp_format must be {', '.join(_FORMATS)} or a strftime format, got {fmt!r}"
        )
    return fmt


def _zone(name: Any) -> tzinfo:
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"timezone {name!r} is not a time zone name such as Europe/Berlin"
        ) from None


def _payloads(raw: dict[str, Any], key: str) -> frozenset[str]:
    value = raw.get(key, [key])
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{key} must be a payload or a list of payloads")
    return frozenset(v.strip().casefold() for v in values)
