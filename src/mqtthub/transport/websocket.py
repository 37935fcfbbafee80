"""MQTT over WebSockets for gmqtt: an asyncio transport that speaks WebSocket underneath.

gmqtt has no WebSocket transport. :func:`open_websocket` opens TCP (and TLS), upgrades it
to a WebSocket with the ``mqtt`` subprotocol (websockets' Sans-I/O layer does the
handshake and the framing) and hands gmqtt's protocol a :class:`WebSocketTransport`:
``write()`` sends binary frames, received binary frames are fed to ``data_received`` as a
byte stream (MQTT packets may span frames, a frame may hold several). So gmqtt, and every
workaround in :mod:`mqtthub.transport.connection` (our own PUBLISH reader, batched PUBACKs,
backpressure by pausing the socket), work unchanged on WebSockets. Chosen by measurement
over paho-mqtt's and aiomqtt's WebSocket transports, see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from mqtthub.errors import BrokerError

MQTT_SUBPROTOCOL = Subprotocol("mqtt")
_HEAD_BYTES = 4096


class WebSocketUpgradeError(BrokerError):
    """The HTTP upgrade to an MQTT WebSocket failed.

    Attributes:
        kind: ``status`` (the server answered with another HTTP status, e.g. 404),
            ``no_subprotocol`` (it upgraded but did not accept the ``mqtt`` subprotocol),
            ``not_websocket`` (an HTTP answer that is no valid upgrade), ``not_http``
            (no HTTP answer at all: closed, or bytes that are not HTTP).
        status: the HTTP status code, when there was one.
        server: the ``Server`` header, when there was one.
        subprotocol: the subprotocol the server chose (``no_subprotocol``).
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        server: str | None = None,
        subprotocol: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.server = server
        self.subprotocol = subprotocol


@dataclass(frozen=True, slots=True)
class WebSocketTarget:
    """Where to upgrade: the HTTP request target (``/mqtt``) on the broker's host:port."""

    path: str


class WebSocketTransport(asyncio.Transport):
    """What gmqtt's protocol writes to and reads from: WebSocket binary frames."""

    def __init__(self, stream: _WebSocketStream) -> None:
        super().__init__()
        self._stream = stream

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as one binary frame."""
        self._stream.send(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        """Send the chunks joined, as one binary frame."""
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        """No half-close below MQTT."""
        return False

    def is_closing(self) -> bool:
        """True once closing began, on either side."""
        return self._stream.closing

    def close(self) -> None:
        """Send a WebSocket close frame and close the connection."""
        self._stream.close()

    def abort(self) -> None:
        """Drop the connection at once, without a close frame (the broker sends the will)."""
        self._stream.abort()

    def pause_reading(self) -> None:
        """Stop reading from the socket (backpressure reaches TCP)."""
        self._stream.pause_reading()

    def resume_reading(self) -> None:
        """Read from the socket again."""
        self._stream.resume_reading()

    def is_reading(self) -> bool:
        """Whether the socket is being read."""
        return self._stream.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The underlying TCP or TLS transport's information (peername, sslcontext, ...)."""
        return self._stream.extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        """Bytes waiting in the underlying transport."""
        return self._stream.write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Passed on to the underlying transport."""
        self._stream.set_write_buffer_limits(high, low)


class _WebSocketStream(asyncio.Protocol):
    """The protocol on the TCP/TLS connection: the upgrade, then frames to and from MQTT."""

    def __init__(self, uri: str, mqtt: asyncio.Protocol) -> None:
        self._ws = ClientProtocol(parse_uri(uri), subprotocols=[MQTT_SUBPROTOCOL], max_size=None)
        self._mqtt = mqtt
        self._raw: asyncio.Transport | None = None
        self._mqtt_transport = WebSocketTransport(self)
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closing = False
        self._connected = False  # the MQTT protocol has been given its transport
        self._head = bytearray()  # the start of the answer, to name a non-HTTP/1.1 one

    # ------------------------------------------------------------ the TCP/TLS side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        self._ws.send_request(self._ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        if not self.opened.done() and len(self._head) < _HEAD_BYTES:
            self._head += data[: _HEAD_BYTES - len(self._head)]
        self._ws.receive_data(data)
        self._take_events()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._take_events()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if not self.opened.done():
            self.opened.set_exception(
                WebSocketUpgradeError(
                    "not_http",
                    "the server closed the connection without answering the WebSocket upgrade",
                )
            )
        if self._connected:
            self._connected = False
            self._mqtt.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._connected:
            self._mqtt.pause_writing()

    def resume_writing(self) -> None:
        if self._connected:
            self._mqtt.resume_writing()

    def _take_events(self) -> None:
        for event in self._ws.events_received():
            if isinstance(event, Response):
                self._upgraded(event)
            elif isinstance(event, Frame):
                self._frame(event)
        exc = self._ws.handshake_exc
        if exc is not None and not self.opened.done():  # no HTTP/1.1 response could be parsed
            self.opened.set_exception(_unparsed_answer(bytes(self._head), exc))
        self._flush()
        if self._ws.state is State.CLOSED and self._raw is not None:
            self._raw.close()

    def _upgraded(self, response: Response) -> None:
        error = _upgrade_error(self._ws.handshake_exc, response, self._ws.subprotocol)
        if error is not None:
            if not self.opened.done():
                self.opened.set_exception(error)
            self.abort()
            return
        self._connected = True
        self._mqtt.connection_made(self._mqtt_transport)
        if not self.opened.done():
            self.opened.set_result(None)

    def _frame(self, frame: Frame) -> None:
        if not self._connected:
            return
        if frame.opcode in (Opcode.BINARY, Opcode.CONT):
            self._mqtt.data_received(cast(bytes, frame.data))  # bytes from the parser
        elif frame.opcode is Opcode.TEXT:  # MQTT over WebSockets is binary frames only
            self._ws.fail(CloseCode.UNSUPPORTED_DATA, "MQTT needs binary frames")

    def _flush(self) -> None:
        raw = self._raw
        if raw is None or raw.is_closing():
            return
        for chunk in self._ws.data_to_send():
            if chunk:
                raw.write(chunk)
            else:  # the protocol's end of stream: there is no half-close under TLS
                raw.close()
                return

    # ------------------------------------------------------------ the MQTT side

    def send(self, data: bytes) -> None:
        if self.closing or self._ws.state is not State.OPEN:
            return
        self._ws.send_binary(data)
        self._flush()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self._ws.state is State.OPEN:
            self._ws.send_close(CloseCode.NORMAL_CLOSURE)
            self._flush()
        if self._raw is not None:
            self._raw.close()

    def abort(self) -> None:
        self.closing = True
        if self._raw is not None:
            self._raw.abort()

    def pause_reading(self) -> None:
        if self._raw is not None and not self._raw.is_closing():
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._raw is not None and not self._raw.is_closing():
            self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw is not None and self._raw.is_reading()

    def extra_info(self, name: str, default: Any) -> Any:
        return self._raw.get_extra_info(name, default) if self._raw is not None else default

    def write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size() if self._raw is not None else 0

    def set_write_buffer_limits(self, high: int | None, low: int | None) -> None:
        if self._raw is not None:
            self._raw.set_write_buffer_limits(high, low)


def _upgrade_error(
    exc: Exception | None, response: Response, subprotocol: str | None
) -> WebSocketUpgradeError | None:
    """Why the upgrade ``response`` is not an MQTT WebSocket, or None."""
    server = ", ".join(response.headers.get_all("Server")) or None
    status = response.status_code
    if isinstance(exc, InvalidStatus) or status != 101:
        reason = response.reason_phrase or ""
        return WebSocketUpgradeError(
            "status",
            f"the server answered the WebSocket upgrade with HTTP {status} {reason}".rstrip(),
            status=status,
            server=server,
        )
    if exc is not None:
        return WebSocketUpgradeError(
            "not_websocket", f"invalid WebSocket upgrade: {exc}", status=status, server=server
        )
    if subprotocol != MQTT_SUBPROTOCOL:
        chosen = f"'{subprotocol}'" if subprotocol else "none"
        return WebSocketUpgradeError(
            "no_subprotocol",
            f"the server upgraded to a WebSocket but did not accept the subprotocol 'mqtt' "
            f"(chose {chosen}): not an MQTT WebSocket endpoint",
            status=status,
            server=server,
            subprotocol=subprotocol,
        )
    return None


def _unparsed_answer(head: bytes, exc: Exception) -> WebSocketUpgradeError:
    """An answer websockets' HTTP/1.1 parser refused: HTTP/1.0 (Python's http.server,
    some proxies) still has a status and a Server header; anything else is not HTTP."""
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) >= 2 and status_line[0].startswith("HTTP/") and status_line[1].isdigit():
        status = int(status_line[1])
        server = next(
            (
                line.split(":", 1)[1].strip()
                for line in lines[1:]
                if line.lower().startswith("server:")
            ),
            None,
        )
        reason = status_line[2] if len(status_line) > 2 else ""
        return WebSocketUpgradeError(
            "status",
            f"the server answered the WebSocket upgrade with {status_line[0]} {status} "
            f"{reason}".rstrip(),
            status=status,
            server=server,
        )
    return WebSocketUpgradeError(
        "not_http", f"the server did not answer the WebSocket upgrade with HTTP ({exc})"
    )


async def open_websocket(
    protocol_factory: Callable[[], asyncio.Protocol],
    host: str,
    port: int,
    *,
    path: str,
    ssl_context: ssl.SSLContext | None,
) -> tuple[WebSocketTransport, asyncio.Protocol]:
    """Connect to ``host:port``, upgrade ``path`` to an MQTT WebSocket, attach a protocol.

    Like ``loop.create_connection``: returns the transport and the protocol made by
    ``protocol_factory``, already told ``connection_made``.

    Raises:
        WebSocketUpgradeError: the upgrade failed (HTTP status, no ``mqtt`` subprotocol,
            not an HTTP server).
        OSError, ssl.SSLError: TCP or TLS failed.
    """
    loop = asyncio.get_running_loop()
    scheme = "wss" if ssl_context is not None else "ws"
    authority = f"[{host}]" if ":" in host else host
    uri = f"{scheme}://{authority}:{port}{path}"
    mqtt = protocol_factory()
    stream: _WebSocketStream | None = None

    def make_stream() -> _WebSocketStream:
        nonlocal stream
        stream = _WebSocketStream(uri, mqtt)
        return stream

    await loop.create_connection(make_stream, host, port, ssl=ssl_context)
    assert stream is not None
    try:
        await stream.opened
    except BaseException:
        stream.abort()
        raise
    return stream._mqtt_transport, mqtt
