"""What the firmware profiles share: JSON flattened to dotted metric names, scalar values,
timestamps within mqtthub's bounds, and dead letters (pure, no I/O).

* :func:`flatten` turns a JSON document into ``{metric: value}``: objects nest with dots
  (``{"AM2301": {"Temperature": 22.1}}`` gives ``AM2301.Temperature``), array items are
  numbered (``{"Power": [10, 20]}`` gives ``Power.0`` and ``Power.1``), numbers and
  booleans are values, the strings ``ON``/``OFF`` are 1.0/0.0 and other strings and
  nulls are skipped.
* Metric names follow mqtthub's rules (:data:`~mqtthub.messages.METRIC_PATTERN`): a name
  that breaks them turns the whole message into an ``invalid_metric_name`` dead letter,
  as a flat mqtthub payload does.
* Errors are raised as :class:`PayloadError` with a :class:`~mqtthub.messages.Reason`;
  a profile turns one into a :class:`~mqtthub.messages.Rejected` for its device.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterator
from datetime import datetime, tzinfo
from typing import Any

import orjson

from mqtthub.messages import (
    EARLIEST_TS,
    MAX_CLOCK_AHEAD_S,
    MAX_METRIC_NAME,
    MILLISECONDS_THRESHOLD,
    Kind,
    Reason,
    Rejected,
    is_metric_name,
    valid_device_id,
)
from mqtthub.profiles.base import Decoded, MetricInfo

# The widths of metric_info.unit and metric_info.name in the store: longer text is cut.
MAX_UNIT = 32
MAX_DISPLAY_NAME = 128
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NOT_A_NUMBER = re.compile(r"[-+]?nan", re.IGNORECASE)
_SWITCH = {"ON": 1.0, "OFF": 0.0}
_TEXT_BOOLEANS = {"on": 1.0, "off": 0.0, "true": 1.0, "false": 0.0}


class PayloadError(Exception):
    """A payload a profile cannot accept, with the dead-letter reason and a short detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        """Keep ``reason`` and ``detail`` for :meth:`rejected`."""
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def rejected(self, device_id: str | None, kind: Kind | None) -> Rejected:
        """The dead letter for ``device_id``'s message of ``kind``."""
        return Rejected(self.reason, self.detail, device_id, kind)


def guarded(
    read: Callable[[], Decoded],
    *,
    device_id: str,
    kind: Kind | None,
    payload: bytes,
    max_payload: int,
) -> Decoded:
    """``read()`` for one device's message, or the message's dead letter: a device id
    mqtthub cannot keep (``bad_device_id``), a payload over ``max_payload`` bytes
    (``payload_too_large``) or a :class:`PayloadError` raised by ``read``."""
    if not valid_device_id(device_id):
        detail = f"device id {device_id!r:.100} must match [A-Za-z0-9_.:-]{{1,64}} "
        detail += "and not be '.' or '..'"
        return Decoded(Rejected(Reason.BAD_DEVICE_ID, detail, None, kind))
    try:
        if len(payload) > max_payload:
            raise PayloadError(
                Reason.PAYLOAD_TOO_LARGE,
                f"payload is {len(payload)} bytes, limit is {max_payload} (MQTTHUB_MAX_PAYLOAD)",
            )
        return read()
    except PayloadError as error:
        return Decoded(error.rejected(device_id, kind))


def load_json(payload: bytes) -> Any:
    """The decoded JSON document (``invalid_utf8``, ``invalid_json`` or
    ``non_finite_number`` when it is not one)."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        error = str(exc)
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(Reason.INVALID_UTF8, f"payload is not UTF-8 ({exc.reason})") from None
    if "infinity" in error:
        raise PayloadError(Reason.NON_FINITE_NUMBER, "a number overflows to infinity")
    raise PayloadError(Reason.INVALID_JSON, f"payload is not JSON: {error:.200}")


def load_object(payload: bytes) -> dict[str, Any]:
    """The decoded JSON object (``invalid_type`` when the document is not an object)."""
    document = load_json(payload)
    if not isinstance(document, dict):
        raise PayloadError(
            Reason.INVALID_TYPE, f"payload must be a JSON object, got {_json_type(document)}"
        )
    return document


def decode_text(payload: bytes) -> str:
    """The payload as text, without surrounding white space (``invalid_utf8``)."""
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError(Reason.INVALID_UTF8, f"payload is not UTF-8 ({exc.reason})") from None


def json_value(value: Any) -> float | None:
    """A JSON value as a metric value: numbers, booleans, ``ON``/``OFF``; else None.

    orjson never decodes an infinite float (and decodes integers beyond 64 bits as
    floats), so every number here is finite.
    """
    cls = type(value)
    if cls is float or cls is int or cls is bool:
        return float(value)
    return _SWITCH.get(value) if cls is str else None


def number_value(text: str) -> float | None:
    """A decimal number in ``text`` (surrounding white space allowed), or None.

    ``nan`` (what ESPHome sends for a sensor without a state) is a ``no_readings`` dead
    letter, a number too large for a float a ``non_finite_number`` one.
    """
    text = text.strip()
    if _NUMBER.fullmatch(text):
        value = float(text)
        if not math.isfinite(value):
            raise PayloadError(Reason.NON_FINITE_NUMBER, f"{text:.40} overflows to infinity")
        return value
    if _NOT_A_NUMBER.fullmatch(text):
        raise PayloadError(Reason.NO_READINGS, "the value is NaN (the sensor has no reading)")
    return None


def text_value(text: str) -> float | None:
    """A raw payload as a metric value: a number (as :func:`number_value`), ``ON``/``OFF``
    or ``true``/``false`` (any case) as 1.0/0.0; None for any other text."""
    value = number_value(text)
    return _TEXT_BOOLEANS.get(text.strip().lower()) if value is None else value


def check_metric_name(name: str) -> str:
    """``name`` when it is a valid metric name, else an ``invalid_metric_name`` error."""
    if not is_metric_name(name):
        raise PayloadError(
            Reason.INVALID_METRIC_NAME,
            f"metric name {name!r:.80} must match [A-Za-z0-9_.:-]{{1,{MAX_METRIC_NAME}}}",
        )
    return name


def flatten(
    document: Any, *, prefix: str | None = None, skip: Collection[str] = ()
) -> dict[str, float]:
    """Every value of ``document`` under a dotted name, in document order.

    Args:
        document: decoded JSON.
        prefix: the name of ``document`` itself (needed when it is a plain value).
        skip: names left out (e.g. the timestamp field).

    A name that appears twice keeps its first value.
    """
    metrics: dict[str, float] = {}
    # Iterative (a stack of iterators), so documents nested 1,000 deep cannot overflow.
    stack: list[tuple[str | None, Iterator[tuple[str, Any]]]] = [
        (None, iter([(prefix, document)])) if prefix is not None else (None, _items(document))
    ]
    while stack:
        parent, items = stack[-1]
        for key, value in items:
            name = key if parent is None else f"{parent}.{key}"
            if isinstance(value, dict | list):
                stack.append((name, _items(value)))
                break
            number = json_value(value)
            if number is not None and name not in skip:
                metrics.setdefault(check_metric_name(name), number)
        else:
            stack.pop()
    return metrics


def _items(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        return iter(value.items())
    if isinstance(value, list):
        return ((str(index), item) for index, item in enumerate(value))
    return iter(())


def epoch_ts(value: Any, *, received_at: float, milliseconds: bool | None = None) -> float:
    """An epoch timestamp in seconds, checked against mqtthub's bounds.

    Args:
        value: the number from the payload.
        received_at: the receive time (a timestamp may be at most a day ahead of it).
        milliseconds: True or False to say the unit; None decides as messages.py does
            (values from 1e11 are milliseconds).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(
            Reason.INVALID_TIMESTAMP, f"timestamp must be a number, got {value!r:.80}"
        )
    if milliseconds is None:
        milliseconds = value >= MILLISECONDS_THRESHOLD
    return check_ts(value / 1000.0 if milliseconds else float(value), value, received_at)


def local_iso_ts(text: Any, *, timezone: tzinfo, received_at: float) -> float:
    """An ISO 8601 time as epoch seconds; a time without an offset is in ``timezone``."""
    if not isinstance(text, str):
        raise PayloadError(
            Reason.INVALID_TIMESTAMP, f"time must be an ISO 8601 string, got {text!r:.80}"
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(Reason.INVALID_TIMESTAMP, f"time {text!r:.80} is not ISO 8601") from None
    return moment_ts(moment, raw=text, timezone=timezone, received_at=received_at)


def moment_ts(moment: datetime, *, raw: Any, timezone: tzinfo, received_at: float) -> float:
    """``moment`` as epoch seconds (naive: in ``timezone``), checked against the bounds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone)
    try:
        ts = moment.timestamp()
    except (OverflowError, ValueError):
        ts = -math.inf
    return check_ts(ts, raw, received_at)


def check_ts(ts: float, raw: Any, received_at: float) -> float:
    """``ts`` when it is a plausible device time (the bounds of messages.py), else an
    ``invalid_timestamp`` error naming ``raw``."""
    if not EARLIEST_TS <= ts <= received_at + MAX_CLOCK_AHEAD_S:
        raise PayloadError(
            Reason.INVALID_TIMESTAMP,
            f"time {raw!r:.80} is not plausible (before 2001-09-09 or more than a day ahead)",
        )
    return ts


def metric_info(*, unit: str | None = None, name: str | None = None) -> MetricInfo:
    """A :class:`MetricInfo` whose text fits the store (longer text is cut)."""
    return MetricInfo(
        unit=unit[:MAX_UNIT] if unit else None,
        name=name[:MAX_DISPLAY_NAME] if name else None,
    )


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a boolean" if isinstance(value, bool) else "a number"
