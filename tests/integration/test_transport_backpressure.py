"""Backpressure on the MQTT socket holds against gmqtt's own reader.

gmqtt reads through an asyncio StreamReader, which pauses and resumes the socket for its
own buffer. A resume from it must not undo serve's pause, or a flood (QoS 0 is not bounded
by the broker's in-flight window) fills memory past MQTTHUB_QUEUE_SIZE. Found by
benchmarks/fuzz.py at 8,000 msg/s; here the reader's resume is made directly.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from mqtthub.transport.connection import ManagedClient, _Connection


def test_the_readers_resume_does_not_undo_a_pause() -> None:
    """After hold(True), a resume_reading() from the stream reader leaves the socket
    paused and gmqtt's keepalive watchdog does not count the silence; hold(False) reads
    again."""

    async def scenario() -> list[bool]:
        server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        socket_transport = writer.transport
        client = ManagedClient("backpressure-test")
        gmqtt_connection = SimpleNamespace(
            _transport=socket_transport, _last_data_in=0.0, _keep_connection=lambda: None
        )
        client._connection = gmqtt_connection
        connection = _Connection(client, 5)
        seen = []
        connection.hold(True)
        seen.append(socket_transport.is_reading())
        socket_transport.resume_reading()  # what asyncio.StreamReader does once drained
        seen.append(socket_transport.is_reading())
        gmqtt_connection._keep_connection()  # gmqtt's keepalive watchdog, while held
        seen.append(gmqtt_connection._last_data_in > 0)  # the silence is ours, not the broker's
        connection.hold(False)
        seen.append(socket_transport.is_reading())
        writer.close()
        server.close()
        return seen

    assert asyncio.run(scenario()) == [False, False, True, True]
