"""The publisher process: raw MQTT 3.1.1 connections that send the mix at a steady rate
and tally what was sent and what should become of it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from mqtt_clients import _remaining_length, _string
from suite.procs import HOST, log

from fuzzing.mix import broker_may_refuse, generate
from fuzzing.model import ANY, DOWNLINK, STORED, UNDELIVERED, Message


def connect_packet(client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, keepalive off (the publisher may sleep)."""
    body = _string(b"MQTT") + bytes([4, 0x02, 0, 0]) + _string(client_id.encode())
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(
    name: bytes, payload: bytes, *, qos: int, packet_id: int, retain: bool, dup: bool
) -> bytes:
    """One PUBLISH packet."""
    flags = (dup << 3) | (qos << 1) | int(retain)
    body = _string(name) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([0x30 | flags]) + _remaining_length(len(body)) + body


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by the broker")
        data += chunk
    return data


class Link:
    """A raw MQTT connection that publishes and counts the PUBACKs the broker sends back."""

    WINDOW = 30_000  # unacknowledged QoS 1 messages at most (packet ids must stay unique)

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.sendall(connect_packet(client_id))
        if _recv_exact(self.sock, 4) != b"\x20\x02\x00\x00":
            raise ConnectionError(f"{client_id}: the broker refused the connection")
        self.sock.settimeout(None)
        self.sent_qos1, self._ack_bytes, self._id = 0, 0, 0
        self.closed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(1 << 16):
                self._ack_bytes += len(chunk)
        self.closed.set()

    @property
    def acked(self) -> int:
        """PUBACKs received (4 bytes each: the only packets a publisher gets)."""
        return self._ack_bytes // 4

    def packet_id(self) -> int:
        """The next packet id, 1..65535."""
        self._id = self._id % 65_535 + 1
        return self._id

    def send(self, data: bytes, qos1: int) -> None:
        """Write ``data`` holding ``qos1`` QoS 1 PUBLISHes, staying inside the window."""
        while self.sent_qos1 + qos1 - self.acked > self.WINDOW:
            if self.closed.is_set():
                raise ConnectionError("the broker closed the publisher's connection")
            time.sleep(0.005)
        self.sent_qos1 += qos1
        self.sock.sendall(data)

    def finish(self, timeout: float = 120.0) -> None:
        """Wait for every PUBACK, then DISCONNECT."""
        deadline = time.monotonic() + timeout
        while self.acked < self.sent_qos1:
            if self.closed.is_set() or time.monotonic() > deadline:
                raise ConnectionError(f"{self.acked} of {self.sent_qos1} PUBACKs")
            time.sleep(0.01)
        self.sock.sendall(b"\xe0\x00")
        self.sock.close()


class SideLink:
    """Publishes one QoS 1 message at a time; tells whether the broker accepted it."""

    def __init__(self, port: int, client_id: str) -> None:
        self.port, self.client_id = port, client_id
        self.sock: socket.socket | None = None

    def publish(self, name: bytes, payload: bytes, retain: bool) -> bool:
        """True when the broker acknowledged, False when it dropped the connection."""
        if self.sock is None:
            self.sock = socket.create_connection((HOST, self.port), timeout=10)
            self.sock.sendall(connect_packet(self.client_id))
            _recv_exact(self.sock, 4)
        packet = publish_packet(name, payload, qos=1, packet_id=1, retain=retain, dup=False)
        try:
            self.sock.sendall(packet)
            return _recv_exact(self.sock, 4)[0] == 0x40
        except OSError:  # ConnectionError included: the broker refused the topic
            self.sock.close()
            self.sock = None
            return False

    def close(self) -> None:
        """DISCONNECT if connected."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.sendall(b"\xe0\x00")
            self.sock.close()


@dataclass
class KindTally:
    """What one kind published and what should have become of it."""

    planned: int = 0
    published: int = 0  # MQTT PUBLISH packets (DUP copies included)
    refused_by_broker: int = 0
    undelivered: int = 0
    downlink: int = 0
    device: int = 0  # reached serve's device pipeline
    expect: Counter[str] = field(default_factory=Counter)
    stored_by_type: Counter[str] = field(default_factory=Counter)
    any_by_type: Counter[str] = field(default_factory=Counter)
    payload_bytes: int = 0
    largest_payload: int = 0
    longest_topic: int = 0


def _message_type(name: bytes) -> str:
    levels = name.split(b"/")
    return levels[2].decode(errors="replace") if len(levels) == 3 else ""


def tally(kinds: dict[str, KindTally], kind: str, message: Message, delivered: bool) -> None:
    """Count one message (all its copies) into its kind's tally."""
    entry = kinds.setdefault(kind, KindTally())
    copies = message.copies
    entry.planned += 1
    entry.published += copies
    entry.payload_bytes += copies * len(message.payload)
    entry.largest_payload = max(entry.largest_payload, len(message.payload))
    entry.longest_topic = max(entry.longest_topic, len(message.topic))
    if not delivered:
        entry.refused_by_broker += copies
    elif message.expect == UNDELIVERED:
        entry.undelivered += copies
    elif message.expect == DOWNLINK:
        entry.downlink += copies
    else:
        entry.device += copies
        entry.expect[message.expect] += copies
        if message.expect == STORED:
            entry.stored_by_type[_message_type(message.topic)] += copies
        elif message.expect == ANY:
            entry.any_by_type[_message_type(message.topic)] += copies


class Publisher:
    """The publisher process: sends the whole mix at ``rate`` msg/s and tallies it."""

    BATCH_BYTES = 1 << 18  # write at least this much (or 256 packets) per sendall

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.main = Link(config["port"], f"fuzz-pub-{os.getpid()}")
        self.side = SideLink(config["port"], f"fuzz-side-{os.getpid()}")
        self.kinds: dict[str, KindTally] = {}
        self.valid: dict[str, list[int]] = defaultdict(list)
        self.pending: list[bytes] = []
        self.pending_qos1 = self.pending_size = 0

    def run(self) -> dict[str, Any]:
        """Publish everything; the tallies, and the error that stopped it early if any."""
        started, error, rate = time.monotonic(), None, self.config["rate"]
        index = 0
        try:
            for index, (kind, message, qos) in enumerate(generate(self.config)):
                self._send(kind, message, qos)
                ahead = started + (index + 1) / rate - time.monotonic()
                if ahead > 0.005 or self.pending_size > self.BATCH_BYTES or len(self.pending) > 255:
                    self._flush()
                    time.sleep(max(0.0, ahead))
                if index % 20_000 == 0:
                    log(f"publisher: {index:,} messages sent")
            self._flush()
            self.main.finish()
        except OSError as exc:  # ConnectionError too: the broker dropped the main connection
            error = f"{type(exc).__name__}: {exc} (at message {index:,})"
            log(f"publisher: {error}")
        self.side.close()
        return {
            "seconds": round(time.monotonic() - started, 1),
            "error": error,
            "kinds": {name: _tally_dict(entry) for name, entry in sorted(self.kinds.items())},
            "valid_seqs": self.valid,
        }

    def _send(self, kind: str, message: Message, qos: int) -> None:
        delivered = True
        if broker_may_refuse(message.topic):
            delivered = self.side.publish(message.topic, message.payload, message.retain)
            message = Message(message.topic, message.payload, message.expect, message.seqs)
        else:
            packet_id = self.main.packet_id() if qos else 0
            for copy in range(message.copies):
                packet = publish_packet(
                    message.topic,
                    message.payload,
                    qos=qos,
                    packet_id=packet_id,
                    retain=message.retain,
                    dup=copy > 0,
                )
                self.pending.append(packet)
                self.pending_size += len(packet)
            self.pending_qos1 += message.copies if qos else 0
        tally(self.kinds, kind, message, delivered)
        if delivered and message.seqs:
            self.valid[message.topic.split(b"/")[1].decode()].extend(message.seqs)

    def _flush(self) -> None:
        if self.pending:
            self.main.send(b"".join(self.pending), self.pending_qos1)
        self.pending, self.pending_qos1, self.pending_size = [], 0, 0


def _tally_dict(entry: KindTally) -> dict[str, Any]:
    return {
        name: dict(value) if isinstance(value, Counter) else value
        for name, value in entry.__dict__.items()
    }
