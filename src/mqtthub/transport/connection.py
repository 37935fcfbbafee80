"""One MQTT connection on gmqtt, and the packet machinery mqtthub puts under it.

:class:`ManagedClient` is a gmqtt client that never reconnects by itself (and speaks MQTT
over WebSockets when asked); :class:`_Connection` wraps one per connection attempt: it
reads PUBLISH packets itself, writes QoS 1 PUBACKs in batches (:class:`Ack`), holds and
resumes reading (backpressure), keeps the CONNACK's session-present flag and arms the
redelivery filter of a resumed session (or holds its messages back until its owner arms it:
:meth:`_Connection.release`). :class:`MqttSession` is one such connection handed
to short probes. The lifecycle around them (connect, fallback, reconnect) is
:class:`mqtthub.transport.client.MqttTransport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import gmqtt
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.mqtt.constants import MQTTv50
from gmqtt.mqtt.protocol import MQTTProtocol

from mqtthub.ingest.redelivery import Pair, RedeliveryFilter, fingerprint
from mqtthub.transport.base import MessageHandler
from mqtthub.transport.websocket import open_websocket

log = logging.getLogger("mqtthub.mqtt")

#: The (packet id, fingerprint) pairs of QoS 1 messages stored whose PUBACK may not have
#: reached the broker (the writer's window; see ingest/redelivery.py).
RedeliverySource = Callable[[], Sequence[Pair]]
#: Asked when a connection resumes a session: True holds its messages back (the owner
#: calls :meth:`_Connection.release` later), False arms the redelivery filter at once.
ResumeGate = Callable[["_Connection"], bool]
#: A PUBACK with reason code 0 and no properties: the same 4 bytes in MQTT 3.1.1 and 5.
_PUBACK = struct.Struct("!BBH")
_PUBACK_TYPE = 0x40


class Ack(NamedTuple):
    """What acknowledging one QoS 1 message takes: its connection and packet id.

    A message received on a connection that has since been lost is not acknowledged:
    the broker redelivers it on the next session (``topic`` and ``payload`` then say what
    it was, so the redelivery is recognised even without DUP).
    """

    connection: _Connection
    packet_id: int
    topic: str = ""
    payload: bytes = b""


class ManagedClient(gmqtt.Client):  # type: ignore[misc]
    """A gmqtt client that never reconnects by itself: its owner (MqttTransport, a
    simulated device) decides when. With ``websocket_path`` it speaks MQTT over WebSockets
    (``ws://``, or ``wss://`` with an SSL context), upgrading that HTTP path."""

    def __init__(
        self, client_id: str, *args: Any, websocket_path: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(client_id, *args, **kwargs)
        self._websocket_path = websocket_path

    def _allow_reconnect(self) -> bool:
        return False

    async def _create_connection(
        self, host: str, port: int, ssl: Any, clean_session: bool, keepalive: int
    ) -> MQTTConnection:
        if self._websocket_path is None:
            return await super()._create_connection(host, port, ssl, clean_session, keepalive)
        # gmqtt's own steps before a connection (gmqtt.Client._create_connection), then
        # the WebSocket adapter where gmqtt would call loop.create_connection.
        self._exit_reconnecting_state()
        self._package_handler.clear_topics_aliases()
        self._connack_received.clear()
        self._connection_lost.clear()
        transport, protocol = await open_websocket(
            partial(
                MQTTProtocol,
                connection_state=self._connection_state,
                id_generator=self._package_handler.id_generator,
            ),
            host,
            port,
            path=self._websocket_path,
            ssl_context=ssl or None,
        )
        return MQTTConnection(
            transport,
            protocol,
            clean_session,
            keepalive,
            package_handler=self._package_handler,
            logger=self._logger,
        )


class _Connection:
    """One gmqtt client for one connection attempt, with events for its callbacks.

    Incoming messages bypass gmqtt's per-message asyncio task: they go straight to
    ``on_publish`` (synchronously), and QoS 1 acknowledgements are written in batches by
    :meth:`send_pubacks` once the receiver has committed them.
    """

    def __init__(
        self,
        client: ManagedClient,
        version: int,
        on_publish: MessageHandler | None = None,
        redeliveries: RedeliverySource | None = None,
        recorded: Callable[[str], bool] | None = None,
        hold_resumed: ResumeGate | None = None,
    ) -> None:
        self.client = client
        self.version = version
        self.lost = asyncio.Event()
        self.lost_reason: int | None = None
        self.server_reference: str | None = None
        #: The CONNACK's session-present flag (None until an accepting CONNACK came).
        self.session_present: bool | None = None
        # Answers awaited by packet id: a late PUBACK or SUBACK never answers another request.
        self._pubacks: dict[int, asyncio.Future[int]] = {}
        self._subacks: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self._held = False  # backpressure: see hold()
        self._guarded = False
        # Armed by a CONNACK with session present: see ingest/redelivery.py.
        self._redeliveries = redeliveries
        self._recorded = recorded  # topics whose messages the redeliveries can hold
        self.redelivery_filter: RedeliveryFilter | None = None
        self._hold_resumed = hold_resumed
        #: QoS 1 messages handed on whose Ack has not come back yet (MqttTransport.acknowledge).
        self.outstanding = 0
        # PUBLISH packets of a resumed session held back until release() (None: not held).
        self._waiting: list[tuple[int, bytes]] | None = None
        self._replay: Callable[[int, bytes], None] | None = None
        #: Set unless this connection's messages are held back (see release()).
        self.released = asyncio.Event()
        self.released.set()
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        handler = client._package_handler
        handle_connack = handler._handle_connack_packet

        def capture_connack(cmd: int, packet: bytes) -> None:
            # gmqtt drops the properties of a refused CONNACK; keep a server reference.
            if len(packet) > 2 and packet[1] in (0x9C, 0x9D):
                self.server_reference = self._reference(packet[2:])
            if len(packet) >= 2 and packet[1] == 0:  # gmqtt does not keep session present
                self.session_present = bool(packet[0] & 0x01)
                if self.session_present and self._redeliveries is not None:
                    # Before gmqtt sees the CONNACK: the resumed session's redeliveries
                    # may follow in the same read.
                    gate = self._hold_resumed
                    if gate is not None and self._replay is not None and gate(self):
                        self._waiting = []
                        self.released.clear()
                        self.hold(self._held)
                    else:
                        self._arm(self._redeliveries())
            handle_connack(cmd, packet)

        handler._handle_connack_packet = capture_connack
        handle_puback = handler._handle_puback_packet

        def capture_puback(cmd: int, packet: bytes) -> None:
            # gmqtt ignores the MQTT 5 PUBACK reason code; the doctor needs it.
            waiting = self._pubacks.pop(int.from_bytes(packet[:2], "big"), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(packet[2] if len(packet) > 2 else 0)
            handle_puback(cmd, packet)

        handler._handle_puback_packet = capture_puback
        if on_publish is not None:
            self._take_publishes(on_publish)

    def _take_publishes(self, on_publish: MessageHandler) -> None:
        """Read PUBLISH packets ourselves: the fields we need, no property objects, no task."""
        handler = self.client._package_handler
        gmqtt_publish = handler._handle_publish_packet
        has_properties = self.version == MQTTv50

        def handle_publish(header: int, packet: bytes) -> None:
            if self._waiting is not None:  # held back until release()
                self._waiting.append((header, packet))
                return
            qos = (header >> 1) & 0x03
            end = 2 + int.from_bytes(packet[:2], "big")
            topic = packet[2:end]
            if not topic or qos > 1:  # a topic alias or QoS 2: never asked for; gmqtt's way
                gmqtt_publish(header, packet)
                return
            packet_id = None
            if qos:
                packet_id = int.from_bytes(packet[end : end + 2], "big")
                end += 2
            if has_properties:  # skip them: mqtthub uses none of a PUBLISH's properties
                length, shift = 0, 0
                while True:
                    byte = packet[end]
                    end += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if byte < 0x80:
                        break
                end += length
            text = topic.decode("utf-8", errors="replace")
            payload = packet[end:]
            if self.redelivery_filter is not None and self._redelivered(text, payload, packet_id):
                return
            ack = None
            if packet_id is not None:
                self.outstanding += 1
                ack = Ack(self, packet_id, text, payload)
            on_publish(text, payload, qos, bool(header & 0x01), bool(header & 0x08), ack)

        handler._handle_publish_packet = handle_publish
        self._replay = handle_publish

    def _arm(self, pairs: Sequence[Pair]) -> None:
        armed = RedeliveryFilter(pairs)
        self.redelivery_filter = armed if armed.active else None

    def release(self, pairs: Sequence[Pair]) -> None:
        """End holding back a resumed session's messages: arm the redelivery filter with
        ``pairs`` and hand on the messages read meanwhile, in order. Reading stays paused
        until :meth:`hold` (False) says otherwise."""
        waiting, self._waiting = self._waiting, None
        self.released.set()
        if waiting is None:
            return
        self._arm(pairs)
        assert self._replay is not None
        for header, packet in waiting:
            if self.lost.is_set():
                break  # the broker re-sends the rest on the next session
            self._replay(header, packet)

    def _redelivered(self, topic: str, payload: bytes, packet_id: int | None) -> bool:
        """Is this one of the first messages of a resumed session, re-sending a message
        that is stored already? Then it is acknowledged here and goes no further."""
        check = self.redelivery_filter
        assert check is not None
        if self._recorded is not None and not self._recorded(topic):
            # Not recorded (a receipt, an app's status, our own echo): handled as usual,
            # and the broker's re-sent device messages may still follow it.
            return False
        value = None if packet_id is None else fingerprint(topic, payload)
        matched = check.check(packet_id, value)
        if matched and packet_id is not None:
            self.send_pubacks([packet_id])
        if not check.active:
            self.redelivery_filter = None
            if check.matched:
                log.info(
                    "acknowledged %d message(s) the broker re-sent on resuming the session "
                    "(stored before their acknowledgement was lost; not stored again)",
                    check.matched,
                )
        return matched

    def hold(self, held: bool) -> None:
        """Stop (True) or restart (False) reading from the socket.

        gmqtt reads through an asyncio StreamReader that pauses and resumes the socket for
        its own buffer; while held, its resumes are ignored, so only :meth:`hold` (False)
        starts reading again, and gmqtt's keepalive watchdog does not count the silence.
        While a resumed session's messages are held back (:meth:`release`), nothing is read
        whatever ``held`` says.
        """
        self._held = held
        connection: Any = getattr(self.client, "_connection", None)
        transport = getattr(connection, "_transport", None)
        if transport is None or transport.is_closing():
            return
        if not self._guarded:
            self._guarded = True
            resume = transport.resume_reading
            keep_connection = connection._keep_connection

            def guarded_resume() -> None:
                if not self._paused:
                    resume()

            def keep_connection_while_held() -> None:
                # Nothing is read while held, PINGRESP included: that is our choice, not a
                # dead broker, so gmqtt's watchdog must not close the connection for it.
                if self._paused:
                    connection._last_data_in = time.monotonic()
                keep_connection()

            transport.resume_reading = guarded_resume
            connection._keep_connection = keep_connection_while_held
        with contextlib.suppress(RuntimeError):
            if self._paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    @property
    def _paused(self) -> bool:
        """Not reading: held (backpressure) or holding a resumed session's messages back."""
        return self._held or self._waiting is not None

    def send_pubacks(self, packet_ids: Sequence[int]) -> bool:
        """Acknowledge QoS 1 messages of this connection, in one write; False when the
        connection is lost (the broker re-sends them on the next session)."""
        connection = getattr(self.client, "_connection", None)
        if connection is None or self.lost.is_set():
            return False
        data = b"".join(_PUBACK.pack(_PUBACK_TYPE, 2, packet_id) for packet_id in packet_ids)
        connection._protocol.write_data(data)
        return True

    def _reference(self, properties: bytes) -> str | None:
        with contextlib.suppress(Exception):
            parsed, _ = self.client._package_handler._parse_properties(properties)
            values = (parsed or {}).get("server_reference")
            if values:
                return str(values[0])
        return None

    def _on_disconnect(self, _client: Any, packet: Any = None, exc: Any = None) -> None:
        if isinstance(packet, bytes | bytearray) and packet:
            self.lost_reason = packet[0]
            if packet[0] in (0x9C, 0x9D) and len(packet) > 1:
                self.server_reference = self._reference(bytes(packet[1:]))
        self.lost.set()

    def _on_subscribe(self, _client: Any, mid: int, granted: Sequence[int], _props: Any) -> None:
        waiting = self._subacks.pop(mid, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(tuple(granted))

    def subscribe(self, topics: Sequence[str]) -> asyncio.Future[tuple[int, ...]]:
        """Send SUBSCRIBE at QoS 1; the future gets this request's SUBACK codes."""
        packet_id = self.client.subscribe([gmqtt.Subscription(topic, qos=1) for topic in topics])
        answer = self._subacks[packet_id] = asyncio.get_running_loop().create_future()
        return answer

    def publish(self, topic: str, payload: bytes) -> asyncio.Future[int]:
        """Publish at QoS 1; the future gets this message's PUBACK reason code."""
        client = self.client
        packet_id, package = client._connection.publish(gmqtt.Message(topic, payload, qos=1))
        client._persistent_storage.push_message(packet_id, package)
        answer = self._pubacks[packet_id] = asyncio.get_running_loop().create_future()
        return answer

    async def close(self) -> None:
        connection = getattr(self.client, "_connection", None)
        if connection is None:
            return
        # Bounded: a socket that never reports its close must not hold up a shutdown.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                if not self.lost.is_set():
                    await self.client.disconnect()
                else:
                    await connection.close()


class MqttSession:
    """One open connection for short probes (``mqtthub doctor``): subscribe, publish, watch.

    Messages still go to the transport's handler.
    """

    def __init__(self, connection: _Connection, protocol: str) -> None:
        """Wrap a connected connection; use :meth:`MqttTransport.open` to make one."""
        self._connection = connection
        self.protocol = protocol
        self.lost = connection.lost

    @property
    def server_keepalive(self) -> int | None:
        """The keepalive the broker imposed in CONNACK (MQTT 5), if any."""
        values = self._connection.client._package_handler._connack_properties.get(
            "server_keep_alive"
        )
        return int(values[0]) if values else None

    async def subscribe(self, topics: Sequence[str]) -> tuple[int, ...]:
        """Subscribe at QoS 1; the SUBACK codes, one per topic (>= 0x80: refused).

        Wrap it in ``asyncio.timeout``: a broker may never answer.
        """
        return await self._connection.subscribe(topics)

    async def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1; the PUBACK reason code (0 = accepted; MQTT 3.1.1 always 0).

        Wrap it in ``asyncio.timeout``: a broker may never acknowledge.
        """
        return await self._connection.publish(topic, payload)

    async def close(self) -> None:
        """Disconnect."""
        await self._connection.close()
