"""Recognise a broker's redelivery of messages already stored, without the DUP flag (pure).

rumqttd 0.20 and Aedes 1.2 re-send an unacknowledged QoS 1 message to a resumed session
without DUP (issue 16). ``serve`` acknowledges after commit, so a kill between the commit
and the PUBACK leaves stored messages unacknowledged; the broker re-sends them first on the
next session, with their original packet ids. Each committed batch therefore records the
``(packet id, fingerprint)`` pairs of its QoS 1 messages whose PUBACK may not have reached
the broker (:func:`encode`, one row per client id, in the batch's transaction); when a
connection resumes a session, :class:`RedeliveryFilter` compares the messages arriving
first against them: a match is acknowledged and not stored again, and the first message
that does not match ends the check (new traffic).

No I/O here: the writer records, the transport filters, the store keeps the bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqtthub.pipeline import RawMessage

__all__ = [
    "MAX_PAIRS",
    "MIN_PAIRS",
    "Pair",
    "RedeliveryFilter",
    "UnackedWindow",
    "batch_pairs",
    "decode",
    "encode",
    "fingerprint",
]

Pair = tuple[int, int]
"""``(packet id, fingerprint)`` of one QoS 1 message."""

_PAIR = struct.Struct("!HQ")
"""One encoded pair: packet id, fingerprint (10 bytes)."""
MAX_PAIRS = 65_535
"""At most this many pairs are kept: a broker cannot have more QoS 1 messages in flight to
one session (packet ids are 16 bits)."""
MIN_PAIRS = 1_024
"""The window keeps at least this many of the latest pairs (10 KiB), whatever the groups."""
_MAX_BYTES, _MIN_BYTES = MAX_PAIRS * _PAIR.size, MIN_PAIRS * _PAIR.size


def fingerprint(topic: str, payload: bytes) -> int:
    """64 bits of a message's topic and payload: CRC-32 of each (fast, stable across runs).

    ``topic`` is the text the transport decoded (invalid UTF-8 replaced), the same on the
    writer's side and the transport's.
    """
    return zlib.crc32(topic.encode("utf-8", "surrogatepass")) << 32 | zlib.crc32(payload)


def encode(pairs: Sequence[Pair]) -> bytes:
    """The pairs as bytes for the database (10 bytes each)."""
    pack = _PAIR.pack
    return b"".join(pack(packet_id, value) for packet_id, value in pairs)


def batch_pairs(messages: Iterable[RawMessage]) -> bytes:
    """The pairs of a batch's QoS 1 messages, encoded as :func:`encode` does (the
    transport's ``Ack`` has a ``packet_id``; a test transport's ack may be the packet id
    itself).

    :func:`fingerprint` inlined, each topic's half computed once a batch: the writer runs
    this for every QoS 1 message.
    """
    crc32 = zlib.crc32
    pack = _PAIR.pack
    topics: dict[str, int] = {}
    encoded: list[bytes] = []
    append = encoded.append
    for message in messages:
        ack = message.ack
        if ack is None:
            continue
        packet_id = getattr(ack, "packet_id", ack)
        if type(packet_id) is not int:
            continue
        topic = message.topic
        high = topics.get(topic)
        if high is None:
            high = topics[topic] = crc32(topic.encode("utf-8", "surrogatepass")) << 32
        append(pack(packet_id, high | crc32(message.payload)))
    return b"".join(encoded)


def _whole(data: bytes) -> bytes:
    """``data`` without a truncated last pair."""
    return data[: len(data) - len(data) % _PAIR.size]


def decode(data: bytes | None) -> list[Pair]:
    """The pairs :func:`encode` wrote; a truncated tail is ignored."""
    if not data:
        return []
    return [(p, f) for p, f in _PAIR.iter_unpack(_whole(data))]


class UnackedWindow:
    """The QoS 1 messages committed whose PUBACK may not have reached the broker yet.

    Each committed batch is :meth:`committed`; when its acknowledgements are handed to the
    transport, :meth:`acknowledged` closes the group. The window holds the open group (every
    batch committed since the last acknowledgement, e.g. while a rejected batch is written
    one message at a time), the group acknowledged last (its PUBACKs were written to the
    socket, but a kill can lose them before the broker reads them), and older pairs up to
    :data:`MIN_PAIRS` in all (PUBACKs still on their way over a slow network).

    Kept encoded (:func:`encode`), as the database row holds it: a batch adds its own
    pairs' bytes, and nothing is encoded twice.
    """

    def __init__(self, encoded: bytes | None = None) -> None:
        """Start from what the previous run recorded (all of it counts as unacknowledged)."""
        self._data = bytearray(_whole(encoded or b"")[-_MAX_BYTES:])
        self._open = 0  # where the open group starts in _data (bytes)

    def with_batch(self, encoded: bytes) -> bytes:
        """The window to record in the transaction of a batch whose pairs are ``encoded``
        (the window itself changes only once that transaction committed: :meth:`committed`)."""
        data = bytes(self._data) + encoded
        return data[-_MAX_BYTES:] if len(data) > _MAX_BYTES else data

    def committed(self, encoded: bytes) -> None:
        """A batch whose pairs are ``encoded`` committed: they join the open group."""
        self._data += encoded
        self._trim(len(self._data) - _MAX_BYTES)

    def acknowledged(self) -> None:
        """The open group's PUBACKs went to the transport: it becomes the previous group,
        and what came before it is kept only up to :data:`MIN_PAIRS` pairs in all."""
        previous, self._open = self._open, len(self._data)
        self._trim(min(previous, len(self._data) - _MIN_BYTES))

    def _trim(self, count: int) -> None:
        if count > 0:
            del self._data[:count]
            self._open = max(0, self._open - count)

    def pairs(self) -> list[Pair]:
        """Every pair of the window, oldest first (at most :data:`MAX_PAIRS`)."""
        return decode(bytes(self._data))


class RedeliveryFilter:
    """Matches the first messages of a resumed session against recorded pairs.

    :meth:`check` says True for a message whose packet id and fingerprint are recorded (a
    redelivery of a stored message: acknowledge it, do not store it) and removes that pair;
    the first message that does not match ends the check for good (new traffic follows:
    brokers send a resumed session's unacknowledged messages first, in order).
    """

    def __init__(self, pairs: Iterable[Pair]) -> None:
        """Arm the filter with the pairs recorded for this client id."""
        self._waiting: dict[int, set[int]] = {}
        for packet_id, value in pairs:
            self._waiting.setdefault(packet_id, set()).add(value)
        self.matched = 0

    @property
    def active(self) -> bool:
        """Whether the check goes on: recorded pairs are still waiting for their match."""
        return bool(self._waiting)

    def check(self, packet_id: int | None, value: int | None) -> bool:
        """True when this message (QoS 0: ``packet_id`` None) redelivers a recorded one."""
        if not self.active:
            return False
        values = self._waiting.get(packet_id) if packet_id is not None else None
        if values is None or value not in values:
            self.stop()
            return False
        values.discard(value)
        if not values:
            del self._waiting[packet_id]  # type: ignore[arg-type]
        self.matched += 1
        return True

    def stop(self) -> None:
        """End the check (and drop the pairs)."""
        self._waiting = {}
