"""FAKE MQTT 5 broker for the few broker behaviours a real Mosquitto 2.0 cannot produce.

Mosquitto 2.0.11 closes the socket on a session takeover instead of sending DISCONNECT
0x8E (EMQX sends it), and it never redirects clients (0x9C/0x9D). This fake speaks just
enough MQTT 5 to play those parts; everything else in the suite uses real brokers.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from .ports import free_port

__all__ = ["FakeBroker"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _varint(len(body)) + body


class FakeBroker:
    """A fake broker on 127.0.0.1 that either takes sessions over or redirects.

    Args:
        behaviour: ``takeover`` accepts CONNECT and SUBSCRIBE, then sends DISCONNECT 0x8E
            (session taken over); ``redirect`` answers CONNECT with CONNACK 0x9C (use
            another server) carrying ``server_reference``.
        server_reference: the ``host:port`` a redirect names.
    """

    def __init__(self, *, behaviour: str, server_reference: str = "") -> None:
        """Prepare; :meth:`start` listens."""
        self.behaviour = behaviour
        self.server_reference = server_reference
        self.port = free_port()
        self.connects = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> Self:
        """Listen in a background thread."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", self.port), self._loop
        )
        self._server = future.result(5)
        return self

    def stop(self) -> None:
        """Stop listening and end the thread."""
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _read_packet(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        first = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await reader.readexactly(1))[0]
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, await reader.readexactly(length)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first, _ = await self._read_packet(reader)
            assert first >> 4 == 1, "expected CONNECT"
            self.connects += 1
            if self.behaviour == "redirect":
                reference = self.server_reference.encode()
                props = b"\x1c" + len(reference).to_bytes(2, "big") + reference
                writer.write(_packet(0x20, b"\x00\x9c" + _varint(len(props)) + props))
                await writer.drain()
                return
            writer.write(_packet(0x20, b"\x00\x00\x00"))
            first, body = await self._read_packet(reader)
            assert first >> 4 == 8, "expected SUBSCRIBE"
            writer.write(_packet(0x90, body[:2] + b"\x00\x01"))
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(_packet(0xE0, b"\x8e\x00"))  # DISCONNECT: session taken over
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
