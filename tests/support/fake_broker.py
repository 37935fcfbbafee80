"""FAKE MQTT broker for the few broker behaviours a real Mosquitto 2.0 cannot produce.

Mosquitto 2.0.11 closes the socket on a session takeover instead of sending DISCONNECT
0x8E (EMQX sends it), never sends 0x8D keepalive timeout to a client, never redirects
(0x9C/0x9D), answers a wrong password with "not authorized" rather than "bad user name or
password", and always speaks both protocol versions. Other brokers' ways are played too:
amqtt never answers an MQTT 5 CONNECT, Aedes speaks 3.1.1 only, rumqttd closes the
connection without a CONNACK on a wrong password. This fake speaks just enough MQTT to
play those parts; everything else in the suite uses real brokers.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from .ports import free_port

__all__ = ["FakeBroker", "varint"]


def varint(value: int) -> bytes:
    """``value`` as an MQTT variable byte integer."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


class FakeBroker:
    """A fake broker on 127.0.0.1 with one scripted behaviour.

    Args:
        behaviour: ``takeover`` / ``keepalive_timeout`` accept the connection, then send
            DISCONNECT 0x8E / 0x8D; ``redirect`` answers CONNECT with CONNACK 0x9C (use
            another server) carrying ``server_reference``; ``refuse`` answers CONNECT with
            ``refuse_codes`` (MQTT 5 reason code, MQTT 3.1.1 return code); ``late_puback``
            accepts, holds the PUBACK of the first QoS 1 publish until a second one came,
            then answers both in order: the first with 0x10, the second with 0x87;
            ``silent_v5`` never answers an MQTT 5 CONNECT (amqtt) and serves 3.1.1;
            ``only_v311`` closes the connection on an MQTT 5 CONNECT and serves 3.1.1;
            ``only_v5`` refuses a 3.1.1 CONNECT (return code 1, unacceptable protocol
            version) and serves MQTT 5; ``no_connack`` closes the connection on every
            CONNECT (rumqttd on a wrong password). Serving means: CONNACK 0, a SUBACK
            granting QoS 1 to every filter, a PUBACK for QoS 1 and the message sent back
            (every client is subscribed to everything), PINGRESP.
        server_reference: the ``host:port`` a redirect names.
        refuse_codes: the CONNACK codes for ``refuse``.
    """

    def __init__(
        self,
        *,
        behaviour: str,
        server_reference: str = "",
        refuse_codes: tuple[int, int] = (0x86, 4),
    ) -> None:
        """Prepare; :meth:`start` listens."""
        self.behaviour = behaviour
        self.server_reference = server_reference
        self.refuse_codes = refuse_codes
        self.port = free_port()
        self.connects = 0
        #: The protocol level of each CONNECT (4: MQTT 3.1.1, 5: MQTT 5), in order.
        self.levels: list[int] = []
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
        if self._server is not None:  # on the loop's own thread: asyncio is not thread-safe
            self._loop.call_soon_threadsafe(self._server.close)
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
            first, body = await self._read_packet(reader)
            assert first >> 4 == 1, "expected CONNECT"
            self.connects += 1
            mqtt5 = body[6] == 5  # protocol level after the protocol name
            self.levels.append(body[6])
            props = b"\x00" if mqtt5 else b""
            if await self._other_broker(reader, writer, mqtt5):
                return
            if self.behaviour == "redirect":
                reference = self.server_reference.encode()
                prop = b"\x1c" + len(reference).to_bytes(2, "big") + reference
                writer.write(_packet(0x20, b"\x00\x9c" + varint(len(prop)) + prop))
            elif self.behaviour == "refuse":
                code = self.refuse_codes[0] if mqtt5 else self.refuse_codes[1]
                writer.write(_packet(0x20, bytes([0, code]) + props))
            elif self.behaviour == "late_puback":
                writer.write(_packet(0x20, b"\x00\x00" + props))
                await writer.drain()
                await self._late_pubacks(reader, writer)
            else:
                writer.write(_packet(0x20, b"\x00\x00" + props))
                await writer.drain()
                await self._answer_subscribe(reader, writer, props)
                code = 0x8E if self.behaviour == "takeover" else 0x8D
                writer.write(_packet(0xE0, bytes([code]) + props))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _other_broker(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mqtt5: bool
    ) -> bool:
        """Play the version and credential behaviours; False for the others."""
        behaviour = self.behaviour
        if behaviour not in {"silent_v5", "only_v311", "only_v5", "no_connack"}:
            return False
        if behaviour == "no_connack" or (behaviour == "only_v311" and mqtt5):
            return True  # the caller closes the connection
        if behaviour == "silent_v5" and mqtt5:
            await reader.read()  # no answer at all, until the client gives up
            return True
        if behaviour == "only_v5" and not mqtt5:
            writer.write(_packet(0x20, b"\x00\x01"))
            await writer.drain()
            return True
        await self._serve(reader, writer, mqtt5)
        return True

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mqtt5: bool
    ) -> None:
        props = b"\x00" if mqtt5 else b""
        writer.write(_packet(0x20, b"\x00\x00" + props))
        await writer.drain()
        while True:
            first, body = await self._read_packet(reader)
            kind = first >> 4
            if kind == 8:  # SUBSCRIBE: packet id, [properties], (filter, options)*
                at = 2
                if mqtt5:
                    at += 1 + body[2]  # short property lists only (mqtthub sends none)
                filters = 0
                while at < len(body):
                    at += 2 + int.from_bytes(body[at : at + 2], "big") + 1
                    filters += 1
                writer.write(_packet(0x90, body[:2] + props + b"\x01" * filters))
            elif kind == 3:
                qos = (first >> 1) & 0x03
                if qos == 1:
                    end = 2 + int.from_bytes(body[:2], "big")
                    writer.write(_packet(0x40, body[end : end + 2]))
                writer.write(bytes([first & 0xF7]) + varint(len(body)) + body)
            elif kind == 12:
                writer.write(b"\xd0\x00")
            elif kind == 14:
                return
            await writer.drain()

    async def _answer_subscribe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, props: bytes
    ) -> None:
        """SUBACK a SUBSCRIBE that comes within 0.2 s; clients that do not subscribe are fine."""
        try:
            async with asyncio.timeout(0.2):
                first, body = await self._read_packet(reader)
        except TimeoutError:
            return
        if first >> 4 == 8:
            writer.write(_packet(0x90, body[:2] + props + b"\x01"))
            await writer.drain()
            await asyncio.sleep(0.2)

    async def _late_pubacks(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        packet_ids = []
        while len(packet_ids) < 2:
            first, body = await self._read_packet(reader)
            if first >> 4 == 3:  # PUBLISH at QoS 1: the packet id follows the topic
                end = 2 + int.from_bytes(body[:2], "big")
                packet_ids.append(body[end : end + 2])
        for packet_id, code in zip(packet_ids, (0x10, 0x87), strict=True):
            writer.write(_packet(0x40, packet_id + bytes([code, 0])))
        await writer.drain()
        await reader.read()  # until the client closes

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
