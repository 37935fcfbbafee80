"""The API's listening socket: responses on a kept-alive connection are not held back."""

from __future__ import annotations

import asyncio
import socket

from mqtthub.service import bind_http


def test_accepted_connections_have_nagle_off() -> None:
    """asyncio sets TCP_NODELAY only on sockets that say they are TCP; without it every
    response after the first on a kept-alive connection waited ~40 ms for a delayed ACK."""

    async def accept_one() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listening = bind_http("127.0.0.1", 0)
        port = listening.getsockname()[1]
        server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            nodelay = await asyncio.wait_for(accepted, 10)
            writer.close()
            return nodelay
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(accept_one()) != 0
