"""A pipelined QoS 1 publisher over a raw socket, for streams over many topics.

``mosquitto_pub -l`` publishes to one topic; the scale-out tests need thousands of messages
over a hundred devices, sent as fast as the broker takes them, each acknowledged.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterable

from .fake_broker import varint

__all__ = ["publish_qos1"]


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def publish_qos1(
    port: int, messages: Iterable[tuple[str, bytes]], *, client_id: str, timeout: float = 120.0
) -> int:
    """Publish every ``(topic, payload)`` at QoS 1 (MQTT 3.1.1) to 127.0.0.1:``port`` and
    return once the broker acknowledged all of them; the number published.

    Raises:
        TimeoutError: not every PUBACK arrived within ``timeout`` seconds.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    connect = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _string(client_id)
    sock.sendall(_packet(0x10, connect))
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"broker refused the publisher: {connack!r}")
    received = [0]

    def read_acks() -> None:
        try:
            while chunk := sock.recv(1 << 16):
                received[0] += len(chunk)
        except OSError:
            return

    reader = threading.Thread(target=read_acks, daemon=True)
    reader.start()
    sent = 0
    chunk: list[bytes] = []
    for topic, payload in messages:
        sent += 1
        packet_id = sent % 65535 + 1
        chunk.append(_packet(0x32, _string(topic) + struct.pack("!H", packet_id) + payload))
        if len(chunk) == 500:
            sock.sendall(b"".join(chunk))
            chunk.clear()
    sock.sendall(b"".join(chunk))
    deadline = time.monotonic() + timeout
    while received[0] // 4 < sent:  # each PUBACK is 4 bytes
        if time.monotonic() > deadline:
            raise TimeoutError(f"{received[0] // 4} of {sent} PUBACKs within {timeout} s")
        time.sleep(0.01)
    sock.sendall(bytes([0xE0, 0]))
    sock.close()
    return sent
